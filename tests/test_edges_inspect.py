"""The inspect functions a learner calls, given NaN and complex values: NaN propagates (it is not
a LinAlgError from LAPACK, nor turned into -inf or +inf), and complex values are measured by
their moduli (not cast to their real parts)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinybptt as tb
from tinybptt import inspect as I
from tinybptt import nn
from tinybptt.errors import GraphError, ShapeError

EDGES = settings(derandomize=True, database=None, deadline=None, max_examples=30)
T, BAD_STEP = 6, 3


def _x(nan):
    x = np.random.default_rng(0).standard_normal((T, 2, 3))
    if nan:
        x[BAD_STEP, 0, 1] = np.nan  # sequence 0 goes NaN from step 3 on; sequence 1 stays finite
    return x


@pytest.mark.parametrize("method", ["exact", "power"])
@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_jacobian_norms_let_nan_through(cls, method):
    """Before: LinAlgError "SVD did not converge" (and a NaN product was reported as +inf)."""
    layer = cls(3, 4, generator=0)
    clean = I.jacobian_norms(layer, _x(False), method=method)
    rep = I.jacobian_norms(layer, _x(True), method=method)
    # entry k is time step t = k - 1: steps 0..2 are untouched, steps 3.. see the NaN state
    np.testing.assert_array_equal(rep.log10_step_factors[1:BAD_STEP + 1], clean.log10_step_factors[1:BAD_STEP + 1])
    assert np.isnan(rep.log10_step_factors[BAD_STEP + 1:]).all()
    # every product dh_{T-1}/dh_t with t < T-1 passes through a NaN step: NaN, not +-inf
    assert np.isnan(rep.log10_norms[:-1]).all() and rep.log10_norms[-1] == 0.0
    assert np.isnan(rep.log10_state_norms[:-1]).all()
    # the other sequence of the same batch is unaffected
    np.testing.assert_allclose(I.jacobian_norms(layer, _x(True), method=method, batch_index=1).log10_norms,
                               I.jacobian_norms(layer, _x(False), method=method, batch_index=1).log10_norms)


@pytest.mark.parametrize("cls", [nn.RNN, nn.GRU])
def test_jacobian_spectra_let_nan_through(cls):
    layer = cls(3, 4, generator=0)
    clean, bad = I.jacobian_spectra(layer, _x(False)), I.jacobian_spectra(layer, _x(True))
    np.testing.assert_array_equal(bad.step[:BAD_STEP], clean.step[:BAD_STEP])
    assert np.isnan(bad.step[BAD_STEP:]).all() and np.isnan(bad.product[:-1]).all()


def test_spectral_norm_and_radius_of_non_finite_and_non_square_matrices():
    for fn in (I.spectral_norm, I.spectral_radius):
        assert math.isnan(fn(np.array([[1.0, np.nan], [0.0, 1.0]])))
        assert fn(np.array([[2.0, 0.0], [0.0, -3.0]])) == pytest.approx(3.0)
    assert I.spectral_norm(np.array([[1.0, np.inf], [0.0, 1.0]])) == math.inf
    with pytest.raises(ShapeError, match=r"^spectral_radius: M must be a square matrix, got \(2, 3\) float64"):
        I.spectral_radius(np.ones((2, 3)))


@EDGES
@given(re=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=6), im=st.lists(st.floats(-1e3, 1e3), min_size=6,
                                                                               max_size=6))
def test_norms_of_complex_values_are_the_norms_of_their_moduli(re, im):
    """Before: norm([3j, 4]) was 4.0 -- the imaginary parts were cast away."""
    z = np.array(re) + 1j * np.array(im[:len(re)])
    m = float(np.max(np.abs(z)))  # the reference, scaled so that tiny values do not underflow
    want = m * float(np.linalg.norm(z / m)) if m > 0 else 0.0
    assert I.norm(z) == pytest.approx(want, rel=1e-12, abs=1e-300)
    if want > 0:
        assert I.log10_norm(z) == pytest.approx(math.log10(want), rel=1e-12, abs=1e-12)
    else:
        assert I.log10_norm(z) == -math.inf


def _walk():
    rnn = nn.RNN(3, 4, generator=0)
    out, _ = rnn(np.random.default_rng(0).standard_normal((5, 2, 3)))
    return I.walk((out * out).sum())


@pytest.mark.parametrize("call,error,message", [
    (lambda w: I.grid_svg(w, width=0), ValueError, "grid_svg: width must be a positive number of pixels, got 0"),
    (lambda w: I.grid_svg(w, row_height=-1), ValueError,
     "grid_svg: row_height must be a positive number of pixels, got -1"),
    (lambda w: I.to_dot_folded(w, unfold="2:4"), TypeError,
     "to_dot_folded: unfold must be None or a (first, end) pair of time steps, got '2:4'"),
    (lambda w: I.to_dot_folded(w, unfold=(1.0, 3)), TypeError,
     "to_dot_folded: unfold must be None or a (first, end) pair of time steps, got (1.0, 3)"),
    (lambda w: I.render_rows([]), ShapeError, "render_rows: needs at least one connectivity result, got none"),
])
def test_view_arguments_are_checked(call, error, message):
    """Before: grid_svg(width=0) raised ZeroDivisionError (and width=-5 drew with a made-up
    scale), unfold="2:4" failed unpacking ("too many values to unpack"), render_rows([]) IndexError."""
    w = _walk()
    with pytest.raises(error) as err:
        call(w)
    assert str(err.value) == message
    assert "<svg" in I.grid_svg(w, width=200) and "digraph" in I.to_dot_folded(w, unfold=(2, 4))


def test_check_finite_reads_a_tensor_as_its_values():
    """Before: a Tensor was read element by element by np.asarray and failed with a getitem error."""
    with pytest.raises(GraphError, match=r"^h at t=3 holds INF \(\(2,\) float64\)"):
        I.anomaly.check_finite("h", tb.tensor(np.array([1.0, np.inf])), step=3)
    I.anomaly.check_finite("h", tb.tensor(np.array([1.0, 2.0])))  # finite: no error

"""The LSTM and GRU sequence backward's two ways to the weight gradients agree with the NumPy reference.

The C kernels take the weight gradients either at the end, as one product over all
T*B rows, or step by step, a group of steps at a time while their gate gradients
are in cache (more than 128 rows in all and sums that fit the cache; see
csrc/lstm_impl.h, gru_impl.h).  The small problems of tests/test_recurrent_kernels.py only
reach the first way; here both are run and compared with the float64 reference,
with and without biases, dx and the trace, float32 and float64, with groups that
divide T and groups that do not, and on a float32 problem whose gradient vanishes
far below float32's range (the carried gradient is then scaled, and each step's
share must be taken in true scale).
"""
import numpy as np
import pytest

from tinybptt.kernels import numpy_rnn

try:
    from tinybptt.kernels import c_rnn
except ImportError:  # extension not built
    c_rnn = None

pytestmark = pytest.mark.skipif(c_rnn is None, reason="the C extension is not built")

KEYS = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh", "trace_h", "trace_c")
GATES = {"lstm": 4, "gru": 3}


def _problem(rng, cell, T, B, I, H, bias, dt, w_scale=1.0):
    """Random (x, h0, c0, w_ih, w_hh, b_ih, b_hh) and the incoming gradients (d_out, d_hn, d_cn)."""
    r = lambda *shape: rng.standard_normal(shape)  # noqa: E731
    lstm, GH = cell == "lstm", GATES[cell] * H
    args = [r(T, B, I), 0.5 * r(B, H), 0.5 * r(B, H) if lstm else None, r(GH, I) / np.sqrt(I),
            w_scale * r(GH, H) / np.sqrt(H),
            0.1 * r(GH) if bias != "none" else None, 0.1 * r(GH) if bias == "both" else None]
    grads = [r(T, B, H), r(B, H), r(B, H) if lstm else None]
    cast = lambda a: None if a is None else a.astype(dt)  # noqa: E731
    return [cast(a) for a in args], [cast(a) for a in grads]


def _close(name, got, want, rtol, atol):
    if want is None:
        assert got is None, name
        return
    assert got.shape == want.shape, (name, got.shape, want.shape)
    err = np.abs(got.astype(np.float64) - want) - (atol + rtol * np.abs(want))
    k = np.unravel_index(np.argmax(err), err.shape)
    assert err[k] <= 0, "%s: worst element %s: got %r, want %r" % (name, k, got[k], want[k])


# (T, B, H): 7 * 1 and 7 * 8 rows take the gradients at the end, as does H = 240 (its sums do not fit
# the cache); the others step by step, in groups of 128 / B steps rounded up: 6 steps of 24 rows (the last
# group of one step), 4 of 32 (7 = 4 + 3), 4 of 40, 128 of 1 (300 = 2 * 128 + 44)
SHAPES = [(7, 1, 9), (7, 8, 9), (7, 24, 9), (7, 32, 9), (7, 40, 9), (8, 32, 9), (300, 1, 9), (5, 32, 240)]


def _f64(a):
    return None if a is None else a.astype(np.float64)


@pytest.mark.parametrize("cell", sorted(GATES))
@pytest.mark.parametrize("T,B,H", SHAPES)
@pytest.mark.parametrize("bias", ["both", "ih", "none"])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("need_dx,need_trace", [(True, True), (False, False), (False, True)])
def test_weight_gradients_match_the_reference_either_way(cell, T, B, H, bias, dt, need_dx, need_trace):
    rng = np.random.default_rng(T + B + 100 * (bias == "none") + 1000 * (dt == np.float32))
    I = 3
    args, (d_out, d_hn, d_cn) = _problem(rng, cell, T, B, I, H, bias, dt)
    _, _, s_c = c_rnn.seq_forward(cell, *args)
    g = c_rnn.seq_backward(cell, s_c, d_out, d_hn, d_cn, need_dx=need_dx, need_trace=need_trace)
    _, _, s_n = numpy_rnn.seq_forward(cell, *[_f64(a) for a in args])
    want = numpy_rnn.seq_backward(cell, s_n, _f64(d_out), _f64(d_hn), _f64(d_cn), need_dx=need_dx,
                                  need_trace=need_trace)
    rtol, atol = (1e-10, 1e-12) if dt == np.float64 else (2e-4, 2e-5)
    for k in KEYS:
        _close(k, g[k], want[k], rtol, atol * max(1.0, float(np.abs(want[k]).max()) if want[k] is not None else 1))
        assert g[k] is None or g[k].dtype == dt, k


@pytest.mark.parametrize("cell", sorted(GATES))
@pytest.mark.parametrize("B", [32, 64])
def test_a_larger_layer_taken_step_by_step_matches_the_reference(cell, B):
    """The training loop's shape (I = 2, H = 64), long enough to leave the caches (T = 100)."""
    rng = np.random.default_rng(B)
    args, (d_out, d_hn, d_cn) = _problem(rng, cell, 100, B, 2, 64, "both", np.float32)
    _, _, s_c = c_rnn.seq_forward(cell, *args)
    g = c_rnn.seq_backward(cell, s_c, d_out, d_hn, d_cn)
    _, _, s_n = numpy_rnn.seq_forward(cell, *[_f64(a) for a in args])
    want = numpy_rnn.seq_backward(cell, s_n, _f64(d_out), _f64(d_hn), _f64(d_cn))
    for k in KEYS:
        if want[k] is None:
            assert g[k] is None, k
            continue
        err = np.linalg.norm(g[k].astype(np.float64) - want[k]) / np.linalg.norm(want[k])
        assert err < 1e-5, (k, err)


# cell: (T, recurrent weight scale) that make the gradient vanish below 1e-60 within T steps
VANISH = {"lstm": (400, 0.15), "gru": (700, 0.05)}


@pytest.mark.parametrize("cell", sorted(GATES))
@pytest.mark.parametrize("B,H", [(1, 12), (32, 12), (2, 240)])
def test_vanishing_float32_gradient_matches_the_float64_reference(cell, B, H):
    """The loss reads only the last step and the recurrent weights are small: the gradient falls far
    below float32's smallest normal number on its way back, the kernel carries it scaled, and the weight
    gradients (summed in true scale) still equal the float64 reference to float32 accuracy.  H = 240 takes
    them at the end, the others step by step."""
    rng = np.random.default_rng(7)
    T, w_scale = VANISH[cell]
    args, (d_out, _, _) = _problem(rng, cell, T, B, 3, H, "both", np.float32, w_scale=w_scale)
    d_out[:-1] = 0
    _, _, s_c = c_rnn.seq_forward(cell, *args)
    g = c_rnn.seq_backward(cell, s_c, d_out)
    _, _, s_n = numpy_rnn.seq_forward(cell, *[_f64(a) for a in args])
    want = numpy_rnn.seq_backward(cell, s_n, _f64(d_out))
    sizes = np.abs(want["trace_h"]).max(axis=(1, 2))
    assert sizes.min() < 1e-60, "the problem must leave float32's range"
    assert g["trace_h"].dtype == np.float64  # the true sizes, which float32 cannot hold
    for k in ("dw_ih", "dw_hh", "db_ih", "db_hh"):
        err = np.linalg.norm(g[k].astype(np.float64) - want[k]) / np.linalg.norm(want[k])
        assert err < 1e-5, (k, err)
    norms = lambda a: sizes * np.sqrt(np.sum((a / sizes[:, None, None]) ** 2, axis=(1, 2)))  # noqa: E731
    np.testing.assert_allclose(norms(g["trace_h"]), norms(want["trace_h"]), rtol=1e-4)

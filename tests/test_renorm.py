"""Tiny gradients in float32: the C sequence backward carries dL/dh (and dL/dc) as scaled values times 2^e.

* exactness: the renormalisation multiplies by powers of two only, so scaling the
  incoming gradient by 2^-90, 2^-64 or 2^90 (which moves the exponent) scales every result by
  exactly that factor, bit for bit, as plain IEEE arithmetic does when nothing under-
  or overflows (all cells, float32 and float64);
* a vanishing float32 layer reports the true sizes (1e-40 .. 1e-200) in ``grad_trace``,
  equal to a float64 NumPy-reference backward, with flush-to-zero off and on, and its
  weight gradients equal the reference to float32 accuracy;
* exact powers of two: a linear relu RNN whose gradient halves (doubles) every step
  has the trace 2^-(T-1-t) (2^(T-1-t)) exactly, far below (above) float32's range;
* the exponent stays 0 on ordinary problems (the trace keeps the layer's dtype).
"""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn
from tinybptt.kernels import c_rnn, numpy_rnn

pytestmark = pytest.mark.skipif(tb.kernels.c_backend is None, reason="the C extension is not built")


@pytest.fixture(autouse=True)
def c_backend():
    """The layers run on the C backend (the renormalised kernels); the previous backend is restored."""
    was = tb.kernels.get_backend()
    tb.kernels.set_backend("c")
    yield
    tb.kernels.set_backend(was)

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN}


def _problem(cell, dt, T=20, B=3, I=4, H=9, w_scale=1.0, seed=0):
    """Random sequence-kernel arguments (x, h0, c0, w_ih, w_hh, b_ih, b_hh) and d_out, d_hn, d_cn."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    args = [rng.standard_normal((T, B, I)), 0.5 * rng.standard_normal((B, H)),
            0.5 * rng.standard_normal((B, H)) if cell == "lstm" else None,
            rng.standard_normal((G * H, I)) / np.sqrt(I), w_scale * rng.standard_normal((G * H, H)) / np.sqrt(H),
            0.1 * rng.standard_normal(G * H), 0.1 * rng.standard_normal(G * H)]
    grads = [rng.standard_normal((T, B, H)), rng.standard_normal((B, H)),
             rng.standard_normal((B, H)) if cell == "lstm" else None]
    cast = lambda a: None if a is None else a.astype(dt)  # noqa: E731
    return [cast(a) for a in args], [cast(a) for a in grads]


# ------------------------------------------------------------------ exactness


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("cell", sorted(GATES))
@pytest.mark.parametrize("k", [-90, -64, 90])
def test_scaling_the_gradient_by_a_power_of_two_scales_every_result_exactly(cell, dt, k):
    """2^-64 moves the kernel's exponent while float32 still holds the true sizes (the trace keeps
    the dtype); 2^+-90 takes a float32 trace beyond float32's range (it comes back as float64)."""
    args, grads = _problem(cell, dt)
    _, _, saved = c_rnn.seq_forward(cell, *args)
    plain = c_rnn.seq_backward(cell, saved, *grads)
    scaled = c_rnn.seq_backward(cell, saved, *[None if g is None else np.ldexp(g, k) for g in grads])
    assert plain["trace_h"].dtype == dt  # exponent 0 throughout: the trace in the layer's dtype
    for key, a in plain.items():
        if a is None:
            continue
        b = scaled[key]
        if key.startswith("trace"):  # at true size
            assert b.dtype == (np.float64 if abs(k) > 66 else dt)
            np.testing.assert_array_equal(b.astype(np.float64), np.ldexp(a.astype(np.float64), k))
        else:
            assert b.dtype == dt
            np.testing.assert_array_equal(b, np.ldexp(a, k), err_msg=key)


@pytest.mark.parametrize("cell", sorted(GATES))
def test_exponent_stays_zero_and_c_equals_reference_on_ordinary_problems(cell):
    args, grads = _problem(cell, np.float64, T=30)
    _, _, s = c_rnn.seq_forward(cell, *args)
    got = c_rnn.seq_backward(cell, s, *grads)
    _, _, s = numpy_rnn.seq_forward(cell, *args)
    ref = numpy_rnn.seq_backward(cell, s, *grads)
    for key, a in ref.items():
        if a is not None:
            assert got[key].dtype == np.float64
            np.testing.assert_allclose(got[key], a, rtol=1e-11, atol=1e-12, err_msg=key)


# ------------------------------------------------------------------ a vanishing float32 layer


def _layer(cell, dtype, w_scale, seed):
    """A one-layer layer of ``cell`` (sequence mode) whose W_hh is scaled by ``w_scale``."""
    nn.manual_seed(seed)
    layer = LAYERS[cell](3, 12, dtype=dtype)
    layer.weight_hh_l0.data[...] *= w_scale
    return layer


def _reference(layer, cell, x, R):
    """The float64 NumPy-reference backward of the layer's float32 weights: (trace_h, trace_c, grads)."""
    w = [None if p is None else p.data.astype(np.float64) for p in layer.layer_weights(0)]
    B, H = x.shape[1], w[1].shape[1]
    zeros = np.zeros((B, H))
    _, _, s = numpy_rnn.seq_forward(cell, x.astype(np.float64), zeros, zeros if cell == "lstm" else None, *w)
    return numpy_rnn.seq_backward(cell, s, R.astype(np.float64))


# weights that make the gradient vanish to 1e-40 .. 1e-200 within T steps
VANISH = {"rnn_tanh": (200, 0.25), "lstm": (500, 0.15), "gru": (700, 0.05)}


@pytest.mark.parametrize("ftz,early", [(False, 0.0), (True, 0.0), (False, 1e-30), (False, 1.0)])
@pytest.mark.parametrize("cell", sorted(VANISH))
def test_vanishing_float32_trace_and_weight_gradients_match_float64_reference(cell, ftz, early):
    """The loss reads the last step, and with ``early`` != 0 also step 10, where that gradient then
    meets the vanished one (early = 1e-30: both stay scaled; 1.0: the plain path resumes)."""
    T, w_scale = VANISH[cell]
    layer = _layer(cell, np.float32, w_scale, seed=1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, 2, 3)).astype(np.float32)
    R = np.zeros((T, 2, 12), np.float32)
    R[-1] = rng.standard_normal((2, 12))
    R[10] = early * rng.standard_normal((2, 12))
    ref = _reference(layer, cell, x, R)
    was = tb.kernels.c_backend.get_flush_to_zero()
    tb.set_flush_to_zero(ftz)
    try:
        out, _ = layer(x)
        (out * R).sum().backward()
    finally:
        tb.set_flush_to_zero(was)
    tr = layer.grad_trace
    for got, want in [(tr.norms()[0], ref["trace_h"])] + ([(tr.c_norms()[0], ref["trace_c"])] if cell == "lstm"
                                                          else []):
        m = np.abs(want).max(axis=(1, 2))  # the reference's norms, scaled first (1e-182 squared is 0 in float64)
        want = m * np.sqrt(np.sum((want / m[:, None, None]) ** 2, axis=(1, 2)))
        tiny = (want < 1e-40) & (want > 1e-200)
        assert tiny.sum() >= 20, "the problem must reach the sizes float32 cannot hold"
        assert early == 0 or 1e-40 > want[11] and (early < 1e-20) == (want[10] < 1e-20)
        np.testing.assert_allclose(np.log10(got[tiny]), np.log10(want[tiny]), rtol=1e-5)
        np.testing.assert_allclose(got, want, rtol=1e-4)  # every step, ordinary sizes included
    for p, key in zip(layer.layer_weights(0), ("dw_ih", "dw_hh", "db_ih", "db_hh")):
        err = np.linalg.norm(p.grad.astype(np.float64) - ref[key]) / np.linalg.norm(ref[key])
        assert err < 1e-5, (key, err)


def _linear_relu(T, gain, h0_value):
    """A relu RNN with W_hh = gain * I, no input weight or bias, h0 = h0_value > 0: the
    state stays positive, so dL/dh_{t-1} = gain * dL/dh_t exactly (powers of two)."""
    layer = nn.RNN(2, 4, nonlinearity="relu", bias=False, dtype=np.float32)
    layer.weight_ih_l0.data[...] = 0
    layer.weight_hh_l0.data[...] = gain * np.eye(4, dtype=np.float32)
    x = np.zeros((T, 1, 2), np.float32)
    h0 = np.full((1, 1, 4), h0_value, np.float32)
    R = np.zeros((T, 1, 4), np.float32)
    R[-1] = 1
    out, _ = layer(x, h0)
    (out * R).sum().backward()
    return layer


def test_trace_far_below_float32_range_is_exact():
    T = 200
    layer = _linear_relu(T, 0.5, 1e30)  # h_t = 1e30 * 2^-(t+1) stays normal in float32
    want = np.ldexp(1.0, -(T - 1 - np.arange(T)))  # 2^-199 = 1.2e-60 at t = 0
    got = layer.grad_trace.h[0, :, 0, :]
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.repeat(want[:, None], 4, axis=1))


def test_trace_beyond_float32_range_is_finite_in_float64():
    """An exploding gradient: the trace holds 2^199 (float32's largest is 2^128) as the number it is.
    The float32 results overflow as in IEEE arithmetic: dh0 = 2^200, and the per-step terms
    dL/da_t of the weight gradient from 2^128 on, so dW_hh is inf."""
    T = 200
    layer = _linear_relu(T, 2.0, 2.0 ** -100)  # h_t = 2^(t-99) stays finite in float32
    want = np.ldexp(1.0, T - 1 - np.arange(T))
    got = layer.grad_trace.h[0, :, 0, :]
    np.testing.assert_array_equal(got, np.repeat(want[:, None], 4, axis=1))
    assert np.all(np.isfinite(layer.grad_trace.norms()))
    assert np.all(np.isinf(np.diag(layer.weight_hh_l0.grad)))
    assert np.all(np.isfinite(layer.grad_trace.h))


@pytest.mark.parametrize("cell", sorted(VANISH))
def test_checkpointed_layers_keep_the_scale_across_segments(cell):
    """Every-k and binomial checkpointing backpropagate in segments, carrying dL/dh (dL/dc) from one
    to the next: the scale travels with it, so their float32 traces equal the whole sequence's (to
    float32 rounding: a segment's forward is recomputed with GEMMs of another shape)."""
    T, w_scale = VANISH[cell]
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, 2, 3)).astype(np.float32)
    R = np.zeros((T, 2, 12), np.float32)
    R[-1] = rng.standard_normal((2, 12))
    traces, grads = [], []
    for kw in ({}, {"checkpoint": 37}, {"checkpoint": "auto", "checkpoint_budget": 4}):
        layer = _layer(cell, np.float32, w_scale, seed=1)
        for k, v in kw.items():
            setattr(layer, k, v)
        out, _ = layer(x)
        (out * R).sum().backward()
        traces.append(layer.grad_trace)
        grads.append([p.grad for p in layer.layer_weights(0)])
    whole = traces[0]
    assert np.min(whole.norms()) < 1e-100 if cell != "lstm" else np.min(whole.norms()) < 1e-60
    for tr, g in zip(traces[1:], grads[1:]):
        np.testing.assert_allclose(tr.norms(), whole.norms(), rtol=1e-4)
        if cell == "lstm":
            np.testing.assert_allclose(tr.c_norms(), whole.c_norms(), rtol=1e-4)
        for a, b in zip(g, grads[0]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("cell", sorted(GATES))
def test_nan_and_inf_reach_the_same_places_at_any_scale(cell, bad):
    """A NaN or inf arriving while the gradient is carried scaled (2^-70) is not lost in the search for
    the block's largest entry nor in the rescaling: it reaches the same entries as at scale 1."""
    args, grads = _problem(cell, np.float32)
    _, _, saved = c_rnn.seq_forward(cell, *args)
    grads[0][12, 1, 3] = bad
    plain = c_rnn.seq_backward(cell, saved, *grads)
    scaled = c_rnn.seq_backward(cell, saved, *[None if g is None else np.ldexp(g, -70) for g in grads])
    assert not np.isfinite(plain["trace_h"][12, 1, 3])
    for key, a in plain.items():
        if a is not None:
            np.testing.assert_array_equal(np.isnan(scaled[key]), np.isnan(a), err_msg=key)
            np.testing.assert_array_equal(np.isinf(scaled[key]), np.isinf(a), err_msg=key)

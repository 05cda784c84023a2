"""A TraceSlot keeps a scaled deposit (values and per-step exponents) as it is and reports true sizes.

The C sequence kernels leave the gradient trace as scaled values times 2**exps[t, b], one
exponent per step and sequence of the batch.
``TraceSlot.add(h, c, exps)`` keeps them so until ``h`` or ``c`` is read; every
reader must then see the true sizes, in float64 where float32 cannot hold them
(1e-40 is a number, not 0).  The expected values here are computed in float64 as
value * 2.0**e, independently of the conversion under test.
"""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt.nn.trace import LayerTraces, TraceSlot, gather_trace

pytestmark = pytest.mark.skipif(tb.kernels.c_backend is None, reason="the C extension is not built")


def _scaled(rng, T=6, B=3, H=4, dt=np.float32):
    return (rng.standard_normal((T, B, H)) + 0.5).astype(dt)


def _truth(values, exps):
    return values.astype(np.float64) * np.exp2(np.asarray(exps, np.float64))[:, :, None]


def _rows(per_step, *offsets):
    """Exponents (T, B): the per-step ones, shifted by a different offset for each sequence."""
    return np.array([[e + k for k in offsets] for e in per_step], np.int32)


def test_a_scaled_deposit_is_untouched_until_read_then_true():
    rng = np.random.default_rng(0)
    h, c = _scaled(rng), _scaled(rng)
    exps = _rows([0, 0, -3, -20, -40, 5], 0, -2, 3)
    h0, c0 = h.copy(), c.copy()
    slot = TraceSlot()
    slot.add(h, c, exps)
    assert np.array_equal(h, h0) and np.array_equal(c, c0)  # nothing converted at deposit time
    assert slot.h.dtype == np.float32  # every true value is a normal float32
    np.testing.assert_array_equal(slot.h.astype(np.float64), _truth(h0, exps))
    np.testing.assert_array_equal(slot.c.astype(np.float64), _truth(c0, exps))


def test_sizes_float32_cannot_hold_come_back_as_float64_numbers():
    rng = np.random.default_rng(1)
    h = _scaled(rng)
    exps = _rows([0, -10, -130, -140, -600, 80], 0, 0, -1)  # 2**-140 ~ 7e-43: below float32's range
    slot = TraceSlot()
    slot.add(h.copy(), None, exps)
    assert slot.dtypes() == [np.dtype(np.float64)]
    np.testing.assert_array_equal(slot.h, _truth(h, exps))
    assert np.all(np.abs(slot.h[3]) > 0) and np.all(np.abs(slot.h[3]) < 1e-40)
    assert slot.c is None


def test_deposits_add_up_in_true_size():
    rng = np.random.default_rng(2)
    a, b, plain = _scaled(rng), _scaled(rng), _scaled(rng)
    ea = _rows([0, -2, -4, -6, -8, -70], 0, 1, -60)
    eb = _rows([3, 0, 0, -1, -150, 0], 0, 0, 0)
    slot = TraceSlot()
    slot.add(a.copy(), None, ea)
    slot.add(b.copy(), None, eb)
    slot.add(plain.copy(), None)
    want = _truth(a, ea) + _truth(b, eb) + plain.astype(np.float64)
    np.testing.assert_allclose(slot.h, want, rtol=1e-6)


def test_exponents_all_zero_leave_the_values_as_they_are():
    rng = np.random.default_rng(3)
    h = _scaled(rng)
    slot = TraceSlot()
    slot.add(h, None, np.zeros((6, 3), np.int32))
    assert slot.h is h


def test_grad_trace_norms_of_a_scaled_deposit_are_the_true_norms():
    rng = np.random.default_rng(4)
    h = _scaled(rng)
    exps = _rows([0, -50, -100, -140, -300, -1000], 0, -5, -9)
    slot = TraceSlot()
    slot.add(h.copy(), h.copy(), exps)
    tr = gather_trace("LSTM", LayerTraces([slot], 6, 3), 4, np.float32, lstm=True)
    true = np.abs(_truth(h, exps))
    top = true.max(axis=(1, 2), keepdims=True)  # divided out before squaring: 2**-1000 squared is 0
    want = np.sqrt(np.sum((true / top) ** 2, axis=(1, 2))) * top[:, 0, 0]
    np.testing.assert_allclose(tr.norms()[0], want, rtol=1e-12)
    np.testing.assert_allclose(tr.c_norms()[0], want, rtol=1e-12)
    assert tr.norms()[0][4] > 0  # 2**-300 times a number of order 1: float64 holds it


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_the_c_kernel_hands_over_its_scaled_trace_and_exponents(cell):
    """seq_backward(..., scaled_trace=True) returns the trace as the kernel left it, with the
    exponents in "trace_exp"; value * 2**e is the trace the default call returns.  The gradient
    vanishes through small recurrent weights, so the exponents move."""
    from tinybptt.kernels import c as ck

    rng = np.random.default_rng(5)
    T, B, I, H = 200, 2, 3, 4  # gates near 0.5: the gradient halves about every step
    G = {"lstm": 4, "gru": 3, "rnn_tanh": 1}[cell]
    f = np.float32
    x = rng.standard_normal((T, B, I)).astype(f)
    h0 = np.zeros((B, H), f)
    c0 = np.zeros((B, H), f) if cell == "lstm" else None
    w_ih = (0.5 * rng.standard_normal((G * H, I))).astype(f)
    w_hh = (0.05 * rng.standard_normal((G * H, H))).astype(f)
    b = np.zeros(G * H, f)
    out, _, saved = ck.seq_forward(cell, x, h0, c0, w_ih, w_hh, b, b)
    d_out = np.zeros_like(out)
    d_out[-1] = 1
    scaled = ck.seq_backward(cell, saved, d_out, scaled_trace=True)
    true = ck.seq_backward(cell, saved, d_out)
    exps = scaled["trace_exp"]
    assert true["trace_exp"] is None and exps.min() < 0  # the scale moved: there was something to convert
    np.testing.assert_array_equal(_truth(scaled["trace_h"], exps), true["trace_h"].astype(np.float64))
    if cell == "lstm":
        np.testing.assert_array_equal(_truth(scaled["trace_c"], exps), true["trace_c"].astype(np.float64))

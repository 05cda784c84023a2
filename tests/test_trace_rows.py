"""Each sequence of a batch keeps its own scale on the way back through time.

The C sequence kernels carry the float32 gradient as scaled values times a power
of two, one exponent per sequence (row) of the batch.  The rows are separate
sequences whose gradients shrink at their own rates: here the inputs of the
three rows differ in size, so after a few hundred steps one row's gradient is
far more than 2^126 (float32's whole normal range) below another's.  With one
exponent for the whole batch, the smaller rows sank into the subnormal range and
then to zero while the largest still counted.  Every row's true size must match
a float64 run of the plain NumPy reference, and no scaled value may be subnormal.
"""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt.kernels import numpy_rnn

pytestmark = pytest.mark.skipif(tb.kernels.c_backend is None, reason="the C extension is not built")

T, B, I, H = 600, 3, 4, 8
GATES = {"rnn_tanh": 1, "gru": 3, "lstm": 4}


def _problem(cell):
    rng = np.random.default_rng(11)
    G = GATES[cell]
    x = rng.standard_normal((T, B, I))
    x *= np.array([0.1, 1.0, 3.0])[None, :, None]  # each row its own input size
    h0 = np.zeros((B, H))
    c0 = np.zeros((B, H)) if cell == "lstm" else None
    w_ih = rng.uniform(-0.6, 0.6, (G * H, I))
    w_hh = rng.uniform(-0.35, 0.35, (G * H, H))
    b = np.zeros(G * H)
    d_out = np.zeros((T, B, H))
    d_out[-1] = 1.0
    return (x, h0, c0, w_ih, w_hh, b, b), d_out


def _row_norms(a):
    """(T, B) norms of the rows of a (T, B, H) float64 array, with no square underflowing."""
    a = np.abs(a)
    top = a.max(axis=2, keepdims=True)
    safe = np.where(top > 0, top, 1.0)
    return np.sqrt(np.sum((a / safe) ** 2, axis=2)) * top[:, :, 0]


@pytest.mark.parametrize("cell", sorted(GATES))
def test_every_sequence_keeps_its_true_size(cell):
    from tinybptt.kernels import c as ck

    args, d_out = _problem(cell)
    f32 = tuple(None if a is None else a.astype(np.float32) for a in args)
    _, _, saved = ck.seq_forward(cell, *f32)
    got = ck.seq_backward(cell, saved, d_out.astype(np.float32), need_dx=False)
    _, _, saved64 = numpy_rnn.seq_forward(cell, *args)
    want = numpy_rnn.seq_backward(cell, saved64, d_out, need_dx=False)
    n_got = _row_norms(got["trace_h"].astype(np.float64))
    n_want = _row_norms(want["trace_h"])
    # the rows do drift apart by more than float32's range: the case a shared scale lost
    with np.errstate(divide="ignore"):
        spread = np.log2(n_want.max(axis=1)) - np.log2(n_want.min(axis=1))
    assert np.nanmax(spread[np.isfinite(spread)]) > 140, "the rows did not drift apart; the test tests nothing"
    held = n_want > 1e-280  # float64's own range, with room for the last steps' rounding
    assert held.sum() > T * B // 2
    # float32 arithmetic over hundreds of steps: a few digits, and never a 0 for a number
    np.testing.assert_allclose(n_got[held], n_want[held], rtol=2e-2)


@pytest.mark.parametrize("cell", sorted(GATES))
def test_no_scaled_value_is_subnormal(cell):
    from tinybptt.kernels import c as ck

    args, d_out = _problem(cell)
    f32 = tuple(None if a is None else a.astype(np.float32) for a in args)
    _, _, saved = ck.seq_forward(cell, *f32)
    g = ck.seq_backward(cell, saved, d_out.astype(np.float32), need_dx=False, scaled_trace=True)
    for name in ("trace_h", "trace_c"):
        a = g[name]
        if a is None:
            continue
        a = np.abs(a)
        assert not np.any((a > 0) & (a < np.finfo(np.float32).tiny)), name
    assert g["trace_exp"].shape == (T, B)
    # the rows' exponents differ: each sequence was scaled on its own
    assert np.any(g["trace_exp"][:, 0] != g["trace_exp"][:, 2])


@pytest.mark.parametrize("cell", sorted(GATES))
def test_segments_pass_each_sequence_its_own_exponent(cell):
    """Backpropagated in two segments, the second handing the first its scaled dL/dh (and dL/dc)
    with one exponent per sequence (carry_exp), the trace and its exponents are the one call's,
    bit for bit, and so are dh0 (and dc0) and their exponents."""
    from tinybptt.kernels import c as ck

    args, d_out = _problem(cell)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = tuple(None if a is None else a.astype(np.float32) for a in args)
    d_out = d_out.astype(np.float32)
    out, _, whole = ck.seq_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    want = ck.seq_backward(cell, whole, d_out, need_dx=False, scaled_trace=True, carry_exp=0)
    # The RNN's forward takes its input half a block of steps at a time (170 steps here), and
    # a block cut short rounds its last rows differently; so the cut is at a block's end.
    cut = 170
    out1, c1, first = ck.seq_forward(cell, x[:cut], h0, c0, w_ih, w_hh, b_ih, b_hh)
    _, _, second = ck.seq_forward(cell, x[cut:], out1[-1], None if c0 is None else c1[-1], w_ih, w_hh, b_ih, b_hh)
    assert np.array_equal(out1, out[:cut]), "the segments' forward is not the whole's: move the cut"
    g2 = ck.seq_backward(cell, second, d_out[cut:], need_dx=False, carry_exp=0, scaled_trace=True)
    e = g2["carry_exp"]
    assert e.shape == (B,) and len(set(e.tolist())) > 1  # the sequences arrive at different scales
    g1 = ck.seq_backward(cell, first, d_out[:cut], d_hn=g2["dh0"], d_cn=g2["dc0"], need_dx=False,
                         carry_exp=e, scaled_trace=True)
    for name in ("trace_h", "trace_c", "trace_exp"):
        if want[name] is not None:
            np.testing.assert_array_equal(np.concatenate([g1[name], g2[name]]), want[name], err_msg=name)
    for name in ("dh0", "dc0", "carry_exp"):  # scaled, each sequence at its own exponent
        if want[name] is not None:
            np.testing.assert_array_equal(g1[name], want[name], err_msg=name)


def test_the_reference_takes_one_exponent_per_sequence():
    """The NumPy reference scales d_hn's rows by their own exponents first: the same as handing it
    the true rows."""
    args, d_out = _problem("lstm")
    small = tuple(None if a is None else a[:20] if a.ndim == 3 else a for a in args)
    _, _, saved = numpy_rnn.seq_forward("lstm", *small)
    rng = np.random.default_rng(3)
    d_hn, d_cn = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    e = np.array([0, -40, 25])
    got = numpy_rnn.seq_backward("lstm", saved, None, d_hn=d_hn, d_cn=d_cn, carry_exp=e)
    want = numpy_rnn.seq_backward("lstm", saved, None, d_hn=np.ldexp(d_hn, e[:, None]),
                                  d_cn=np.ldexp(d_cn, e[:, None]))
    for name in ("dh0", "dc0", "dw_hh", "trace_h"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("bad", [np.zeros(B + 1, int), np.zeros((B, 1), int), np.zeros(B), 1.5])
def test_a_carry_exp_of_the_wrong_shape_or_kind_is_refused(bad):
    from tinybptt.kernels import c as ck

    args, d_out = _problem("rnn_tanh")
    small = tuple(None if a is None else (a[:5] if a.ndim == 3 else a).astype(np.float32) for a in args
                  if a is not None)
    _, _, saved = ck.seq_forward("rnn_tanh", small[0], small[1], None, *small[2:])
    with pytest.raises(ValueError, match="carry_exp"):
        ck.seq_backward("rnn_tanh", saved, None, d_hn=np.ones((B, H), np.float32), carry_exp=bad)

"""The vanilla RNN's sequence backward with its weight gradients taken a block of
steps at a time (csrc/rnn_impl.h, "the weight gradients a few steps at a time"),
against the NumPy reference.

That path runs when the sequence's x and out rows together exceed 4 MB and
[W_ih | W_hh] is at most 512 KB; a block is 128 rows (whole steps: 4 steps at
B = 32, 2 at B = 48), and da lives in a ring of one block.  The shapes below
take it with a partial first block (T not a multiple of the block's steps),
with and without dx, d_out and bias, and with a gradient that vanishes through
time, where each step's da must be brought back to true scale before its block
is used.  Each runs under every instruction set this CPU has.
"""
import numpy as np
import pytest

from tinybptt.kernels import numpy as KN

try:
    from tinybptt.kernels import c as KC
except ImportError:  # extension not built
    KC = None

pytestmark = pytest.mark.skipif(KC is None, reason="C extension not built")

GRADS = ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh")


def _uses_blocks(T, B, I, H, dtype):
    """The size test of rnn_wgrad_chunk, so that each shape below is known to take the path."""
    size = np.dtype(dtype).itemsize
    return T * B * (I + H) * size > 4 * 1024 * 1024 and H * (I + H) * size <= 512 * 1024


def _inputs(rng, T, B, I, H, dtype, bias, w_scale=1.0):
    def r(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    return dict(x=r(T, B, I), h0=r(B, H), w_ih=r(H, I, scale=I ** -0.5),
                w_hh=r(H, H, scale=w_scale * H ** -0.5),
                b_ih=r(H) if bias else None, b_hh=r(H) if bias else None)


def _close(name, got, want, dtype):
    """Equal to the dtype's accuracy: a weight gradient here sums thousands of rows,
    so the absolute tolerance scales with the array's largest entry (a wrong row or
    block would be off by a sizeable fraction of it)."""
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 2e-5)
    assert got is not None and got.shape == want.shape, name
    atol *= max(1.0, float(np.abs(want).max()))
    bad = np.abs(got - want) > atol + rtol * np.abs(want)
    assert not bad.any(), "%s: %d of %d entries differ, worst %g" % (
        name, bad.sum(), bad.size, np.max(np.abs(got - want)))


def _check(cell, T, B, I, H, dtype, bias, need_dx, with_d_out, w_scale=1.0, seed=0):
    assert _uses_blocks(T, B, I, H, dtype)
    rng = np.random.default_rng(seed)
    a = _inputs(rng, T, B, I, H, dtype, bias, w_scale)
    args = (cell, a["x"], a["h0"], None, a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    out_n, _, s_n = KN.seq_forward(*args)
    out_c, _, s_c = KC.seq_forward(*args)
    _close("out", out_c, out_n, dtype)
    d_out = rng.standard_normal((T, B, H)).astype(dtype) if with_d_out else None
    d_hn = rng.standard_normal((B, H)).astype(dtype)
    g_n = KN.seq_backward(cell, s_n, d_out, d_hn=d_hn, need_dx=need_dx)
    g_c = KC.seq_backward(cell, s_c, d_out, d_hn=d_hn, need_dx=need_dx)
    assert [k for k in GRADS if g_c[k] is None] == [k for k in GRADS if g_n[k] is None]
    for k in GRADS:
        if g_n[k] is not None:
            _close(k, g_c[k], g_n[k], dtype)
    return g_c


# (T, B, I, H): blocks of 4 steps with a first one of 3 (T = 131), of 2 steps
# with a first one of 1 (B = 48, T = 101), and I != H
@pytest.mark.parametrize("shape", [(131, 32, 128, 128), (101, 48, 96, 128), (67, 64, 160, 96)],
                         ids=lambda s: "T%dB%dI%dH%d" % s)
@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu"])
def test_blocked_weight_gradients_match_reference(isa, shape, cell):
    T, B, I, H = shape
    _check(cell, T, B, I, H, np.float32, bias=True, need_dx=True, with_d_out=True, seed=T + B)


@pytest.mark.parametrize("need_dx,with_d_out,bias", [(False, True, False), (True, False, True),
                                                     (False, False, True)])
def test_blocked_weight_gradients_without_dx_or_d_out(need_dx, with_d_out, bias):
    g = _check("rnn_tanh", 131, 32, 128, 128, np.float32, bias, need_dx, with_d_out, seed=3)
    assert (g["dx"] is None) == (not need_dx)


def test_blocked_weight_gradients_float64():
    _check("rnn_tanh", 45, 64, 128, 128, np.float64, bias=True, need_dx=True, with_d_out=True, seed=4)


def test_blocked_weight_gradients_with_a_vanishing_gradient(isa):
    """W_hh at 1/20 of its usual scale: the carried gradient falls by about 20x a step,
    so the kernel rescales it many times over 131 steps; each block must use da at
    its true size (the early steps' terms are then far below float32's resolution
    of the sums, and the reference's own are as small)."""
    g = _check("rnn_tanh", 131, 32, 128, 128, np.float32, bias=True, need_dx=True,
               with_d_out=False, w_scale=0.05, seed=6)
    assert np.abs(g["dw_hh"]).max() > 0

"""The vanilla RNN's sequence forward (csrc/rnn_impl.h), whose activation loop
walks the batch a row at a time and, at the last step of each block, asks for
the next block's first rows of x and out ("the next step's rows"), against the
NumPy reference.

A block holds as many steps as fit in 16 KB of out: one step when B*H reals
fill that (float32 B = 32, H = 128; float64 B = 16, H = 128), many when they do
not (B = 4, H = 32: 32 steps, so T = 70 ends with a ragged block of 6).  The
shapes take I below, equal to and above H, H that is no whole number of
vectors, and B = 1; each runs under every instruction set this CPU has, for
tanh and relu, float32 and float64.
"""
import numpy as np
import pytest

from test_rnnmed_wgrad import _close
from tinybptt.kernels import numpy_rnn as KN

try:
    from tinybptt.kernels import c as KC
except ImportError:  # extension not built
    KC = None

pytestmark = pytest.mark.skipif(KC is None, reason="C extension not built")

BLOCK_BYTES = 16 * 1024

# (T, B, I, H)
SHAPES = [(9, 32, 96, 128),    # float32: one step a block, I < H
          (7, 32, 200, 128),   # one step a block, I > H
          (6, 16, 128, 128),   # float64: one step a block; float32: two
          (70, 4, 48, 32),     # many steps a block, the last one ragged
          (40, 1, 20, 37),     # B = 1, H no whole number of vectors
          (3, 64, 64, 96)]     # one step a block, more rows than a register tile


def _inputs(rng, T, B, I, H, dtype):
    def r(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    return r(T, B, I), r(B, H), r(H, I, scale=I ** -0.5), r(H, H, scale=H ** -0.5), r(H), r(H)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%dB%dI%dH%d" % s)
def test_sequence_forward_matches_reference(isa, shape, cell, dtype):
    T, B, I, H = shape
    x, h0, w_ih, w_hh, b_ih, b_hh = _inputs(np.random.default_rng(sum(shape)), T, B, I, H, dtype)
    out_n, _, s_n = KN.seq_forward(cell, x, h0, None, w_ih, w_hh, b_ih, b_hh)
    out_c, _, s_c = KC.seq_forward(cell, x, h0, None, w_ih, w_hh, b_ih, b_hh)
    _close("out", out_c, out_n, dtype)
    d_out = np.random.default_rng(1).standard_normal((T, B, H)).astype(dtype)
    g_n = KN.seq_backward(cell, s_n, d_out, need_dx=False, need_trace=False)
    g_c = KC.seq_backward(cell, s_c, d_out, need_dx=False, need_trace=False)
    for k in ("dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        _close(k, g_c[k], g_n[k], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu"])
def test_step_forward_matches_reference(isa, cell, dtype):
    """One step (the kernel that fetches nothing ahead), I != H."""
    x, h0, w_ih, w_hh, b_ih, b_hh = _inputs(np.random.default_rng(5), 1, 32, 96, 128, dtype)
    h_n = KN.step_forward(cell, x[0], h0, None, w_ih, w_hh, b_ih, b_hh)[0]
    h_c = KC.step_forward(cell, x[0], h0, None, w_ih, w_hh, b_ih, b_hh)[0]
    _close("h_new", h_c, h_n, dtype)


def test_shapes_take_both_block_kinds():
    """The shapes above include one step a block and many steps a block."""
    steps = {max(1, BLOCK_BYTES // (np.dtype(d).itemsize * B * H)) for _, B, _, H in SHAPES
             for d in (np.float32, np.float64)}
    assert 1 in steps and max(steps) >= 32

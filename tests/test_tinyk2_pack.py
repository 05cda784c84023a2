"""The transposing pack of the per-step product (csrc/recurrent_mm.c).

Every sequence forward packs W_hh^T (the RNN also W_ih^T) into column
panels.  With AVX2 or AVX-512 and float32 the pack moves whole groups of 8
rows of W by 8 x 8 register blocks, the last K % 8 columns of such a group
one value at a time, and rows past the last whole group (a panel narrower
than 8, or 8 < width < 16) by the plain loop; float64 and portable C use the
plain loop throughout.  The shapes below reach each of those branches:

1. exactly: a product with the identity, C = I_K @ W^T, must give back W^T
   bit for bit (each entry is one value times 1 plus zeros), so any value
   put in the wrong place shows, whatever its size;
2. the sequence kernels against the NumPy reference (tinybptt.kernels.numpy_rnn
   and its siblings) at sizes whose I and H hit those branches, B = 1..4,
   under every instruction set and both dtypes, with a gradient that
   vanishes through time in the last case.
"""
import numpy as np
import pytest

from test_tinyk import _inputs, check_sequence

try:
    from tinybptt.kernels._ffi import ffi, lib
    from tinybptt.kernels import c as KC
except ImportError:  # extension not built
    KC = None

pytestmark = pytest.mark.skipif(KC is None, reason="C extension not built")

GATES = ["gru", "lstm", "rnn_relu", "rnn_tanh"]


def _ptr(a):
    return ffi.from_buffer("float[]" if a.dtype == np.float32 else "double[]", a)


# (N, K): rows of W (panel columns) and its columns (depth)
PACK_SHAPES = [
    (8, 8),      # one 8 x 8 block
    (16, 32),    # an AVX-512 float32 panel: two groups of 8 rows, four blocks deep
    (32, 37),    # two panels, five K columns past the last whole block
    (24, 5),     # K < 8: the groups of 8 rows go one value at a time
    (20, 16),    # a second panel of 4 rows (AVX-512), or 8 + 4 (AVX2): the plain loop's share
    (13, 11),    # a panel of 8 + 5 rows (AVX2), 13 of 16 (AVX-512)
    (7, 9),      # narrower than a group: the plain loop alone
    (96, 32),    # the GRU's W_hh^T at H = 32
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,K", PACK_SHAPES)
def test_pack_of_a_transpose_is_exact(isa, N, K, dtype):
    rng = np.random.default_rng(N * 100 + K)
    suf = "f32" if dtype == np.float32 else "f64"
    ldw = K + 3  # rows of W wider than K: the pack must honour the stride
    W = rng.standard_normal((N, ldw)).astype(dtype)
    eye = np.eye(K, dtype=dtype)
    C = np.full((K, N), np.nan, dtype)
    mm = getattr(lib, "tb_recurrent_mm_" + suf)
    assert mm(K, N, K, _ptr(eye), K, _ptr(W), ldw, 1, _ptr(C), N, 0, ffi.NULL, 1) == 0
    assert np.array_equal(C, W[:, :K].T)


# (T, B, I, H)
SEQ_SHAPES = [
    (7, 1, 13, 40),   # W_ih^T: K = 13 (a block and 5 more); W_hh^T: panels of 16, 16 and 8
    (5, 2, 8, 20),    # a panel of 4 rows after a whole one (AVX-512)
    (4, 3, 21, 13),   # 8 + 5 rows (AVX2), 13 of 16 (AVX-512)
    (6, 4, 3, 24),    # K = 3 < 8 for W_ih^T
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", GATES)
@pytest.mark.parametrize("shape", SEQ_SHAPES, ids=lambda s: "T%dB%dI%dH%d" % s)
def test_sequence_after_the_pack_matches_reference(isa, shape, cell, dtype):
    T, B, I, H = shape
    rng = np.random.default_rng(sum(shape) + len(cell))
    args = _inputs(rng, cell, T, B, I, H, dtype)
    check_sequence(args, rng.standard_normal((T, B, H)).astype(dtype), None, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", GATES)
def test_vanishing_gradient_after_the_pack_matches_reference(isa, cell, dtype):
    """Small weights: the gradient reaching h0 is orders of magnitude below the one at
    the end (about 1e-27 for the RNN, still a normal float32; 1e-6 for the GRU)."""
    T, B, I, H = 40, 2, 11, 24
    rng = np.random.default_rng(7 + len(cell))
    args = list(_inputs(rng, cell, T, B, I, H, dtype))
    args[4:6] = [w * dtype(0.3) for w in args[4:6]]  # w_ih, w_hh
    d_out = np.zeros((T, B, H), dtype)
    d_out[-1] = rng.standard_normal((B, H))  # a loss on the last step only
    g_n = check_sequence(args, d_out, None, dtype, relative=True)
    assert 0 < np.abs(g_n["dh0"]).max() < 1e-4  # it did vanish (from about 1 at the last step)

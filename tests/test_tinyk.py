"""The C sequence kernels against the NumPy reference at small sizes, where
their small-problem paths run.

Two paths are checked here, under every instruction set the CPU has, float32
and float64:

- a per-step product of few rows (a batch of at most 4) over whole panels
  (G*H or H a multiple of the vector width) goes straight to the register
  tiles, 4 panels at a time with AVX-512, 3 with AVX2 and portable C
  (csrc/recurrent_mm.c): one tile for the RNN at H = 32, two or more for the
  LSTM's and GRU's gates, the last one narrower when the panels do not divide;
- the RNN's forward makes the input half of its pre-activations for a block
  of steps at once (RNN_BLOCK_BYTES of out, csrc/rnn_impl.h): one block for
  the whole sequence at T = 50, B = 1, H = 32, several blocks and a shorter
  last one when T * B * H is larger.
"""
import numpy as np
import pytest

from test_rnnk import _close  # the same tolerances as the RNN's tests at the sizes in between
from tinybptt.kernels import numpy as KN

try:
    from tinybptt.kernels import c as KC
except ImportError:  # extension not built
    KC = None

pytestmark = pytest.mark.skipif(KC is None, reason="C extension not built")

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

# (T, B, I, H)
SHAPES = [
    (50, 1, 32, 32),   # the benchmark's tiny problem: one tile per step, one block
    (9, 4, 16, 64),    # four rows, four AVX-512 float32 panels: the largest direct tile
    (6, 3, 7, 24),     # three AVX2 float32 panels; a ragged last panel under AVX-512
    (5, 2, 3, 12),     # three portable float32 panels
    (70, 2, 5, 48),    # float32: 42 steps to a block, so a full block and a shorter one
    (200, 3, 4, 16),   # float32: 85 steps to a block (two full, one of 30); float64: 42
]


def _inputs(rng, cell, T, B, I, H, dtype):
    G = GATES[cell]

    def r(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    return (cell, r(T, B, I), r(B, H), r(B, H) if cell == "lstm" else None,
            r(G * H, I, scale=I ** -0.5), r(G * H, H, scale=H ** -0.5), r(G * H), r(G * H))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", sorted(GATES))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%dB%dI%dH%d" % s)
def test_small_sequence_matches_reference(isa, shape, cell, dtype):
    T, B, I, H = shape
    rng = np.random.default_rng(sum(shape) + len(cell))
    args = _inputs(rng, cell, T, B, I, H, dtype)
    check_sequence(args, rng.standard_normal((T, B, H)).astype(dtype),
                   rng.standard_normal((B, H)).astype(dtype), dtype)


def check_sequence(args, d_out, d_hn, dtype, relative=False):
    """The C sequence kernels against the NumPy reference on `args` (as _inputs
    makes them), forward and backward; each gradient compared relative to its
    largest entry if `relative` (for one that vanished).  Returns the reference's."""
    cell = args[0]
    out_n, c_n, s_n = KN.seq_forward(*args)
    out_c, c_c, s_c = KC.seq_forward(*args)
    _close("out", out_c, out_n, dtype)
    if cell == "lstm":
        _close("c_out", c_c, c_n, dtype)
    g_n = KN.seq_backward(cell, s_n, d_out, d_hn, need_trace=False)
    g_c = KC.seq_backward(cell, s_c, d_out, d_hn, need_trace=False)
    for k in ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        if g_n[k] is not None:
            scale = np.abs(g_n[k]).max() if relative else 1
            _close(k, g_c[k] / scale, g_n[k] / scale, dtype)
    return g_n


# ---------------------------------------------------------------- a leaf's gradient, copied or kept

def _two_leaf_function():
    """f(a, b) = sum(a) + sum(b) whose backward hands the SAME array to both inputs."""
    import tinybptt as tb

    class TwoLeaves(tb.Function):
        made = []

        @staticmethod
        def forward(ctx, a, b):
            return np.asarray(a.sum() + b.sum())

        @staticmethod
        def backward(ctx, g):
            ga = np.full(ctx.inputs[0].data.shape, float(g))
            TwoLeaves.made[:] = [ga]
            return ga, ga
    return TwoLeaves


def test_shared_gradient_is_copied_into_each_leaf():
    import tinybptt as tb
    fn = _two_leaf_function()
    a, b = tb.tensor(np.zeros(3), requires_grad=True), tb.tensor(np.zeros(3), requires_grad=True)
    fn.apply(a, b).backward()
    assert a.grad is not b.grad and a.grad is not fn.made[0]
    (fn.apply(a, b) * 2.0).backward()  # accumulates: had a.grad been b.grad, both would read 1 + 2 + 2
    np.testing.assert_array_equal(a.grad, [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(b.grad, [3.0, 3.0, 3.0])


@pytest.mark.parametrize("cell", ["RNN", "LSTM", "GRU"])
def test_sequence_layer_weight_grads_accumulate_over_two_backwards(cell):
    """A second backward (no zero_grad) adds to the fused layer's weight gradients:
    twice the first result."""
    import tinybptt as tb
    rng = np.random.default_rng(5)
    layer = getattr(tb.nn, cell)(4, 6, mode="sequence")
    x = tb.tensor(rng.standard_normal((7, 2, 4)))
    out = layer(x)[0]
    (out * out).sum().backward()
    first = {n: p.grad.copy() for n, p in layer.named_parameters()}
    out = layer(x)[0]
    (out * out).sum().backward()
    for n, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * first[n], rtol=1e-12, err_msg=n)

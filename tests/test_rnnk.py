"""The vanilla RNN's C sequence kernels against the NumPy reference, at the sizes
where their fast paths change shape.

The forward packs W_ih^T and W_hh^T once and makes every step with two
register-tiled products; the tiles differ with the batch (1..4 rows, groups of
8 rows and a ragged last group) and with H (a ragged last panel of columns).
The backward's weight gradients are three products over x, h0 and out in
place, in the plain form (dW = dA^T [X | H_prev]) or, from 512 rows on, the
transposed one.  The property tests elsewhere draw small sizes only; these
cover the shapes in between.
"""
import numpy as np
import pytest

from tinybptt.kernels import numpy as KN

try:
    from tinybptt.kernels import c as KC
except ImportError:  # extension not built
    KC = None

pytestmark = pytest.mark.skipif(KC is None, reason="C extension not built")

# (T, B, I, H): B = 1 (one-row tiles), B = 13 and 33 (groups of 8 rows and a
# ragged one), I and H not multiples of the vector width, I > H and I < H;
# the last two have T*B >= 512 rows, with I+H = 45 (transposed weight
# gradients) and I+H = 64 (the plain form)
SHAPES = [(3, 1, 1, 17), (2, 13, 17, 33), (2, 33, 40, 20), (3, 9, 3, 64),
          (2, 5, 70, 48), (20, 32, 5, 40), (16, 33, 24, 40)]


def _inputs(rng, T, B, I, H, dtype, bias):
    # weights scaled by 1/sqrt(fan-in), so that gradients neither explode nor vanish over T
    def r(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    return dict(x=r(T, B, I), h0=r(B, H), w_ih=r(H, I, scale=I ** -0.5), w_hh=r(H, H, scale=H ** -0.5),
                b_ih=r(H) if bias else None, b_hh=r(H) if bias else None)


def _close(name, got, want, dtype):
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 2e-5)
    assert got is not None and got.shape == want.shape, name
    bad = np.abs(got - want) > atol + rtol * np.abs(want)
    assert not bad.any(), "%s: %d of %d entries differ, worst %g" % (
        name, bad.sum(), bad.size, np.max(np.abs(got - want)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%dB%dI%dH%d" % s)
def test_rnn_sequence_matches_reference(shape, cell, dtype):
    T, B, I, H = shape
    rng = np.random.default_rng(sum(shape))
    a = _inputs(rng, T, B, I, H, dtype, bias=(B % 2 == 1))
    args = (cell, a["x"], a["h0"], None, a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    out_n, _, s_n = KN.seq_forward(*args)
    out_c, _, s_c = KC.seq_forward(*args)
    _close("out", out_c, out_n, dtype)
    d_out = rng.standard_normal((T, B, H)).astype(dtype)
    d_hn = rng.standard_normal((B, H)).astype(dtype)
    g_n = KN.seq_backward(cell, s_n, d_out, d_hn=d_hn, need_dx=True)
    g_c = KC.seq_backward(cell, s_c, d_out, d_hn=d_hn, need_dx=True)
    for k in ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        if g_n[k] is None:
            assert g_c[k] is None, k
        else:
            _close(k, g_c[k], g_n[k], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rnn_forward_reads_weights_with_strides(dtype):
    """W_ih^T and W_hh^T are packed from strided (non-contiguous) weights too."""
    T, B, I, H = 3, 11, 19, 35
    rng = np.random.default_rng(5)
    a = _inputs(rng, T, B, I, H, dtype, bias=True)
    wide = np.zeros((H, 2 * I), dtype)
    wide[:, ::2] = a["w_ih"]
    w_ih = wide[:, ::2]
    w_hh = np.asfortranarray(a["w_hh"])
    out_n, _, _ = KN.seq_forward("rnn_tanh", a["x"], a["h0"], None, a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    out_c, _, _ = KC.seq_forward("rnn_tanh", a["x"], a["h0"], None, w_ih, w_hh, a["b_ih"], a["b_hh"])
    _close("out", out_c, out_n, dtype)

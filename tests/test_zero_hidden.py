"""The C kernels called directly with a hidden size of 0 agree with the NumPy reference.

The layers refuse H = 0, but the kernel functions take any shapes: with H = 0 every
output is empty and dx is zero.  The C kernels used to fail there with "could not
allocate its scratch memory" (a request for no scratch memory was taken for a
failed one).
"""
import numpy as np
import pytest

from tinybptt.kernels import c_rnn, numpy_rnn

CELLS = [("rnn_tanh", 1), ("rnn_relu", 1), ("lstm", 4), ("gru", 3)]


def _problem(cell, G, T, B, I, H, dtype):
    r = np.random.default_rng(0)
    x = r.standard_normal((T, B, I)).astype(dtype)
    h0 = r.standard_normal((B, H)).astype(dtype)
    c0 = h0.copy() if cell == "lstm" else None
    w = [r.standard_normal(s).astype(dtype) for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    return x, h0, c0, w


def _run(backend, cell, x, h0, c0, w, step):
    if step:
        h, c, saved = backend.step_forward(cell, x[0], h0, c0, *w)
        g = backend.step_backward(cell, saved, np.ones_like(h), None if c is None else np.ones_like(c), need_dx=True)
        return [h, g["dx"], g["dh"], g["dw_ih"], g["dw_hh"], g["db_ih"]]
    out, _, saved = backend.seq_forward(cell, x, h0, c0, *w)
    g = backend.seq_backward(cell, saved, np.ones_like(out), need_dx=True, need_trace=True)
    return [out, g["dx"], g["dh0"], g["dw_ih"], g["dw_hh"], g["db_ih"], g["trace_h"]]


@pytest.mark.parametrize("step", [False, True], ids=["sequence", "step"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell,G", CELLS)
def test_hidden_size_zero(cell, G, dtype, step):
    x, h0, c0, w = _problem(cell, G, 3, 8, 2, 0, dtype)
    want = _run(numpy_rnn, cell, x, h0, c0, w, step)
    got = _run(c_rnn, cell, x, h0, c0, w, step)
    for a, b in zip(want, got):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    dx = got[1]
    assert dx.shape == ((8, 2) if step else (3, 8, 2)) and not dx.any()

"""Edge sizes: T = 1, B = 1, H = 1 against hand-computed values; 0-sized dimensions
work (kernels, cells) or raise a clear error (layers, losses); T = 10 000 in
sequence mode agrees between the C kernels and the NumPy reference.
"""
import math

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import kernels, nn
from tinybptt.kernels import numpy as KN
from kernel_cases import KC, KERNELS, CELLS, GATES, rnn_args, seq


def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


@pytest.mark.parametrize("mode", ["sequence", "cell", "ops"])
def test_T1_B1_H1_I1_match_hand_computed_cells(backend, mode):
    """With every size 1 the cells are scalar formulas: compute them with math, not with tinybptt."""
    x, h0, c0 = 0.7, -0.3, 0.4
    rnn = nn.RNN(1, 1, mode=mode)
    w = {k: float(p.data.ravel()[0]) for k, p in rnn.named_parameters()}
    out, h = rnn(np.array([[[x]]]), np.array([[[h0]]]))
    want = math.tanh(w["weight_ih_l0"] * x + w["bias_ih_l0"] + w["weight_hh_l0"] * h0 + w["bias_hh_l0"])
    assert out.shape == (1, 1, 1) and h.shape == (1, 1, 1)
    assert out.item() == pytest.approx(want, rel=1e-13) and h.item() == pytest.approx(want, rel=1e-13)
    out.sum().backward()
    d = 1 - want * want  # tanh' from the output
    assert rnn.weight_ih_l0.grad.item() == pytest.approx(d * x, rel=1e-12)
    assert rnn.weight_hh_l0.grad.item() == pytest.approx(d * h0, rel=1e-12)
    assert rnn.bias_hh_l0.grad.item() == pytest.approx(d, rel=1e-12)

    lstm = nn.LSTM(1, 1, mode=mode)
    Wi, Wh = lstm.weight_ih_l0.data.ravel(), lstm.weight_hh_l0.data.ravel()
    bi, bh = lstm.bias_ih_l0.data.ravel(), lstm.bias_hh_l0.data.ravel()
    pre = [Wi[k] * x + bi[k] + Wh[k] * h0 + bh[k] for k in range(4)]
    i, f, g, o = _sig(pre[0]), _sig(pre[1]), math.tanh(pre[2]), _sig(pre[3])
    c1 = f * c0 + i * g
    h1 = o * math.tanh(c1)
    out, (h, c) = lstm(np.array([[x]]), (np.array([[h0]]), np.array([[c0]])))  # unbatched (T, I)
    assert out.shape == (1, 1) and h.shape == (1, 1) and c.shape == (1, 1)
    assert out.item() == pytest.approx(h1, rel=1e-13) and c.item() == pytest.approx(c1, rel=1e-13)

    gru = nn.GRU(1, 1, mode=mode)
    Wi, Wh = gru.weight_ih_l0.data.ravel(), gru.weight_hh_l0.data.ravel()
    bi, bh = gru.bias_ih_l0.data.ravel(), gru.bias_hh_l0.data.ravel()
    r = _sig(Wi[0] * x + bi[0] + Wh[0] * h0 + bh[0])
    z = _sig(Wi[1] * x + bi[1] + Wh[1] * h0 + bh[1])
    n = math.tanh(Wi[2] * x + bi[2] + r * (Wh[2] * h0 + bh[2]))
    out, h = gru(np.array([[[x]]]), np.array([[[h0]]]))
    assert out.item() == pytest.approx((1 - z) * n + z * h0, rel=1e-13)


@pytest.mark.parametrize("K", KERNELS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("sizes", [(3, 0, 2, 4), (3, 2, 0, 4), (3, 2, 2, 0), (1, 0, 0, 0)], ids=str)
def test_recurrent_kernels_with_empty_dimensions(K, cell, sizes):
    """B, I or H = 0 is legal in the kernels: right shapes, zeros where a sum is empty."""
    T, B, I, H = sizes
    rng = np.random.default_rng(6)
    a = rnn_args(rng, cell, T, B, I, H)
    out, c_out, saved = seq(K, cell, a)
    assert out.shape == (T, B, H) and (c_out is None) == (cell != "lstm")
    g = K.seq_backward(cell, saved, np.ones((T, B, H)))
    assert g["dx"].shape == (T, B, I) and g["dh0"].shape == (B, H)
    assert g["dw_ih"].shape == (GATES[cell] * H, I) and g["dw_hh"].shape == (GATES[cell] * H, H)
    if B == 0:  # no samples: every weight gradient is an empty sum
        assert not np.any(g["dw_ih"]) and not np.any(g["dw_hh"]) and not np.any(g["db_ih"])
    if I == 0 and B and H:  # no input: the result equals a run with the input path removed
        out2, _, _ = seq(KN, cell, dict(a, x=np.zeros((T, B, 1)), w_ih=np.zeros((GATES[cell] * H, 1))))
        np.testing.assert_allclose(out, out2, rtol=1e-13, atol=1e-14)


def test_empty_dimensions_in_kernels_and_cells(backend):
    K = kernels.backend
    np.testing.assert_array_equal(K.matmul(np.ones((3, 0)), np.ones((0, 2))), np.zeros((3, 2)))
    out = np.full((3, 2), 7.0)
    np.testing.assert_array_equal(K.matmul(np.ones((3, 0)), np.ones((0, 2)), out=out), np.zeros((3, 2)))
    assert K.matmul(np.ones((0, 4)), np.ones((4, 2))).shape == (0, 2)
    assert K.tanh(np.ones((0, 3))).shape == (0, 3)
    assert K.sigmoid_backward(np.ones((2, 0)), np.ones((2, 0))).shape == (2, 0)
    cell = nn.LSTMCell(3, 4)
    h, c = cell(np.ones((0, 3)))
    assert h.shape == (0, 4) and c.shape == (0, 4)
    t = tb.tensor(np.ones((0, 3)), requires_grad=True)
    (t.tanh() * 2).sum().backward()
    assert t.grad.shape == (0, 3)


def test_tensor_matmul_with_empty_inner_dimension():
    y = tb.tensor(np.ones((2, 0))) @ tb.tensor(np.ones((0, 3)))
    np.testing.assert_array_equal(y.data, np.zeros((2, 3)))


@pytest.mark.parametrize("cell", CELLS)
def test_ten_thousand_steps_in_sequence_mode(c_backend, cell):
    """T = 10 000 with B = 1, H = 2: the C kernels agree with the NumPy reference's plain loop."""
    rng = np.random.default_rng(7)
    T = 10_000
    a = rnn_args(rng, cell, T, 1, 1, 2, scale=0.8)
    out, c_out, saved = seq(KC, cell, a)
    ref_out, ref_c, ref_saved = seq(KN, cell, a)
    np.testing.assert_allclose(out, ref_out, rtol=1e-9, atol=1e-12)
    d = np.zeros_like(out)
    d[-1] = 1.0  # only the last output: the gradient must travel all 10 000 steps
    g, ref = KC.seq_backward(cell, saved, d), KN.seq_backward(cell, ref_saved, d)
    for k in ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh", "trace_h"):
        np.testing.assert_allclose(g[k], ref[k], rtol=1e-8, atol=1e-12, err_msg=k)
    # and through the layer: one node, gradients everywhere finite
    layer = {"rnn_tanh": nn.RNN, "rnn_relu": lambda i, h: nn.RNN(i, h, nonlinearity="relu"),
             "lstm": nn.LSTM, "gru": nn.GRU}[cell](1, 2)
    x = tb.tensor(a["x"], requires_grad=True)
    res, _ = layer(x)
    res[-1].sum().backward()
    assert x.grad.shape == (T, 1, 1) and np.all(np.isfinite(x.grad))
    assert layer.grad_trace.norms().shape == (1, T)

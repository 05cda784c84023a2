"""Training pieces: a small LSTM learns, optimisers follow their formulas, clipping, stable losses."""
import re

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn, optim
from tinybptt.nn import functional as F
from tinybptt.nn.utils import clip_grad_norm_, clip_grad_value_, detach_state


def test_lstm_learns_to_recall_the_first_input():
    nn.manual_seed(0)
    rng = np.random.default_rng(0)
    T, B, I, H = 8, 32, 2, 12
    lstm, head = nn.LSTM(I, H, forget_bias=1.0), nn.Linear(H, I)
    params = lstm.parameters() + head.parameters()
    opt = optim.Adam(params, lr=0.03)
    losses = []
    for _ in range(150):
        x = rng.standard_normal((T, B, I))
        _, (h_n, _) = lstm(x)
        loss = F.mse_loss(head(h_n[-1]), x[0])
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert first > 0.7  # predicting zero gives E[x0^2] = 1
    assert last < 0.25 * first, (first, last)
    # the gradient reaches back to step 0, where the information is
    norms = lstm.grad_trace.norms()[0]
    assert norms.shape == (T,) and norms[0] > 0


def test_package_docstring_example_runs(capsys):
    """The example at the top of tinybptt.nn (quoted by the README) runs and prints its norms."""
    doc = nn.__doc__
    block = doc.split("::\n", 1)[1].split("\n\n``mode")[0]
    code = "\n".join(line[4:] for line in block.splitlines())
    namespace = {}
    exec(compile(code, "tinybptt.nn docstring", "exec"), namespace)
    printed = capsys.readouterr().out
    assert re.search(r"^loss \d", printed, re.M)
    assert "dL/dh_t norms [" in printed
    assert namespace["loss"].item() < 0.2


# ------------------------------------------------------------------ optimisers


def _param(values):
    return nn.Parameter(np.array(values, dtype=np.float64))


def test_sgd_plain_momentum_weight_decay():
    p = _param([1.0, -2.0])
    opt = optim.SGD([p], lr=0.1)
    p.grad = np.array([0.5, 1.0])
    old = p.data
    opt.step()
    np.testing.assert_allclose(p.data, [0.95, -2.1], rtol=1e-15)
    assert old is not p.data and np.array_equal(old, [1.0, -2.0])  # a new array: saved graphs keep the old one

    p = _param([1.0, -2.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    g1, g2 = np.array([0.5, 1.0]), np.array([-1.0, 2.0])
    p.grad = g1
    opt.step()
    d1 = g1 + 0.01 * np.array([1.0, -2.0])
    p1 = np.array([1.0, -2.0]) - 0.1 * d1
    np.testing.assert_allclose(p.data, p1, rtol=1e-15)
    p.grad = g2
    opt.step()
    d2 = g2 + 0.01 * p1
    np.testing.assert_allclose(p.data, p1 - 0.1 * (0.9 * d1 + d2), rtol=1e-15)
    opt.zero_grad()
    assert p.grad is None
    q = _param([3.0])
    optim.SGD([q, p], lr=1.0).step()  # parameters without gradients are left alone
    assert q.data[0] == 3.0


def test_adam_two_steps_by_hand():
    p = _param([0.5, -1.5, 2.0])
    opt = optim.Adam([p], lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)
    x = np.array([0.5, -1.5, 2.0])
    m = v = np.zeros(3)
    for t, g in enumerate([np.array([0.1, -0.2, 0.3]), np.array([-0.4, 0.0, 1.0])], start=1):
        p.grad = g
        opt.step()
        g = g + 0.1 * x
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g * g
        x = x - 0.01 * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.9 ** t)) + 1e-6)
        np.testing.assert_allclose(p.data, x, rtol=1e-14)


def test_optimisers_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(3)]
    for ours_cls, torch_cls, kw in [(optim.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
                                    (optim.Adam, torch.optim.Adam, dict(lr=0.05, betas=(0.9, 0.99), weight_decay=0.1))]:
        p, tp = nn.Parameter(w0.copy()), torch.tensor(w0.copy(), requires_grad=True)
        o, to = ours_cls([p], **kw), torch_cls([tp], **kw)
        for g in grads:
            p.grad = g.copy()
            tp.grad = torch.tensor(g.copy())
            o.step()
            to.step()
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, err_msg=ours_cls.__name__)


def test_optimiser_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        optim.SGD([_param([1.0])], lr=-1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([_param([1.0])], betas=(1.0, 0.9))
    with pytest.raises(tb.GraphError, match="requires_grad"):
        optim.SGD([tb.tensor([1.0])], lr=0.1)


# ------------------------------------------------------------------ clipping and state


def test_clip_grad_norm():
    a, b = _param([0.0, 0.0]), _param([0.0])
    a.grad, b.grad = np.array([3.0, 4.0]), np.array([12.0])
    total = clip_grad_norm_([a, b], 6.5)
    assert total == pytest.approx(13.0, rel=1e-15)
    np.testing.assert_allclose(a.grad, [1.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(b.grad, [6.0], rtol=1e-6)
    assert np.sqrt((a.grad ** 2).sum() + (b.grad ** 2).sum()) <= 6.5
    a.grad = np.array([0.3, 0.4])
    b.grad = None  # skipped
    assert clip_grad_norm_([a, b], 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(a.grad, [0.3, 0.4])  # under the limit: untouched
    a.grad = np.array([-3.0, 2.0])
    assert clip_grad_norm_([a], 1.0, norm_type=float("inf")) == 3.0
    np.testing.assert_allclose(a.grad, [-1.0, 2.0 / 3.0], rtol=1e-6)


def test_clip_grad_value_and_detach_state():
    a = _param([0.0, 0.0, 0.0])
    a.grad = np.array([-5.0, 0.2, 9.0])
    clip_grad_value_([a], 1.0)
    np.testing.assert_array_equal(a.grad, [-1.0, 0.2, 1.0])
    lstm = nn.LSTM(2, 3)
    _, (h, c) = lstm(np.ones((2, 1, 2)))
    h2, c2 = detach_state((h, c))
    assert h2.is_leaf and c2.is_leaf and not h2.requires_grad
    np.testing.assert_array_equal(h2.data, h.data)
    assert detach_state(None) is None
    assert detach_state(h).is_leaf


# ------------------------------------------------------------------ losses


def test_cross_entropy_stable_at_plus_minus_1000():
    logits = tb.tensor([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0]], requires_grad=True)
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # no overflow, log(0) or NaN anywhere
        loss = F.cross_entropy(logits, np.array([1, 2]))
        loss.backward()
    # row 0: log-sum-exp = 1000, -log p[1] = 2000; row 1: the target dominates, -log p = log(1 + 2e-2000) = 0
    assert loss.item() == pytest.approx(1000.0, rel=1e-15)
    expect = np.array([[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]) / 2  # (softmax - onehot) / N
    np.testing.assert_allclose(logits.grad, expect, atol=1e-300)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        ls = F.log_softmax(tb.tensor([[1000.0, -1000.0]]))
        sm = F.softmax(tb.tensor([[1000.0, -1000.0]]))
    np.testing.assert_array_equal(ls.data, [[0.0, -2000.0]])
    np.testing.assert_array_equal(sm.data, [[1.0, 0.0]])


def test_losses_by_hand_and_gradcheck():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5))
    t = np.array([0, 4, 2, 2])
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    assert F.cross_entropy(x, t).item() == pytest.approx(-logp[np.arange(4), t].mean(), rel=1e-14)
    assert F.cross_entropy(x, t, reduction="sum").item() == pytest.approx(-logp[np.arange(4), t].sum(), rel=1e-14)
    np.testing.assert_allclose(F.cross_entropy(x, t, reduction="none").data, -logp[np.arange(4), t], rtol=1e-14)
    np.testing.assert_allclose(F.softmax(x).data, np.exp(logp), rtol=1e-14)
    y = rng.standard_normal((4, 5))
    assert F.mse_loss(x, y).item() == pytest.approx(((x - y) ** 2).mean(), rel=1e-14)
    assert F.mse_loss(x, y, reduction="sum").item() == pytest.approx(((x - y) ** 2).sum(), rel=1e-14)
    seq_logits = rng.standard_normal((3, 2, 4))  # (T, B, C) with (T, B) targets
    st = np.array([[0, 3], [1, 1], [2, 0]])
    assert F.cross_entropy(seq_logits, st).item() == pytest.approx(
        F.cross_entropy(seq_logits.reshape(6, 4), st.reshape(6)).item(), rel=1e-15)

    xt = tb.tensor(x, requires_grad=True)
    assert tb.gradcheck(lambda a: F.log_softmax(a), [xt])
    assert tb.gradcheck(lambda a: F.softmax(a, axis=0), [xt])
    assert tb.gradcheck(lambda a: F.cross_entropy(a, t), [xt])
    assert tb.gradcheck(lambda a: F.mse_loss(a, y), [xt])


def test_loss_errors():
    with pytest.raises(tb.ShapeError, match=r"cross_entropy: target must have shape \(4,\).*got \(3,\)"):
        F.cross_entropy(np.zeros((4, 5)), np.array([0, 1, 2]))
    with pytest.raises(tb.ShapeError, match=r"\[0, 5\)"):
        F.cross_entropy(np.zeros((2, 5)), np.array([0, 5]))
    with pytest.raises(tb.DTypeError, match="cross_entropy: target class indices must be integers, got dtype float64"):
        F.cross_entropy(np.zeros((2, 5)), np.array([0.5, 1.0]))
    with pytest.raises(tb.ShapeError, match="mse_loss: input and target must have the same shape"):
        F.mse_loss(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(np.zeros(2), np.zeros(2), reduction="avg")

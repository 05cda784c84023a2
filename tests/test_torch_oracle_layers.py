"""PyTorch as a second oracle for the layers, the losses and the optimisers.

The recurrent layers (RNN with tanh and relu, LSTM, GRU) in every mode ("sequence",
"cell", "ops", with and without checkpointing), one to three layers, batch_first or not,
batched or not, with and without bias and initial state, float32 and float64, leaves laid
out as non-contiguous views; the cells fed their own state for a few steps; a small
Embedding -> LSTM -> Linear -> cross_entropy model; the losses over shapes with empty and
one-sized axes; SGD and Adam for a few steps against torch.optim; every layer and mode
fed an inf, -inf, NaN or 1e300 input element.  Each copies torch's
weights in through ``load_state_dict`` and compares outputs, final states and every
gradient (inputs, initial states, each parameter by name).

Example counts are bounded and derandomized; ``TINYBPTT_FUZZ_EXAMPLES=<n>`` runs a
campaign (see test_torch_oracle.py).

Documented differences from torch, checked as such: no bidirectional layers and no
inter-layer dropout (ValueError at construction); inputs with no time steps or no batch
are refused (ShapeError), so they are not generated.
"""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import tinybptt as tb  # noqa: E402
from tinybptt import nn, optim  # noqa: E402
from tinybptt.nn import functional as F  # noqa: E402
from test_torch_oracle import LAYOUTS, TORCH_DTYPE, assert_match, fuzz, leaf_array  # noqa: E402


# =========================================================================== layers


def _torch_kw(kind, nonlinearity):
    return dict(nonlinearity=nonlinearity) if kind == "rnn" else {}


LAYER = {"rnn": (nn.RNN, torch.nn.RNN), "lstm": (nn.LSTM, torch.nn.LSTM), "gru": (nn.GRU, torch.nn.GRU)}
CELL = {"rnn": (nn.RNNCell, torch.nn.RNNCell), "lstm": (nn.LSTMCell, torch.nn.LSTMCell),
        "gru": (nn.GRUCell, torch.nn.GRUCell)}


def _copy_weights(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]


def _compare_params(ours, theirs, what, dtype):
    mine = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        assert mine[name].grad is not None, "%s: %s.grad is None" % (what, name)
        assert_match(mine[name].grad, p.grad, "%s: d loss / d %s" % (what, name), dtype)


@fuzz(20)
@given(kind=st.sampled_from(("rnn", "lstm", "gru")), nonlinearity=st.sampled_from(("tanh", "relu")),
       mode=st.sampled_from(("sequence", "cell", "ops")), L=st.integers(1, 3), T=st.integers(1, 5),
       B=st.integers(1, 3), I=st.integers(1, 4), H=st.integers(1, 4), bias=st.booleans(), batch_first=st.booleans(),
       unbatched=st.booleans(), with_state=st.booleans(), dtype=st.sampled_from((np.float64, np.float32)),
       checkpoint=st.sampled_from((None, None, 1, 2)), layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 2 ** 31))
def test_recurrent_layers_match_torch(backend, kind, nonlinearity, mode, L, T, B, I, H, bias, batch_first, unbatched,
                                      with_state, dtype, checkpoint, layout, seed):
    if mode != "sequence":
        checkpoint = None
    td = TORCH_DTYPE[np.dtype(dtype)]
    torch.manual_seed(seed)
    theirs = LAYER[kind][1](I, H, num_layers=L, bias=bias, batch_first=batch_first, dtype=td,
                            **_torch_kw(kind, nonlinearity))
    ours = LAYER[kind][0](I, H, num_layers=L, bias=bias, batch_first=batch_first, dtype=dtype, mode=mode,
                          checkpoint=checkpoint, **_torch_kw(kind, nonlinearity))
    _copy_weights(ours, theirs)
    what = "%s(%d, %d, num_layers=%d, bias=%s, batch_first=%s, mode=%r, checkpoint=%r, dtype=%s%s) T=%d B=%d%s" % (
        kind, I, H, L, bias, batch_first, mode, checkpoint, np.dtype(dtype).name,
        ", nonlinearity=%r" % nonlinearity if kind == "rnn" else "", T, B, " unbatched" if unbatched else "")
    rng = np.random.default_rng(seed)
    xshape = (T, I) if unbatched else ((B, T, I) if batch_first else (T, B, I))
    sshape = (L, H) if unbatched else (L, B, H)
    x = leaf_array(rng, xshape, dtype, layout)
    gx, tx = tb.tensor(x, requires_grad=True), torch.tensor(x.copy(order="C"), requires_grad=True)
    states = [rng.standard_normal(sshape).astype(dtype) * 0.5 for _ in range(2 if kind == "lstm" else 1)]
    g_states = [tb.tensor(s, requires_grad=True) for s in states]
    t_states = [torch.tensor(s, requires_grad=True) for s in states]
    g_arg = None if not with_state else (tuple(g_states) if kind == "lstm" else g_states[0])
    t_arg = None if not with_state else (tuple(t_states) if kind == "lstm" else t_states[0])
    g_out, g_fin = ours(gx, g_arg)
    t_out, t_fin = theirs(tx, t_arg)
    g_fin = g_fin if kind == "lstm" else (g_fin,)
    t_fin = t_fin if kind == "lstm" else (t_fin,)
    assert_match(g_out.data, t_out, what + ": output", dtype)
    rng2 = np.random.default_rng(seed + 1)
    r_out = rng2.standard_normal(g_out.shape).astype(dtype)
    g_loss, t_loss = (g_out * r_out).sum(), (t_out * torch.tensor(r_out)).sum()
    for k, (go, to) in enumerate(zip(g_fin, t_fin)):
        assert_match(go.data, to, what + ": final state %d" % k, dtype)
        r = rng2.standard_normal(go.shape).astype(dtype)
        g_loss, t_loss = g_loss + (go * r).sum(), t_loss + (to * torch.tensor(r)).sum()
    g_loss.backward()
    t_loss.backward()
    assert_match(gx.grad, tx.grad, what + ": d loss / d input", dtype)
    if with_state:
        for k, (gs, ts) in enumerate(zip(g_states, t_states)):
            assert_match(gs.grad, ts.grad, what + ": d loss / d initial state %d" % k, dtype)
    _compare_params(ours, theirs, what, dtype)


@fuzz(15)
@given(kind=st.sampled_from(("rnn", "lstm", "gru")), nonlinearity=st.sampled_from(("tanh", "relu")),
       mode=st.sampled_from(("cell", "ops")), B=st.integers(1, 3), I=st.integers(1, 4), H=st.integers(1, 4),
       bias=st.booleans(), unbatched=st.booleans(), with_state=st.booleans(), steps=st.integers(1, 3),
       dtype=st.sampled_from((np.float64, np.float32)), seed=st.integers(0, 2 ** 31))
def test_recurrent_cells_match_torch(backend, kind, nonlinearity, mode, B, I, H, bias, unbatched, with_state, steps,
                                     dtype, seed):
    """A cell applied ``steps`` times, its state fed back (the state is reused by the next step)."""
    td = TORCH_DTYPE[np.dtype(dtype)]
    torch.manual_seed(seed)
    theirs = CELL[kind][1](I, H, bias=bias, dtype=td, **_torch_kw(kind, nonlinearity))
    ours = CELL[kind][0](I, H, bias=bias, dtype=dtype, mode=mode, **_torch_kw(kind, nonlinearity))
    _copy_weights(ours, theirs)
    what = "%sCell(%d, %d, bias=%s, mode=%r, dtype=%s) B=%d steps=%d%s" % (
        kind, I, H, bias, mode, np.dtype(dtype).name, B, steps, " unbatched" if unbatched else "")
    rng = np.random.default_rng(seed)
    lead = () if unbatched else (B,)
    xs = [rng.standard_normal(lead + (I,)).astype(dtype) for _ in range(steps)]
    gxs = [tb.tensor(x, requires_grad=True) for x in xs]
    txs = [torch.tensor(x, requires_grad=True) for x in xs]
    states = [rng.standard_normal(lead + (H,)).astype(dtype) for _ in range(2 if kind == "lstm" else 1)]
    gs = [tb.tensor(s, requires_grad=True) for s in states]
    ts = [torch.tensor(s, requires_grad=True) for s in states]
    g_state = (tuple(gs) if kind == "lstm" else gs[0]) if with_state else None
    t_state = (tuple(ts) if kind == "lstm" else ts[0]) if with_state else None
    g_loss = t_loss = 0
    for k in range(steps):
        g_state, t_state = ours(gxs[k], g_state), theirs(txs[k], t_state)
        g_parts = g_state if kind == "lstm" else (g_state,)
        t_parts = t_state if kind == "lstm" else (t_state,)
        for go, to in zip(g_parts, t_parts):
            assert_match(go.data, to, what + ": state after step %d" % k, dtype)
            r = rng.standard_normal(go.shape).astype(dtype)
            g_loss, t_loss = g_loss + (go * r).sum(), t_loss + (to * torch.tensor(r)).sum()
    g_loss.backward()
    t_loss.backward()
    for k in range(steps):
        assert_match(gxs[k].grad, txs[k].grad, what + ": d loss / d x_%d" % k, dtype)
    if with_state:
        for k in range(len(gs)):
            assert_match(gs[k].grad, ts[k].grad, what + ": d loss / d initial state %d" % k, dtype)
    _compare_params(ours, theirs, what, dtype)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_linear_embedding_and_lstm_model_match_torch(backend, kind):
    """A small model: Embedding -> layer -> Linear -> cross_entropy, forward and every gradient."""
    torch.manual_seed(3)
    V, E, H, C, T, B = 7, 4, 5, 3, 4, 2
    t_emb, t_rnn, t_head = torch.nn.Embedding(V, E, dtype=torch.float64), LAYER[kind][1](E, H, dtype=torch.float64), \
        torch.nn.Linear(H, C, dtype=torch.float64)
    g_emb, g_rnn, g_head = nn.Embedding(V, E), LAYER[kind][0](E, H), nn.Linear(H, C)
    for g, t in ((g_emb, t_emb), (g_rnn, t_rnn), (g_head, t_head)):
        _copy_weights(g, t)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, V, size=(T, B))
    ids[0, 0] = ids[1, 1]  # a repeated id: its embedding row gathers two gradients
    target = rng.integers(0, C, size=(T, B))
    g_out, _ = g_rnn(g_emb(ids))
    t_out, _ = t_rnn(t_emb(torch.as_tensor(ids)))
    g_loss = F.cross_entropy(g_head(g_out), target)
    t_loss = torch.nn.functional.cross_entropy(t_head(t_out).reshape(-1, C), torch.as_tensor(target).reshape(-1))
    assert_match(g_loss.data, t_loss, "loss")
    g_loss.backward()
    t_loss.backward()
    for g, t in ((g_emb, t_emb), (g_rnn, t_rnn), (g_head, t_head)):
        _compare_params(g, t, type(g).__name__, np.float64)


def test_bidirectional_and_dropout_are_refused_clearly():
    """Documented: no bidirectional layers and no inter-layer dropout (torch has both)."""
    for cls in (nn.RNN, nn.LSTM, nn.GRU):
        with pytest.raises(ValueError, match="bidirectional"):
            cls(3, 4, bidirectional=True)
        with pytest.raises(ValueError, match="dropout"):
            cls(3, 4, num_layers=2, dropout=0.5)


# =========================================================================== losses


@fuzz(40)
@given(loss=st.sampled_from(("mse_loss", "cross_entropy", "nll_loss", "softmax", "log_softmax")),
       reduction=st.sampled_from(("mean", "sum", "none")), lead=st.sampled_from(((), (1,), (3,), (2, 3), (0,), (2, 0))),
       C=st.integers(1, 4), dtype=st.sampled_from((np.float64, np.float32)), scale=st.sampled_from((1.0, 30.0)),
       seed=st.integers(0, 2 ** 31))
def test_losses_match_torch(backend, loss, reduction, lead, C, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(lead + (C,)) * scale).astype(dtype)
    gx, tx = tb.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    what = "%s(shape %s, %s, reduction=%r)" % (loss, x.shape, np.dtype(dtype).name, reduction)
    N = math.prod(lead)
    if loss in ("softmax", "log_softmax"):
        axis = int(rng.integers(-x.ndim, x.ndim))
        what += " axis=%d" % axis
        g_y, t_y = getattr(F, loss)(gx, axis=axis), getattr(torch.nn.functional, loss)(tx, dim=axis)
    elif loss == "mse_loss":
        y = rng.standard_normal(x.shape).astype(dtype)
        if reduction == "mean" and x.size == 0:
            return  # a mean of nothing: tinybptt raises ShapeError on purpose (torch gives NaN)
        gy, ty = tb.tensor(y, requires_grad=True), torch.tensor(y, requires_grad=True)
        g_y = F.mse_loss(gx, gy, reduction=reduction)
        t_y = torch.nn.functional.mse_loss(tx, ty, reduction=reduction)
    else:
        target = rng.integers(0, C, size=lead)
        if reduction == "mean" and N == 0:
            return  # as above
        g_y = getattr(F, loss)(gx, target, reduction=reduction)
        tfn = getattr(torch.nn.functional, loss)
        t_y = tfn(tx.reshape(N, C), torch.as_tensor(target).reshape(N), reduction=reduction)
        if reduction == "none":
            t_y = t_y.reshape(lead)
    assert_match(g_y.data, t_y, what + ": value")
    r = rng.standard_normal(g_y.shape).astype(dtype)
    (g_y * r).sum().backward()
    (t_y * torch.tensor(r)).sum().backward()
    assert_match(gx.grad, tx.grad, what + ": d / d input")
    if loss == "mse_loss":
        assert_match(gy.grad, ty.grad, what + ": d / d target")


# =========================================================================== optimisers


@fuzz(20)
@given(name=st.sampled_from(("SGD", "Adam")), lr=st.sampled_from((0.1, 0.01)), momentum=st.sampled_from((0.0, 0.9)),
       weight_decay=st.sampled_from((0.0, 0.01)), betas=st.sampled_from(((0.9, 0.999), (0.5, 0.9))),
       eps=st.sampled_from((1e-8, 1e-3)), dtype=st.sampled_from((np.float64, np.float32)), steps=st.integers(1, 6),
       seed=st.integers(0, 2 ** 31))
def test_optimisers_match_torch(backend, name, lr, momentum, weight_decay, betas, eps, dtype, steps, seed):
    """A GRU + Linear regression trained for a few steps: every parameter after every step, and the losses."""
    torch.manual_seed(seed)
    td = TORCH_DTYPE[np.dtype(dtype)]
    t_rnn, t_head = torch.nn.GRU(2, 3, dtype=td), torch.nn.Linear(3, 1, dtype=td)
    g_rnn, g_head = nn.GRU(2, 3, dtype=dtype), nn.Linear(3, 1, dtype=dtype)
    _copy_weights(g_rnn, t_rnn)
    _copy_weights(g_head, t_head)
    g_params = g_rnn.parameters() + g_head.parameters()
    t_params = list(t_rnn.parameters()) + list(t_head.parameters())
    if name == "SGD":
        g_opt = optim.SGD(g_params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        t_opt = torch.optim.SGD(t_params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        g_opt = optim.Adam(g_params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        t_opt = torch.optim.Adam(t_params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    what = "%s(lr=%r, momentum=%r, weight_decay=%r, betas=%r, eps=%r) %s" % (name, lr, momentum, weight_decay, betas,
                                                                            eps, np.dtype(dtype).name)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        x = rng.standard_normal((4, 2, 2)).astype(dtype)
        y = rng.standard_normal((2, 1)).astype(dtype)
        g_out, g_h = g_rnn(x)
        t_out, t_h = t_rnn(torch.tensor(x))
        g_loss = F.mse_loss(g_head(g_h[-1]), y)
        t_loss = torch.nn.functional.mse_loss(t_head(t_h[-1]), torch.tensor(y))
        assert_match(g_loss.data, t_loss, "%s: loss at step %d" % (what, step))
        g_opt.zero_grad()
        t_opt.zero_grad()
        g_loss.backward()
        t_loss.backward()
        g_opt.step()
        t_opt.step()
        for k, (gp, tp) in enumerate(zip(g_params, t_params)):
            assert_match(gp.data, tp, "%s: parameter %d after step %d" % (what, k, step))


# =========================================================================== layers at non-finite inputs

NONFINITE = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan, 1e300], ids=["inf", "-inf", "nan", "1e300"])
@pytest.mark.parametrize("mode", ["sequence", "cell", "ops"])
@pytest.mark.parametrize("kind,nonlinearity", NONFINITE, ids=["%s-%s" % k for k in NONFINITE])
def test_layers_propagate_non_finite_inputs_as_torch_does(backend, kind, nonlinearity, mode, value):
    """One input element is inf, -inf, NaN or huge: outputs and gradients hold the same
    non-finite values in the same places as torch's (NaN == NaN), the rest match."""
    torch.manual_seed(0)
    theirs = LAYER[kind][1](2, 3, dtype=torch.float64, **_torch_kw(kind, nonlinearity))
    ours = LAYER[kind][0](2, 3, mode=mode, **_torch_kw(kind, nonlinearity))
    _copy_weights(ours, theirs)
    x = np.random.default_rng(0).standard_normal((3, 2, 2))
    x[1, 0, 0] = value
    gx, tx = tb.tensor(x.copy(), requires_grad=True), torch.tensor(x.copy(), requires_grad=True)
    g_out, t_out = ours(gx)[0], theirs(tx)[0]
    what = "%s(2, 3, mode=%r%s), x[1, 0, 0] = %r" % (kind, mode, ", nonlinearity=%r" % nonlinearity
                                                     if kind == "rnn" else "", value)
    assert_match(g_out.data, t_out, what + ": output")
    g_out.sum().backward()
    t_out.sum().backward()
    assert_match(gx.grad, tx.grad, what + ": d loss / d input")
    _compare_params(ours, theirs, what, np.float64)

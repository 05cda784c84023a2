"""tinybptt's recurrent layers and cells match torch.nn given the same weights (float64).

Weights go from PyTorch to tinybptt exactly as a user would move them:
``{k: v.detach().numpy() for k, v in torch_model.state_dict().items()}``.
Compared: outputs, h_n / c_n, every parameter gradient (by name), and the
gradients with respect to the input and the initial state.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tinybptt as tb  # noqa: E402
from tinybptt import nn  # noqa: E402

RTOL, ATOL = 1e-10, 1e-12


def torch_layer(kind, I, H, L, bias, batch_first, nonlinearity="tanh"):
    torch.manual_seed(0)
    kw = dict(num_layers=L, bias=bias, batch_first=batch_first, dtype=torch.float64)
    if kind == "rnn":
        return torch.nn.RNN(I, H, nonlinearity=nonlinearity, **kw)
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](I, H, **kw)


def tb_layer(kind, I, H, L, bias, batch_first, mode, nonlinearity="tanh"):
    kw = dict(num_layers=L, bias=bias, batch_first=batch_first, mode=mode)
    if kind == "rnn":
        return nn.RNN(I, H, nonlinearity=nonlinearity, **kw)
    return {"lstm": nn.LSTM, "gru": nn.GRU}[kind](I, H, **kw)


def close(a, b, what):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=what)


# every cell, 1 and 2 layers, both layouts in the default mode; the other modes (compared with each
# other in test_rnn_modes) in one layout
CASES = [(kind, nl, L, bf, "sequence") for kind, nl in [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("gru", None)]
         for L in (1, 2) for bf in (False, True)]
CASES += [(kind, nl, L, False, mode) for kind, nl in [("rnn", "tanh"), ("lstm", None), ("gru", None)]
          for L in (1, 2) for mode in ("cell", "ops")]


@pytest.mark.parametrize("kind,nonlinearity,L,batch_first,mode", CASES)
def test_layers_match_torch(backend, kind, nonlinearity, L, batch_first, mode):
    T, B, I, H = 5, 3, 4, 6
    bias = not (L == 2 and batch_first)  # exercise bias=False too
    nl = nonlinearity or "tanh"
    tl = torch_layer(kind, I, H, L, bias, batch_first, nl)
    ours = tb_layer(kind, I, H, L, bias, batch_first, mode, nl)
    ours.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in tl.named_parameters()]

    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    h0 = rng.standard_normal((L, B, H)) * 0.5
    c0 = rng.standard_normal((L, B, H)) * 0.5
    R_out = rng.standard_normal((B, T, H) if batch_first else (T, B, H))
    R_h, R_c = rng.standard_normal((L, B, H)), rng.standard_normal((L, B, H))

    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    gx, gh0, gc0 = (tb.tensor(a, requires_grad=True) for a in (x, h0, c0))
    if kind == "lstm":
        t_out, (t_h, t_c) = tl(tx, (th0, tc0))
        g_out, (g_h, g_c) = ours(gx, (gh0, gc0))
        t_loss = (t_out * torch.tensor(R_out)).sum() + (t_h * torch.tensor(R_h)).sum() + (t_c * torch.tensor(R_c)).sum()
        g_loss = (g_out * R_out).sum() + (g_h * R_h).sum() + (g_c * R_c).sum()
        close(g_c.data, t_c.detach().numpy(), "c_n")
    else:
        t_out, t_h = tl(tx, th0)
        g_out, g_h = ours(gx, gh0)
        t_loss = (t_out * torch.tensor(R_out)).sum() + (t_h * torch.tensor(R_h)).sum()
        g_loss = (g_out * R_out).sum() + (g_h * R_h).sum()
    close(g_out.data, t_out.detach().numpy(), "out")
    close(g_h.data, t_h.detach().numpy(), "h_n")
    t_loss.backward()
    g_loss.backward()
    close(gx.grad, tx.grad.numpy(), "d input")
    close(gh0.grad, th0.grad.numpy(), "d h0")
    if kind == "lstm":
        close(gc0.grad, tc0.grad.numpy(), "d c0")
    t_params = dict(tl.named_parameters())
    for name, p in ours.named_parameters():
        close(p.grad, t_params[name].grad.numpy(), "d " + name)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_unbatched_and_default_state_match_torch(backend, kind):
    T, I, H = 4, 3, 5
    tl = torch_layer(kind, I, H, 2, True, False)
    ours = tb_layer(kind, I, H, 2, True, False, "sequence")
    ours.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((T, I))
    t_out, t_state = tl(torch.tensor(x))
    g_out, g_state = ours(x)
    close(g_out.data, t_out.detach().numpy(), "out")
    t_h = t_state[0] if kind == "lstm" else t_state
    g_h = g_state[0] if kind == "lstm" else g_state
    assert g_h.shape == (2, H)
    close(g_h.data, t_h.detach().numpy(), "h_n")


@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
@pytest.mark.parametrize("mode", ["cell", "ops"])
def test_cells_match_torch(backend, kind, mode):
    torch.manual_seed(0)
    I, H, B = 4, 5, 3
    if kind.startswith("rnn"):
        tc = torch.nn.RNNCell(I, H, nonlinearity=kind[4:], dtype=torch.float64)
        ours = nn.RNNCell(I, H, nonlinearity=kind[4:], mode=mode)
    else:
        tc = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[kind](I, H, dtype=torch.float64)
        ours = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}[kind](I, H, mode=mode)
    ours.load_state_dict({k: v.detach().numpy() for k, v in tc.state_dict().items()})
    rng = np.random.default_rng(4)
    x, h, c = rng.standard_normal((B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    R1, R2 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    tx, th, tcc = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    gx, gh, gc = (tb.tensor(a, requires_grad=True) for a in (x, h, c))
    if kind == "lstm":
        t1, t2 = tc(tx, (th, tcc))
        g1, g2 = ours(gx, (gh, gc))
        ((t1 * torch.tensor(R1)).sum() + (t2 * torch.tensor(R2)).sum()).backward()
        ((g1 * R1).sum() + (g2 * R2).sum()).backward()
        close(g2.data, t2.detach().numpy(), "c'")
        close(gc.grad, tcc.grad.numpy(), "dc")
    else:
        t1 = tc(tx, th)
        g1 = ours(gx, gh)
        (t1 * torch.tensor(R1)).sum().backward()
        (g1 * R1).sum().backward()
    close(g1.data, t1.detach().numpy(), "h'")
    close(gx.grad, tx.grad.numpy(), "dx")
    close(gh.grad, th.grad.numpy(), "dh")
    t_params = dict(tc.named_parameters())
    for name, p in ours.named_parameters():
        close(p.grad, t_params[name].grad.numpy(), "d " + name)


def test_linear_and_embedding_match_torch():
    torch.manual_seed(0)
    tl, te = torch.nn.Linear(4, 3, dtype=torch.float64), torch.nn.Embedding(6, 4, dtype=torch.float64)
    lin, emb = nn.Linear(4, 3), nn.Embedding(6, 4)
    lin.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    emb.load_state_dict(te.state_dict())  # torch tensors are accepted directly too
    ids = np.array([[1, 5, 1], [0, 2, 1]])
    R = np.random.default_rng(0).standard_normal((2, 3, 3))
    t_out = tl(te(torch.tensor(ids)))
    g_out = lin(emb(ids))
    close(g_out.data, t_out.detach().numpy(), "out")
    (t_out * torch.tensor(R)).sum().backward()
    (g_out * R).sum().backward()
    close(emb.weight.grad, te.weight.grad.numpy(), "d embedding")
    close(lin.weight.grad, tl.weight.grad.numpy(), "d weight")
    close(lin.bias.grad, tl.bias.grad.numpy(), "d bias")


def test_forget_bias_behaves_the_same_in_torch():
    """lstm_forget_bias_ writes PyTorch-layout biases: moving them to torch gives the same outputs."""
    ours = nn.LSTM(3, 4, num_layers=2, forget_bias=1.5)
    for l in range(2):
        b_ih, b_hh = ours.layer_weights(l)[2:]
        np.testing.assert_array_equal(b_ih.data[4:8], 1.5)
        np.testing.assert_array_equal(b_hh.data[4:8], 0.0)
    tl = torch.nn.LSTM(3, 4, num_layers=2, dtype=torch.float64)
    tl.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    close(ours(x)[0].data, tl(torch.tensor(x))[0].detach().numpy(), "out")

"""Truncated BPTT (k1, k2) and checkpointed BPTT against full backpropagation through time."""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt import bptt, nn, optim
from tinybptt.errors import GraphError


class Seq(nn.Module):
    """A recurrent layer and a linear read-out at every step: ``(y, state) = model(x, state)``."""

    def __init__(self, cell, I, H, O, L=1, batch_first=False):
        super().__init__()
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.rnn = cls(I, H, num_layers=L, batch_first=batch_first)
        self.head = nn.Linear(H, O)
        self.batch_first = batch_first

    def forward(self, x, state=None):
        out, state = self.rnn(x, state)
        return self.head(out), state


def sq_loss(y, target):
    d = y - target
    return (d * d).sum()


def data(T, B=2, I=3, O=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, B, I)), rng.standard_normal((T, B, O))


def model(cell="lstm", L=1, seed=0, batch_first=False):
    nn.manual_seed(seed)
    return Seq(cell, 3, 4, 2, L, batch_first)


def grads(m):
    return [p.grad.copy() for p in m.parameters()]


# ------------------------------------------------------------------ truncated BPTT


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_k1_equals_k2_equals_T_is_full_bptt(backend, cell):
    T = 9
    x, y = data(T)
    full = model(cell, L=2)
    loss = sq_loss(full(x)[0], y)
    loss.backward()
    g_full = grads(full)
    optim.SGD(full.parameters(), lr=0.05, momentum=0.5).step()

    for strategy, exact in [("auto", True), ("steps", False)]:
        m = model(cell, L=2)
        seen = []
        res = bptt.truncated_bptt(m, x, y, sq_loss, optim.SGD(m.parameters(), lr=0.05, momentum=0.5), k1=T, k2=T,
                                  strategy=strategy, on_update=lambda info: seen.append(grads(m)))
        assert res.updates == 1 and len(seen) == 1
        if exact:  # chunking with one chunk builds the very same graph: bitwise the same
            assert res.losses == [loss.item()]
            for a, b in zip(g_full, seen[0]):
                np.testing.assert_array_equal(a, b)
            for p, q in zip(full.parameters(), m.parameters()):
                np.testing.assert_array_equal(p.data, q.data)
        else:  # one step at a time with carried gradients: the same to rounding
            assert res.losses[0] == pytest.approx(loss.item(), rel=1e-13)
            for a, b in zip(g_full, seen[0]):
                np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-13)
            for p, q in zip(full.parameters(), m.parameters()):
                np.testing.assert_allclose(q.data, p.data, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_chunk_and_step_strategies_agree(backend, k):
    T = 12  # not a multiple of 5: a shorter last chunk
    x, y = data(T, seed=1)
    runs = []
    for strategy in ("chunks", "steps"):
        m = model("lstm", seed=2)
        seen = []
        res = bptt.truncated_bptt(m, x, y, sq_loss, optim.Adam(m.parameters(), lr=0.01), k1=k,
                                  strategy=strategy, on_update=lambda info: seen.append(grads(m)))
        runs.append((res, seen, [p.data for p in m.parameters()]))
    (r1, g1, p1), (r2, g2, p2) = runs
    assert r1.updates == r2.updates == -(-T // k)
    np.testing.assert_allclose(r1.losses, r2.losses, rtol=1e-12)
    for a_list, b_list in zip(g1, g2):
        for a, b in zip(a_list, b_list):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(p1, p2):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(r1.state[0].data, r2.state[0].data, rtol=1e-12)


# (T, k1, k2, [(injected start, end, backprop first)]) written out by hand
WINDOWS = [
    (10, 3, 5, [(0, 3, 0), (3, 6, 1), (6, 9, 4), (9, 10, 7)]),
    (10, 4, 2, [(0, 4, 2), (4, 8, 6), (8, 10, 8)]),
    (7, 2, 7, [(0, 2, 0), (2, 4, 0), (4, 6, 0), (6, 7, 1)]),
]


@pytest.mark.parametrize("T,k1,k2,windows", WINDOWS)
def test_k1_ne_k2_matches_an_independent_reconstruction(backend, T, k1, k2, windows):
    """With no optimiser the weights stay fixed, so each update's gradient can be rebuilt directly.

    For an update injecting the losses of steps [s, e) and backpropagating through
    [first, e): run the model with a fresh graph from the (detached) state at step
    ``first`` over [first, e), take the loss of steps [max(s, first), e), backprop.
    The sum over updates must equal what truncated_bptt accumulated.
    """
    assert [(f, e) for _, e, f in windows] == bptt.backprop_windows(T, k1, k2)
    x, y = data(T, seed=3)
    m = model("lstm", L=2, seed=4)
    res = bptt.truncated_bptt(m, x, y, sq_loss, None, k1=k1, k2=k2)
    got = grads(m)

    ref = model("lstm", L=2, seed=4)
    with tb.no_grad():
        y_full = ref(x)[0].data
    expect_losses = []
    for s, e, first in windows:
        expect_losses.append(float(((y_full[s:e] - y[s:e]) ** 2).sum()))
        state = None
        if first > 0:
            with tb.no_grad():
                _, state = ref(x[:first])
        out, _ = ref(x[first:e], state)
        lo = max(s, first)
        if lo < e:
            sq_loss(out[lo - first:], y[lo:e]).backward()
    np.testing.assert_allclose(res.losses, expect_losses, rtol=1e-12)
    for (name, p), g in zip(ref.named_parameters(), got):
        np.testing.assert_allclose(g, p.grad, rtol=1e-10, atol=1e-12, err_msg=name)


def test_truncation_differs_from_full_and_approaches_it(backend):
    """k1 = 1 (an update after every step) with no optimiser accumulates, for every step's loss,
    its gradient through the last k2 steps: it differs from full BPTT for k2 < T and
    approaches it as k2 grows (contractive weights); k2 = T is full BPTT."""
    T = 16
    x, y = data(T, seed=5)
    full = model("rnn", seed=6)
    for p in full.parameters():
        p.data *= 0.5
    weights = full.state_dict()
    sq_loss(full(x)[0], y).backward()
    g_full = np.concatenate([g.ravel() for g in grads(full)])
    diffs = []
    for k2 in (1, 2, 4, 8, 16):
        m = model("rnn")
        m.load_state_dict(weights)
        bptt.truncated_bptt(m, x, y, sq_loss, None, k1=1, k2=k2)
        g = np.concatenate([g.ravel() for g in grads(m)])
        diffs.append(np.linalg.norm(g - g_full) / np.linalg.norm(g_full))
    assert diffs[-1] < 1e-12
    assert all(d > 1e-6 for d in diffs[:-1])
    assert all(a > b for a, b in zip(diffs, diffs[1:])), diffs


def test_k2_greater_than_k1_trains_and_batch_first(backend):
    x, y = data(24, B=4, seed=7)
    m = model("gru", seed=8, batch_first=True)
    xb, yb = x.transpose(1, 0, 2), y.transpose(1, 0, 2)  # time axis 1, picked up from model.batch_first
    opt = optim.Adam(m.parameters(), lr=0.05)
    first = bptt.truncated_bptt(m, xb, yb, sq_loss, opt, k1=4, k2=8)
    for _ in range(15):
        last = bptt.truncated_bptt(m, xb, yb, sq_loss, opt, k1=4, k2=8)
    assert first.updates == 6 and len(last.losses) == 6
    assert sum(last.losses) < 0.7 * sum(first.losses)
    assert last.state.is_leaf and last.state.shape == (1, 4, 4)


def test_forgetting_to_detach_raises_graph_error(backend):
    lstm = nn.LSTM(3, 4)
    x, _ = data(8)
    state = None
    out, state = lstm(x[:4], state)
    out.sum().backward()
    out, state = lstm(x[4:], state)  # state still attached to the first chunk's (freed) graph
    with pytest.raises(GraphError, match="detach"):
        out.sum().backward()
    # the fix
    out, state = lstm(x[:4], None)
    out.sum().backward()
    out, state = lstm(x[4:], nn.utils.detach_state(state))
    out.sum().backward()


def test_truncated_bptt_errors():
    x, y = data(6)
    m = model()
    with pytest.raises(ValueError, match=r"k1 \(a number of steps\) must be an integer >= 1"):
        bptt.truncated_bptt(m, x, y, sq_loss, None, k1=0)
    with pytest.raises(ValueError, match="strategy='chunks' needs k1 == k2"):
        bptt.truncated_bptt(m, x, y, sq_loss, None, k1=2, k2=3, strategy="chunks")
    with pytest.raises(tb.ShapeError, match="6 steps along axis 0 but targets have 5"):
        bptt.truncated_bptt(m, x, y[:5], sq_loss, None, k1=2)


# ------------------------------------------------------------------ checkpointed BPTT


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("k", [1, 2, 3, 7, 10])
def test_checkpointed_equals_full(backend, cell, k):
    T, B, I, H, L = 7, 2, 3, 4, 2
    rng = np.random.default_rng(k)
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
    nn.manual_seed(1)
    full = cls(I, H, num_layers=L, batch_first=True)
    ck = cls(I, H, num_layers=L, batch_first=True, checkpoint=k)
    ck.load_state_dict(full.state_dict())
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((L, B, H))
    R = rng.standard_normal((B, T, H))
    res = []
    for layer in (full, ck):
        xt, h0t = tb.tensor(x, requires_grad=True), tb.tensor(h0, requires_grad=True)
        out, st = layer(xt, (h0t, tb.tensor(h0)) if cell == "lstm" else h0t)
        h_n = st[0] if cell == "lstm" else st
        loss = (out * R).sum() + (h_n * h_n).sum()
        if cell == "lstm":
            loss = loss + (st[1] * 2.0).sum()
        loss.backward()
        res.append([out.data, h_n.data, xt.grad, h0t.grad] + grads(layer) + [layer.grad_trace.h])
    for a, b in zip(*res):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-13)
    # bptt.checkpointed is the same thing as a function
    ck2 = cls(I, H, num_layers=L, batch_first=True)
    ck2.load_state_dict(full.state_dict())
    out2, _ = bptt.checkpointed(ck2, x, None, k)
    out1, _ = full(x)
    np.testing.assert_allclose(out2.data, out1.data, rtol=1e-13)


def test_checkpoint_memory_is_O_T_over_k_plus_k(backend):
    T, B, I, H, L = 64, 4, 8, 16, 1
    x = np.random.default_rng(0).standard_normal((T, B, I))
    lstm = nn.LSTM(I, H, num_layers=L)
    full = bptt.activation_bytes(lstm, x)["peak"]
    half = bptt.activation_bytes(lstm, x[:T // 2])["peak"]
    assert 1.9 < full / half < 2.1  # plain BPTT: linear in T
    state_bytes = L * 2 * B * H * 8  # h and c of every layer, float64
    peaks = {}
    for k in (1, 4, 8, 16, 64):
        mem = bptt.activation_bytes(lstm, x, checkpoint=k)
        assert mem["stored"] == -(-T // k) * state_bytes  # O(T/k): one state per segment
        peaks[k] = mem["peak"]
        assert mem["peak"] - mem["stored"] <= full * k / T * 1.05 + state_bytes  # O(k): one segment
    assert peaks[8] < peaks[1] and peaks[8] < peaks[64]
    assert peaks[8] < 0.3 * full
    # the generic measure agrees: a checkpointed graph saves only the stored states
    out, _ = lstm.forward_with(tb.from_numpy(x), None, checkpoint=8)
    assert bptt.saved_bytes(out, exclude=[x] + lstm.parameters()) <= lstm.checkpoint_stats.stored_bytes + 64
    assert lstm.checkpoint_stats.full_bytes == pytest.approx(full, rel=0.1)

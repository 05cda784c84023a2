"""The three graph granularities of the recurrent layers agree, and each is a correct gradient.

The project's central correctness property: a layer built from primitive ops
("ops"), from one fused node per step ("cell") and from one fused node per layer
("sequence", plus the checkpointed variant) computes the same outputs and the
same gradients -- and the same per-step gradient trace -- to float64 rounding,
on both kernel backends.  Each mode also passes a finite-difference gradient check.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinybptt as tb
from tinybptt import nn
from tinybptt.backprop import topological_order
from tinybptt.errors import GraphError

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
MODES = ["ops", "cell", "sequence"]


def make_layer(cell, I, H, L=1, bias=True, batch_first=False, mode="sequence", checkpoint=None):
    if cell == "lstm":
        return nn.LSTM(I, H, L, bias=bias, batch_first=batch_first, mode=mode, checkpoint=checkpoint)
    if cell == "gru":
        return nn.GRU(I, H, L, bias=bias, batch_first=batch_first, mode=mode, checkpoint=checkpoint)
    return nn.RNN(I, H, L, nonlinearity=cell[4:], bias=bias, batch_first=batch_first, mode=mode,
                  checkpoint=checkpoint)


def run(layer, x_data, state_data, seeds):
    """Forward, a random linear loss of out, h_n (and c_n), backward; everything as NumPy arrays."""
    x = tb.tensor(x_data, requires_grad=True)
    state = None
    if state_data is not None:
        state = tuple(tb.tensor(s, requires_grad=True) for s in state_data)
        call_state = state if layer.cell_type == "lstm" else state[0]
    else:
        call_state = None
    out, st_out = layer(x, call_state)
    outs = [out] + (list(st_out) if isinstance(st_out, tuple) else [st_out])
    loss = None
    for o, r in zip(outs, seeds):
        term = (o * r).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    res = {"out%d" % k: o.data for k, o in enumerate(outs)}
    res["dx"] = x.grad
    if state is not None:
        for k, s in enumerate(state):
            res["dstate%d" % k] = s.grad
    for name, p in layer.named_parameters():
        res["d" + name] = p.grad
    trace = layer.grad_trace
    res["trace_h"] = trace.h
    if trace.c is not None:
        res["trace_c"] = trace.c
    res["norms"] = trace.norms()
    return res


def assert_close(ref, got, what, rel=1e-10):
    assert set(ref) == set(got), (what, sorted(ref), sorted(got))
    for k in ref:
        a, b = ref[k], got[k]
        assert a is not None and b is not None, (what, k)
        assert a.shape == b.shape, (what, k, a.shape, b.shape)
        scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-12)
        err = float(np.max(np.abs(a - b))) if a.size else 0.0
        assert err <= rel * scale, "%s: %s differs: max abs err %.3g, scale %.3g" % (what, k, err, scale)


@given(
    T=st.integers(1, 5), B=st.integers(1, 3), I=st.integers(1, 4), H=st.integers(1, 4), L=st.integers(1, 2),
    cell=st.sampled_from(CELLS), bias=st.booleans(), batch_first=st.booleans(), with_state=st.booleans(),
    k=st.integers(1, 6), seed=st.integers(0, 2 ** 16),
)
def test_modes_agree(backend, T, B, I, H, L, cell, bias, batch_first, with_state, k, seed):
    rng = np.random.default_rng(seed)
    ref_layer = make_layer(cell, I, H, L, bias, batch_first, mode="ops")
    for p in ref_layer.parameters():  # weights large enough that gates are not all near-linear
        p.data[...] = rng.uniform(-0.8, 0.8, p.shape)
    weights = ref_layer.state_dict()
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    n_state = 2 if cell == "lstm" else 1
    state = [rng.standard_normal((L, B, H)) for _ in range(n_state)] if with_state else None
    out_shape = (B, T, H) if batch_first else (T, B, H)
    seeds = [rng.standard_normal(out_shape)] + [rng.standard_normal((L, B, H)) for _ in range(n_state)]

    ref = run(ref_layer, x, state, seeds)
    for mode, ckpt in [("cell", None), ("sequence", None), ("sequence", k)]:
        layer = make_layer(cell, I, H, L, bias, batch_first, mode=mode, checkpoint=ckpt)
        layer.load_state_dict(weights)
        assert_close(ref, run(layer, x, state, seeds), "%s mode=%s checkpoint=%s" % (cell, mode, ckpt))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("mode", MODES + ["checkpoint"])
def test_gradcheck_each_mode(backend, cell, mode):
    rng = np.random.default_rng(7)
    T, B, I, H, L = 3, 2, 2, 2, 2
    layer = make_layer(cell, I, H, L, mode="sequence" if mode == "checkpoint" else mode,
                       checkpoint=2 if mode == "checkpoint" else None)
    for p in layer.parameters():
        p.data[...] = rng.uniform(-0.9, 0.9, p.shape)
    x = tb.tensor(rng.standard_normal((T, B, I)), requires_grad=True)
    h0 = tb.tensor(rng.standard_normal((L, B, H)) * 0.5, requires_grad=True)
    c0 = tb.tensor(rng.standard_normal((L, B, H)) * 0.5, requires_grad=True)
    params = layer.parameters()

    def fn(x, h0, c0, *ps):
        if cell == "lstm":
            out, (h_n, c_n) = layer(x, (h0, c0))
            return out, h_n, c_n
        out, h_n = layer(x, h0)
        return out, h_n

    inputs = [x, h0, c0] + params if cell == "lstm" else [x, h0] + params
    names = ["x[T,B,I]", "h0", "c0"][:len(inputs) - len(params)] + [n for n, _ in layer.named_parameters()]
    report = tb.gradcheck(fn, inputs, names=names)
    assert report


def test_gradcheck_catches_a_wrong_backward(backend):
    """The check above can fail: a cell Function whose backward drops dh is caught."""
    from tinybptt.nn import recurrent_fn as R

    layer = nn.GRU(2, 2, mode="cell")
    x = tb.tensor(np.random.default_rng(0).standard_normal((3, 1, 2)), requires_grad=True)
    fn_cls = R.step_function("gru")
    original = fn_cls.backward

    def broken(ctx, d_h, d_c=None):
        g = list(original(ctx, d_h, d_c))
        g[1] = np.zeros_like(g[1])  # lose the gradient to the previous hidden state
        return tuple(g)

    fn_cls.backward = staticmethod(broken)
    try:
        report = tb.gradcheck(lambda x: layer(x)[0], [x], names=["x[T,B,I]"], raise_exception=False)
    finally:
        fn_cls.backward = staticmethod(original)
    assert not report


@pytest.mark.parametrize("cell", CELLS)
def test_grad_trace_last_step_and_shapes(backend, cell):
    """Independent check: with loss = sum(R * out), the trace at the last step of the top layer is R[T-1]."""
    rng = np.random.default_rng(3)
    T, B, I, H, L = 4, 2, 3, 5, 2
    nn.manual_seed(3)  # fixed weights: with unseeded ones a relu RNN could draw all-dead units (no gradient back)
    for mode in MODES:
        layer = make_layer(cell, I, H, L, mode=mode)
        out, _ = layer(rng.standard_normal((T, B, I)))
        R = rng.standard_normal((T, B, H))
        (out * R).sum().backward()
        tr = layer.grad_trace
        assert tr.h.shape == (L, T, B, H)
        np.testing.assert_allclose(tr.h[L - 1, T - 1], R[T - 1], rtol=0, atol=1e-14)
        np.testing.assert_allclose(tr.norms(), np.sqrt((tr.h ** 2).sum(axis=(2, 3))), rtol=1e-14)
        assert tr.norms().shape == (L, T)
        assert (tr.c is not None) == (cell == "lstm")
        # every earlier step also sees gradient flowing back from later steps
        assert not np.allclose(tr.h[L - 1, 0], R[0])


def test_grad_trace_errors_and_reset(backend):
    lstm = nn.LSTM(2, 3)
    x = np.ones((3, 1, 2))
    with pytest.raises(GraphError, match="LSTM"):
        lstm.grad_trace
    out, _ = lstm(x)
    with pytest.raises(GraphError, match="backward"):
        lstm.grad_trace  # forward but no backward yet
    out.sum().backward()
    first = lstm.grad_trace.h.copy()
    out, _ = lstm(x)  # a new forward resets the trace
    with pytest.raises(GraphError):
        lstm.grad_trace
    (2 * out).sum().backward()
    np.testing.assert_allclose(lstm.grad_trace.h, 2 * first, rtol=1e-12)
    with tb.no_grad():
        lstm(x)
    with pytest.raises(GraphError, match="no_grad"):
        lstm.grad_trace
    for mode in MODES:  # switching the trace off changes nothing else
        a, b = nn.LSTM(2, 3, mode=mode), nn.LSTM(2, 3, mode=mode)
        b.load_state_dict(a.state_dict())
        b.record_grad_trace = False
        for layer in (a, b):
            layer(x)[0].sum().backward()
        assert all(np.array_equal(p.grad, q.grad) for p, q in zip(a.parameters(), b.parameters()))
        with pytest.raises(GraphError, match="record_grad_trace is False"):
            b.grad_trace


def _nodes(root):
    return topological_order(root)


def test_node_names_and_steps(backend):
    T = 3
    x = np.random.default_rng(0).standard_normal((T, 2, 2))
    # ops: many primitive nodes, each step's tagged with its step and the layer label
    lstm = nn.LSTM(2, 3, num_layers=2, mode="ops")
    out, (h_n, c_n) = lstm(x)
    nodes = _nodes(out.sum())
    ops = {n.op for n in nodes}
    assert {"linear", "sigmoid", "tanh", "mul", "split"} <= ops
    stepped = [n for n in nodes if n.step is not None]
    assert {n.step for n in stepped} == set(range(T))
    assert {n.label for n in stepped} == {"lstm.l0", "lstm.l1"}
    assert all(n.label is not None for n in nodes if n.op in ("sigmoid", "split"))
    # cell: one fused node per step and layer
    lstm = nn.LSTM(2, 3, num_layers=2, mode="cell")
    out, _ = lstm(x)
    cells = [n for n in _nodes(out.sum()) if n.op == "lstm_cell"]
    assert sorted((n.label, n.step) for n in cells) == sorted((l, t) for l in ("lstm.l0", "lstm.l1") for t in range(T))
    # sequence: one node per layer
    gru = nn.GRU(2, 3, num_layers=2)
    out, _ = gru(x)
    seqs = [n for n in _nodes(out.sum()) if n.op == "gru_sequence"]
    assert sorted(n.label for n in seqs) == ["gru.l0", "gru.l1"]
    rnn = nn.RNN(2, 3, nonlinearity="relu", checkpoint=2)
    out, _ = rnn(x)
    assert [n.op for n in _nodes(out.sum())].count("rnn_relu_checkpointed") == 1


def test_cells_modes_agree(backend):
    rng = np.random.default_rng(5)
    for cls, kw in [(nn.RNNCell, {}), (nn.RNNCell, {"nonlinearity": "relu"}), (nn.LSTMCell, {}), (nn.GRUCell, {})]:
        a, b = cls(3, 4, mode="ops", **kw), cls(3, 4, mode="cell", **kw)
        b.load_state_dict(a.state_dict())
        x = rng.standard_normal((2, 3))
        lstm = cls is nn.LSTMCell
        state = (rng.standard_normal((2, 4)), rng.standard_normal((2, 4))) if lstm else rng.standard_normal((2, 4))
        results = []
        for cell in (a, b):
            xt = tb.tensor(x, requires_grad=True)
            st_t = tuple(tb.tensor(s, requires_grad=True) for s in state) if lstm else tb.tensor(state, requires_grad=True)
            res = cell(xt, st_t)
            outs = res if lstm else (res,)
            sum((o * o).sum() for o in outs).backward()
            grads = [xt.grad] + [s.grad for s in (st_t if lstm else (st_t,))] + [p.grad for p in cell.parameters()]
            results.append([o.data for o in outs] + grads)
        for u, v in zip(*results):
            np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-13)

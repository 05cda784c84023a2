"""tinybptt.inspect: walk, zero/underflow/no-path states, anomaly mode, Jacobians, DOT, terminal.

Expected values come from independent computations: finite differences of a NumPy
step function, closed forms (powers of a scaled orthogonal matrix), or hand-made graphs
whose gradients are known exactly.
"""
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinybptt as tb
from tinybptt import nn
from tinybptt.autograd import Function, node_scope
from tinybptt.inspect import (AnomalyError, CellSpec, detect_anomaly, jacobian_norms, logspace_backprop, step_jacobian,
                              run_cell, to_dot, walk)
from tinybptt.inspect import dot as dotmod
from tinybptt import display as terminal
from tinybptt.inspect import numerics


# --------------------------------------------------------------------------- helpers


def np_rnn_step(W_ih, W_hh, b, x_t, h):
    """One tanh RNN step in plain NumPy (the finite-difference reference)."""
    return np.tanh(x_t @ W_ih.T + h @ W_hh.T + b)


def fd_jacobian(f, h, eps=1e-6):
    """Central finite-difference Jacobian of f: R^H -> R^H at h."""
    J = np.zeros((f(h).size, h.size))
    for k in range(h.size):
        e = np.zeros_like(h)
        e[k] = eps
        J[:, k] = (f(h + e) - f(h - e)) / (2 * eps)
    return J


def manual_rnn(x, W_ih, W_hh, b, h0=None):
    """A tanh RNN unrolled with engine ops, each step tagged; returns the list of h_t Tensors (t = 1..T)."""
    T, B, _ = x.shape
    H = W_hh.shape[0]
    h = h0 if h0 is not None else tb.tensor(np.zeros((B, H)))
    hs = []
    for t in range(T):
        with node_scope(label="myrnn", step=t + 1):
            h = tb.tanh(tb.tensor(x[t]) @ W_ih.T + h @ W_hh.T + b)
        hs.append(h)
    return hs


# --------------------------------------------------------------------------- walk: norms vs finite differences


def test_walk_step_norms_match_finite_difference_jacobian_products():
    rng = np.random.default_rng(1)
    T, B, I, H = 6, 1, 2, 3
    Wi, Wh, bb = rng.standard_normal((H, I)), rng.standard_normal((H, H)) * 0.8, rng.standard_normal(H) * 0.1
    x = rng.standard_normal((T, B, I))
    u = rng.standard_normal((B, H))
    W_ih, W_hh, b = (tb.tensor(a, requires_grad=True) for a in (Wi, Wh, bb))
    h0 = tb.tensor(np.zeros((B, H)), requires_grad=True)
    hs = manual_rnn(x, W_ih, W_hh, b, h0)
    loss = (hs[-1] * tb.tensor(u)).sum()
    w = walk(loss, params={"W_ih": W_ih, "W_hh": W_hh, "b": b, "h0": h0})

    # independent: states in NumPy, per-step Jacobians by finite differences, dL/dh_t = (J_T...J_{t+1})^T u
    states = [np.zeros(H)]
    for t in range(T):
        states.append(np_rnn_step(Wi, Wh, bb, x[t, 0], states[-1]))
    g = u[0].copy()
    expected = {T: np.linalg.norm(g)}
    for t in range(T, 0, -1):
        J = fd_jacobian(lambda h: np_rnn_step(Wi, Wh, bb, x[t - 1, 0], h), states[t - 1])
        g = J.T @ g
        expected[t - 1] = np.linalg.norm(g)
    for t in range(1, T + 1):
        (rec,) = w.nodes(op="tanh", step=t)
        assert rec.status == "ok"
        assert rec.norm == pytest.approx(expected[t], rel=1e-6)
    (leaf,) = [r for r in w.records if r.name == "h0"]
    assert leaf.norm == pytest.approx(expected[0], rel=1e-6)
    # backward order: the tanh of the last step comes before the tanh of the first
    order = [r.step for r in w.records if r.op == "tanh"]
    assert order == list(range(T, 0, -1))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_grad_trace_and_jacobian_agree_with_finite_differences(cell):
    """nn layer (sequence mode) grad_trace == analytic log-space backprop == FD Jacobian products."""
    rng = np.random.default_rng(2)
    T, B, I, H = 5, 1, 3, 4
    nn.manual_seed(3)
    layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](I, H)
    x = rng.standard_normal((T, B, I))
    u = rng.standard_normal((B, H))
    out = layer(x)[0]
    (out[-1] * tb.tensor(u)).sum().backward()
    got = layer.grad_trace.norms()[0]  # t = 1..T

    spec = tb.inspect.cell_from_layer(layer)
    tr = run_cell(spec, x)
    D = spec.state_dim

    def step(t):
        def f(s):
            h, c = s[:H][None], (s[H:][None] if cell == "lstm" else None)
            r = run_cell(spec, x[t - 1:t], h, c)
            return np.concatenate([r.h[1, 0]] + ([r.c[1, 0]] if cell == "lstm" else []))
        return f

    v = np.zeros(D)
    v[:H] = u[0]
    fd = {T: np.linalg.norm(v[:H])}
    for t in range(T, 1, -1):
        s_prev = np.concatenate([tr.h[t - 1, 0]] + ([tr.c[t - 1, 0]] if cell == "lstm" else []))
        J = fd_jacobian(step(t), s_prev)
        assert np.allclose(J, step_jacobian(tr, t - 1, 0), atol=1e-7)  # the step that makes tr.h[t]
        v = J.T @ v
        fd[t - 1] = np.linalg.norm(v[:H])
    for t in range(1, T + 1):
        assert got[t - 1] == pytest.approx(fd[t], rel=1e-6)
    lh, _ = logspace_backprop(layer, x, u)
    np.testing.assert_allclose(10 ** lh[1:], got, rtol=1e-10)


# --------------------------------------------------------------------------- the three states


def test_no_path_nodes_and_leaves():
    rng = np.random.default_rng(0)
    x = tb.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    w_used = tb.tensor(rng.standard_normal((3, 1)), requires_grad=True)
    w_unused = tb.tensor(rng.standard_normal((3, 1)), requires_grad=True)
    y_used = x @ w_used
    y_unused = (x @ w_unused).tanh()
    loss = y_used.sum()
    w = walk(loss, roots=[y_unused], params={"x": x, "w_used": w_used, "w_unused": w_unused})
    by_name = {r.name: r for r in w.records if r.kind == "leaf"}
    assert by_name["w_unused"].status == "no-path"
    assert by_name["w_used"].status == "ok" and by_name["x"].status == "ok"
    assert {r.op for r in w.nodes(status="no-path", kind="node")} == {"matmul", "tanh"}
    assert w_unused.grad is None
    assert w.summary()["no-path"] == 3


def test_exact_zero_is_not_underflow():
    x = tb.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    u = x * 2.0
    v = u * np.zeros(3)  # multiplication by an exact zero
    loss = v.sum()
    w = walk(loss, params={"x": x})
    u_rec = w.by_id(u.node.id)
    assert u_rec.status == "zero" and u_rec.flushed == 0 and u_rec.norm == 0.0
    assert [r for r in w.records if r.name == "x"][0].status == "zero"


def test_relu_off_is_zero():
    x = tb.tensor(np.array([[-1.0, -3.0]]), requires_grad=True)
    a = x * 1.5
    loss = a.relu().sum()
    w = walk(loss)
    assert w.by_id(a.node.id).status == "zero"


@pytest.mark.parametrize("dtype, small", [(np.float64, 1e-200), (np.float32, 1e-30)])
def test_flushed_underflow_is_detected(dtype, small):
    x = tb.tensor(np.ones(4, dtype=dtype), requires_grad=True)
    u = x * np.asarray(2.0, dtype=dtype)
    v = u * np.asarray(small, dtype=dtype)
    z = v * np.asarray(small, dtype=dtype)  # d loss / d u = small**2: below the smallest subnormal
    loss = z.sum()
    w = walk(loss, params={"x": x})
    assert w.by_id(z.node.id).status == "ok"
    assert w.by_id(v.node.id).status == "ok"  # gradient = small, a normal number
    ur = w.by_id(u.node.id)
    assert ur.status == "underflow" and ur.flushed == 4 and ur.norm == 0.0
    assert "#%d" % z.node.id in ur.note or "#%d" % v.node.id in ur.note
    leaf = [r for r in w.records if r.name == "x"][0]
    assert leaf.status == "underflow"  # zero only because the gradient underflowed upstream
    assert w.summary()["flushed_values"] >= 4


def test_subnormal_gradient_is_underflow_and_counted():
    x = tb.tensor(np.ones(5), requires_grad=True)
    u = x * 3.0
    loss = (u * 1e-160 * 1e-160).sum()  # gradient at u: 1e-320, a float64 subnormal
    w = walk(loss)
    ur = w.by_id(u.node.id)
    assert ur.status == "underflow" and ur.subnormal == 5 and ur.flushed == 0
    assert 0 < ur.max_abs < np.finfo(np.float64).tiny
    assert ur.log10_norm == pytest.approx(math.log10(1e-320 * math.sqrt(5)), abs=1e-2)  # norm of subnormals, no underflow


def test_sequence_mode_step_records_from_grad_trace():
    nn.manual_seed(0)
    rnn = nn.RNN(2, 4, dtype=np.float32)
    x = np.random.default_rng(0).standard_normal((400, 1, 2)).astype(np.float32)
    out = rnn(x)[0]
    loss = out[-1].sum()
    w = walk(loss, modules=[rnn])
    steps = w.nodes(kind="step")
    assert len(steps) == 400 and {r.label for r in steps} == {"rnn.l0"}
    norms = rnn.grad_trace.norms()[0]
    for r in steps:
        assert r.norm == pytest.approx(float(norms[r.step]), rel=1e-5)
    # the tanh RNN's float32 gradient vanishes far below float32's smallest normal number on the way
    # back; the C sequence kernel keeps its true size (the trace comes back in float64)
    assert steps[-1].step == 0 and 0 < norms[0] < np.finfo(np.float32).tiny
    seq = w.nodes(op="rnn_tanh_sequence")
    assert seq and w.records.index(seq[0]) < w.records.index(steps[0])


def test_walk_table_and_json():
    import json

    x = tb.tensor(np.ones((2, 2)), requires_grad=True)
    loss = (x * 2.0).sum()
    w = walk(loss, params={"x": x})
    text = w.table()
    assert "mul" in text and "sum" in text and "x" in text and "ok" in text
    d = json.loads(w.to_json())
    assert d["summary"]["ok"] == 3
    assert [r["op"] for r in d["records"]] == ["sum", "mul", "leaf"]
    assert d["records"][2]["norm"] == pytest.approx(4.0)


def test_walk_rejects_non_tensor():
    with pytest.raises(tb.GraphError):
        walk(np.ones(3))


# --------------------------------------------------------------------------- anomaly mode


def _rnn_with_plant(T, H, plant_step, plant):
    rng = np.random.default_rng(0)
    W = tb.tensor(rng.standard_normal((H, H)) * 0.5, requires_grad=True)
    h = tb.tensor(rng.standard_normal((1, H)))
    for t in range(T):
        with node_scope(label="cell", step=t):
            h = (h @ W).tanh()
            if t == plant_step:
                h = plant(h)
    return (h * h).sum()


def test_anomaly_forward_names_node_and_step():
    def plant(h):
        z = h * 0.0
        return h + z / z  # 0/0: NaN made from finite inputs

    with np.errstate(invalid="ignore"), pytest.raises(AnomalyError) as ei:
        with detect_anomaly():
            _rnn_with_plant(8, 3, 5, plant)
    a = ei.value.anomaly
    assert (a.phase, a.op, a.step, a.label) == ("forward", "div", 5, "cell")
    assert a.input_shapes == [(1, 3), (1, 3)] and a.inputs_finite and a.bad == "nan"
    assert "div" in str(ei.value) and "t=5" in str(ei.value)


def test_anomaly_backward_names_node_and_step():
    def plant(h):
        return h + (h * 0.0) ** 0.5  # forward 0 (finite), backward 0.5 * 0**-0.5 = inf

    loss = _rnn_with_plant(6, 3, 2, plant)
    with np.errstate(all="ignore"):
        with pytest.raises(AnomalyError) as ei:
            with detect_anomaly():
                loss.backward()
    a = ei.value.anomaly
    assert (a.phase, a.op, a.step) == ("backward", "pow", 2)
    assert a.inputs_finite and a.input_shapes[0] == (1, 3)


def test_anomaly_record_mode_keeps_first_and_restores_nodes():
    def plant(h):
        return h + (h * 0.0) ** 0.5

    loss = _rnn_with_plant(6, 3, 4, plant)
    ops_before = {n.id: n.fn for n in tb.autograd.topological_order(loss)}
    with np.errstate(all="ignore"):
        with detect_anomaly(raise_error=False) as log:
            loss.backward(retain_graph=True)
    assert log and log.first.phase == "backward" and log.first.step == 4 and log.first.op == "pow"
    assert len(log) > 1  # the NaN/Inf propagates to earlier steps, recorded after the first
    # every node got its original Function back
    assert {n.id: n.fn for n in tb.autograd.topological_order(loss)} == ops_before


def test_anomaly_nan_in_data_is_reported_at_its_step():
    nn.manual_seed(0)
    rnn = nn.RNN(2, 3, mode="ops")
    x = np.random.default_rng(0).standard_normal((6, 1, 2))
    x[4, 0, 1] = np.nan
    with pytest.raises(AnomalyError) as ei:
        with detect_anomaly():
            rnn(x)
    assert ei.value.anomaly.step == 4 and ei.value.anomaly.phase == "forward"


def test_anomaly_mode_is_silent_on_clean_graphs():
    with detect_anomaly() as log:
        loss = _rnn_with_plant(5, 3, -1, None)
        loss.backward()
    assert not log and log.first is None


# --------------------------------------------------------------------------- Jacobians


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.3, 2.5), act=st.sampled_from(["tanh", "relu"]))
def test_classical_bound_holds(seed, scale, act):
    rng = np.random.default_rng(seed)
    H, I, T = 6, 3, 12
    spec = CellSpec("rnn_" + act, rng.standard_normal((H, I)), rng.standard_normal((H, H)) * scale / math.sqrt(H),
                    rng.standard_normal(H) * 0.1, rng.standard_normal(H) * 0.1)
    rep = jacobian_norms(spec, rng.standard_normal((T, 1, I)))
    ok = np.isfinite(rep.log10_norms)
    assert np.all(rep.log10_norms[ok] <= rep.log10_bound[ok] + 1e-9)
    assert np.all(rep.log10_step_factors[1:][np.isfinite(rep.log10_step_factors[1:])]
                  <= math.log10(rep.bound_factor) + 1e-9)


def test_exact_jacobian_norm_matches_finite_difference_product():
    rng = np.random.default_rng(5)
    H, I, T = 4, 2, 7
    spec = CellSpec("gru", rng.standard_normal((3 * H, I)) * 0.5, rng.standard_normal((3 * H, H)) * 0.7,
                    rng.standard_normal(3 * H) * 0.1, rng.standard_normal(3 * H) * 0.1)
    x = rng.standard_normal((T, 1, I))
    rep = jacobian_norms(spec, x, method="exact")
    tr = run_cell(spec, x)
    P = np.eye(H)
    for t in range(T, 0, -1):
        J = fd_jacobian(lambda h: run_cell(spec, x[t - 1:t], h[None]).h[1, 0], tr.h[t - 1, 0])
        P = P @ J
        assert rep.log10_norms[t - 1] == pytest.approx(math.log10(np.linalg.norm(P, 2)), abs=1e-6)


def test_log_space_stays_finite_where_the_plain_product_underflows():
    """W = 0.5 * Q (Q orthogonal): ||W^k|| = 0.5^k exactly; 0.5^2000 = 1e-602 underflows float64.

    A tanh RNN with zero input, no bias and h0 = 0 stays at h = 0, where tanh' = 1 exactly:
    every step's Jacobian is W itself."""
    rng = np.random.default_rng(0)
    H, T = 5, 2000
    Q = np.linalg.qr(rng.standard_normal((H, H)))[0]
    spec = CellSpec("rnn_tanh", np.zeros((H, 1)), 0.5 * Q, None, None)
    x = np.zeros((T, 1, 1))
    plain = np.eye(H)
    for _ in range(T):
        plain = plain @ spec.weight_hh
    assert np.all(plain == 0.0)  # the plain product has underflowed completely
    rep = jacobian_norms(spec, x, method="exact")
    assert np.all(np.isfinite(rep.log10_norms))
    assert rep.log10_norms[0] == pytest.approx(T * math.log10(0.5), abs=1e-8)
    assert rep.mean_log10_decay == pytest.approx(math.log10(0.5), abs=1e-10)
    assert rep.norms[0] == 0.0  # the same number outside log space is gone
    u = rng.standard_normal((1, H))
    u /= np.linalg.norm(u)
    lh, _ = logspace_backprop(spec, x, u)
    assert lh[0] == pytest.approx(T * math.log10(0.5), abs=1e-8)
    pw = jacobian_norms(spec, x, method="power", probes=2)
    assert pw.log10_norms[0] == pytest.approx(T * math.log10(0.5), abs=1e-8)


def test_power_estimate_is_a_close_lower_bound():
    rng = np.random.default_rng(1)
    H, I, T = 24, 4, 40
    k = 1 / math.sqrt(H)
    spec = CellSpec("lstm", rng.uniform(-k, k, (4 * H, I)), rng.uniform(-k, k, (4 * H, H)),
                    rng.uniform(-k, k, 4 * H), rng.uniform(-k, k, 4 * H))
    x = rng.standard_normal((T, 1, I))
    ex = jacobian_norms(spec, x, method="exact")
    pw = jacobian_norms(spec, x, method="power", probes=4)
    assert np.all(pw.log10_norms <= ex.log10_norms + 1e-9)
    assert np.max(np.abs(pw.log10_norms[:T - 5] - ex.log10_norms[:T - 5])) < 0.3


def test_cell_spec_shape_error():
    with pytest.raises(tb.ShapeError):
        CellSpec("lstm", np.zeros((8, 2)), np.zeros((8, 3))).check()


# --------------------------------------------------------------------------- DOT


def test_dot_colours_states():
    x = tb.tensor(np.ones(3), requires_grad=True)
    u = x * 2.0
    dead = u * np.zeros(3)
    tiny = u * 1e-200 * 1e-200
    side = (x * 3.0).tanh()
    loss = dead.sum() + tiny.sum()
    w = walk(loss, roots=[side], params={"x": x})
    src = to_dot(w, title="test")
    assert src.startswith("digraph") and src.rstrip().endswith("}")
    grey = dotmod.STATUS_STYLE["no-path"]
    magenta = dotmod.STATUS_STYLE["underflow"]
    assert re.search(r'n%d \[label="tanh[^\]]*%s' % (side.node.id, re.escape(grey)), src)
    assert re.search(r'n%d \[label="mul[^\]]*%s' % (u.node.id, re.escape(magenta)), src)
    assert w.by_id(u.node.id).status == "underflow"
    # an edge from u's node to the node that consumes it
    assert "n%d -> " % u.node.id in src
    # statuses shown in the labels
    assert "no-path" in src and "zero" in src


def test_render_dot_without_graphviz(monkeypatch, tmp_path):
    monkeypatch.setattr(dotmod.shutil, "which", lambda name: None)
    assert dotmod.render_dot("digraph { a -> b }", str(tmp_path / "g.svg")) is None
    assert not dotmod.dot_available()


@pytest.mark.skipif(not dotmod.dot_available(), reason="Graphviz not installed")
def test_render_dot_svg(tmp_path):
    x = tb.tensor(np.ones(2), requires_grad=True)
    src = to_dot((x * 2.0).sum())
    p = dotmod.render_dot(src, str(tmp_path / "g.svg"))
    assert open(p).read().lstrip().startswith("<")


# --------------------------------------------------------------------------- numerics and terminal


def test_log10_norm_of_tiny_and_huge_values():
    a = np.full(4, 1e-200)
    assert float(np.sqrt(np.sum(a * a))) == 0.0  # the naive way underflows
    assert numerics.log10_norm(a) == pytest.approx(-200 + math.log10(2.0))
    assert numerics.norm(a) == pytest.approx(2e-200)
    assert numerics.log10_norm(np.full(9, 1e200)) == pytest.approx(200 + math.log10(3.0))
    assert numerics.log10_norm(np.zeros(3)) == -math.inf
    assert numerics.count_subnormal(np.array([1e-310, 0.0, 1.0, -5e-324])) == 2
    assert numerics.count_subnormal(np.array([1e-40, 1e-30], dtype=np.float32)) == 1
    assert numerics.fmt_pow10(-602.0599913) == "8.71e-603"  # 0.5 ** 2000
    assert numerics.fmt_pow10(-2.0) == "1.00e-02" and numerics.fmt_pow10(-math.inf) == "0"


def test_sparkline_and_heatmap():
    s = terminal.sparkline([0, 1, 2, 3, 4, 5, 6, 7], unicode=True)
    assert s == "▁▂▃▄▅▆▇█"
    assert terminal.sparkline([0.0, float("-inf"), 7.0], lo=0, hi=7, unicode=True) == "▁·█"
    assert terminal.sparkline(list(range(100)), width=10, unicode=False)[-1] == "#"
    hm = terminal.heatmap([[0, 1, 2], [2, 1, 0]], labels=["a", "bb"], unicode=False, color=False)
    lines = hm.splitlines()
    assert len(lines) == 2 and lines[0].startswith(" a |") and lines[1].startswith("bb |")
    assert lines[0][-2] == "#" and lines[1][4] == "#"


def test_format_table_aligns():
    t = terminal.format_table(["a", "num"], [["x", "1"], ["yyy", "22"]], align="lr")
    lines = t.splitlines()
    assert lines[0] == "a    num" and lines[2] == "x      1" and lines[3] == "yyy   22"


def test_sequence_node_is_expanded_without_modules():
    nn.manual_seed(1)
    gru = nn.GRU(2, 3, num_layers=2)
    x = np.random.default_rng(1).standard_normal((7, 2, 2))
    out = gru(x)[0]
    loss = (out[-1] ** 2).sum()
    w = walk(loss)
    steps = w.nodes(kind="step")
    assert len(steps) == 2 * 7 and {r.label for r in steps} == {"gru.l0", "gru.l1"}
    ref = gru.grad_trace.norms()  # (layers, T), filled by the same backward
    for r in steps:
        layer = int(r.label[-1])
        assert r.norm == pytest.approx(float(ref[layer, r.step]), rel=1e-12)
    # each layer's steps follow its own sequence node, last step first
    seq = w.nodes(op="gru_sequence")
    assert len(seq) == 2
    k = w.records.index(seq[0])
    assert [r.step for r in w.records[k + 1:k + 8]] == list(range(6, -1, -1))


@pytest.mark.parametrize("mode", ["ops", "cell", "sequence"])
def test_walk_leaves_the_gradient_trace_as_a_plain_backward_does(mode):
    """The walk's underflow replay must not run a fused node's backward twice: in mode="cell"
    that once added a rescaled second copy to every step's trace slot."""
    nn.manual_seed(0)
    layer = nn.LSTM(2, 3, mode=mode)
    x = np.random.default_rng(0).standard_normal((4, 2, 2))
    out, _ = layer(x)
    (out ** 2).sum().backward()
    ref = layer.grad_trace
    out, _ = layer(x)
    w = walk((out ** 2).sum())
    got = layer.grad_trace
    np.testing.assert_array_equal(got.h, ref.h)
    np.testing.assert_array_equal(got.c, ref.c)
    # only the whole-sequence node hides its steps, and its 4 steps of h and c are listed
    assert len(w.nodes(kind="step")) == (8 if mode == "sequence" else 0)


def test_walk_expands_a_checkpointed_node_per_layer():
    nn.manual_seed(1)
    gru = nn.GRU(2, 3, num_layers=2, checkpoint=2)
    out, _ = gru(np.random.default_rng(1).standard_normal((5, 1, 2)))
    w = walk(out.sum())
    steps = w.nodes(kind="step")
    assert sorted({r.label for r in steps}) == ["gru.l0", "gru.l1"]
    norms = gru.grad_trace.norms()
    for r in steps:
        l = int(r.label[-1])
        assert r.norm == pytest.approx(norms[l, r.step], rel=1e-12)

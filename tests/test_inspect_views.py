"""Views inside the unrolled graph: named gates (roles), parameter names, explained zeros,
gradient paths of an LSTM, Jacobian spectra, plots and notebook display.

Every value is checked against something computed here independently: the textbook cell
formulas in NumPy, torch's autograd, finite differences, NumPy's SVD."""
import math
import re

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn
from tinybptt.autograd import forward_hook
from tinybptt.inspect import detect_anomaly, to_dot, walk


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def textbook(cell, layer, x):
    """Per-step values of every role, from PyTorch's formulas written out here (B = 1)."""
    W, U = layer.weight_ih_l0.data, layer.weight_hh_l0.data
    b = layer.bias_ih_l0.data + layer.bias_hh_l0.data
    H = U.shape[1]
    h, c = np.zeros(H), np.zeros(H)
    steps = []
    for t in range(x.shape[0]):
        if cell == "lstm":
            a = W @ x[t, 0] + U @ h + b
            i, f, g, o = sigmoid(a[:H]), sigmoid(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), sigmoid(a[3 * H:])
            c = f * c + i * g
            h = o * np.tanh(c)
            steps.append(dict(i=i, f=f, g=g, o=o, c=c, h=h))
        elif cell == "gru":
            gi = W @ x[t, 0] + layer.bias_ih_l0.data
            gh = U @ h + layer.bias_hh_l0.data
            r = sigmoid(gi[:H] + gh[:H])
            z = sigmoid(gi[H:2 * H] + gh[H:2 * H])
            n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
            h = (1 - z) * n + z * h
            steps.append(dict(r=r, z=z, n=n, h=h))
        else:
            h = np.tanh(W @ x[t, 0] + U @ h + b)
            steps.append(dict(h=h))
    return steps


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_every_ops_mode_node_carries_its_role(cell):
    """The last node of each role in a step computes exactly that gate or state."""
    nn.manual_seed(4)
    layer = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](2, 3, mode="ops")
    x = np.random.default_rng(4).standard_normal((3, 1, 2))
    last = {}  # (step, role) -> output of the last node made with that role in that step

    def hook(ctx, inputs, outputs):
        if ctx.step is not None:
            last[(ctx.step, ctx.role)] = outputs[0]

    with forward_hook(hook):
        out, _ = layer(tb.tensor(x))
    want = textbook(cell, layer, x)
    roles = {"lstm": "xaifgoch", "gru": "xarznh", "rnn": "xah"}[cell]
    for t, vals in enumerate(want):
        assert {r for (s, r) in last if s == t} == set(roles)  # every node of step t has a role
        for name, v in vals.items():
            np.testing.assert_allclose(last[(t, name)][0], v, rtol=0, atol=1e-14)


def test_walk_names_gates_parameters_and_explains_the_first_forget_gate():
    nn.manual_seed(0)
    lstm = nn.LSTM(2, 3, mode="ops")
    out, _ = lstm(np.random.default_rng(0).standard_normal((3, 1, 2)))
    w = walk(out[-1].sum(), model=lstm)
    f0 = w.nodes(op="sigmoid", step=0, role="f")
    assert len(f0) == 1 and f0[0].status == "zero" and f0[0].norm == 0.0
    assert "c_{-1} = 0" in f0[0].note and "initial cell state" in f0[0].note
    for t in (1, 2):  # later forget gates multiply a non-zero c_{t-1}
        assert w.nodes(op="sigmoid", step=t, role="f")[0].status == "ok"
    assert [r.status for r in w.nodes(status="zero")] == ["zero"]  # the only zero in the graph
    leaves = {r.name for r in w.nodes(kind="leaf")}
    assert leaves == {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0"}
    table = w.table(max_rows=None)
    assert "lstm.weight_hh_l0" in table and " f " in table
    d = w.to_dict()
    assert d["records"][0]["role"] is None and {r["role"] for r in d["records"]} >= set("aifgoch")
    html = w._repr_html_()
    assert html.startswith("<table>") and "lstm.weight_hh_l0" in html and "c_{-1} = 0" in html


def test_walk_explains_a_product_with_an_exact_zero():
    x = tb.tensor(np.ones(3), requires_grad=True)
    u = x * 2.0
    loss = (u * np.zeros(3)).sum()
    w = walk(loss, params={"x": x})
    rec = w.nodes(op="mul")[-1]  # u = x * 2: its consumer multiplies it by zeros
    assert rec.status == "zero" and "multiplies it by a constant, which is all zeros" in rec.note


def test_anomaly_and_dot_show_roles():
    nn.manual_seed(0)
    lstm = nn.LSTM(1, 2, mode="ops")
    lstm.weight_ih_l0.data[:] = 10.0
    x = np.ones((4, 1, 1))
    x[2, 0, 0] = 1e308  # finite, but 10 * 1e308 overflows in the gate pre-activation
    with pytest.raises(tb.inspect.AnomalyError) as info:
        with detect_anomaly():
            lstm(x)
    a = info.value.anomaly
    assert (a.op, a.step, a.role, a.inputs_finite) == ("linear", 2, "a", True)
    assert "linear [lstm.l0, t=2, a]" in str(info.value)
    lstm2 = nn.LSTM(1, 2, mode="ops")
    out, _ = lstm2(np.ones((2, 1, 1)))
    src = to_dot(walk(out[-1].sum(), model=lstm2))
    assert "sigmoid\\nlstm.l0, t=0, f" in src and "lstm.weight_hh_l0" in src


# --------------------------------------------------------------------------- LSTM gradient paths


def torch_lstm_paths(lstm, x, h0, c0, R, S, layer):
    """dL/dc_t split by torch's autograd: each c_t enters the next step and tanh(c_t) as two
    separate clones, so each clone's .grad is the gradient arriving along that use alone."""
    torch = pytest.importorskip("torch")
    L, T, H = lstm.num_layers, x.shape[0], lstm.hidden_size
    inp = torch.tensor(x)
    c_ns, keep = [], {}
    for l in range(L):
        W, U, b1, b2 = (torch.tensor(p.data, requires_grad=True) for p in lstm.layer_weights(l))
        h, c = torch.tensor(h0[l]), torch.tensor(c0[l])
        outs = []
        for t in range(T):
            i, f, g, o = (inp[t] @ W.T + h @ U.T + b1 + b2).chunk(4, dim=1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            c_cell, c_h = c_new.clone(), c_new.clone()
            c_cell.retain_grad()
            c_h.retain_grad()
            h = torch.sigmoid(o) * torch.tanh(c_h)
            c = c_cell
            outs.append(h)
            if l == layer:
                keep[t] = (c_cell, c_h, torch.sigmoid(f).detach().numpy())
        inp = torch.stack(outs)
        c_ns.append(c)
    loss = (inp * torch.tensor(R)).sum() + (torch.stack(c_ns) * torch.tensor(S)).sum()
    loss.backward()
    cell = np.stack([keep[t][0].grad.numpy() for t in range(T)])
    via_h = np.stack([keep[t][1].grad.numpy() for t in range(T)])
    f = np.stack([keep[t][2] for t in range(T)])
    return cell, via_h, f


@pytest.mark.parametrize("layer", [0, 1])
def test_lstm_paths_match_torch_and_sum_to_the_total(layer):
    rng = np.random.default_rng(7)
    T, B, I, H, L = 6, 2, 3, 4, 2
    nn.manual_seed(7)
    lstm = nn.LSTM(I, H, num_layers=L)
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((L, B, H)), rng.standard_normal((L, B, H))
    R, S = rng.standard_normal((T, B, H)), rng.standard_normal((L, B, H))
    out, (h_n, c_n) = lstm(x, (h0, c0))
    ((out * R).sum() + (c_n * S).sum()).backward()
    p = tb.inspect.lstm_gradient_paths(lstm, x, (h0, c0), layer=layer)
    cell, via_h, f = torch_lstm_paths(lstm, x, h0, c0, R, S, layer)
    np.testing.assert_allclose(p.cell_path, cell, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(p.through_h, via_h, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(p.cell_path + p.through_h, lstm.grad_trace.c[layer], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(p.total, lstm.grad_trace.c[layer], rtol=0, atol=0)
    np.testing.assert_allclose(p.forget, f, rtol=1e-12)
    for t in range(T):  # prod_{k=t+1}^{T-1} f_k, by hand
        np.testing.assert_allclose(p.forget_product[t], np.prod(f[t + 1:], axis=0), rtol=1e-12)
    assert np.all(p.log10_forget_product[-1] == 0)
    d = p.to_dict()
    assert d["steps"] == list(range(T)) and len(d["total"]) == T


def test_lstm_forget_product_stays_finite_in_log_space():
    """f = sigmoid(-1) at every step: prod f over 2000 steps is 10**-1150, far below float64."""
    lstm = nn.LSTM(1, 1, bias=True)
    lstm.weight_ih_l0.data[:] = 0.0
    lstm.weight_hh_l0.data[:] = 0.0
    lstm.bias_hh_l0.data[:] = 0.0
    lstm.bias_ih_l0.data[:] = [0.0, -1.0, 0.5, 0.0]  # i, f, g, o pre-activations
    x = np.zeros((2000, 1, 1))
    out, _ = lstm(x)
    out[-1].sum().backward()
    p = tb.inspect.lstm_gradient_paths(lstm, x)
    want = 1999 * math.log10(1 / (1 + math.e))
    assert p.log10_forget_product[0, 0, 0] == pytest.approx(want, rel=1e-12)
    assert p.forget_product[0, 0, 0] == 0.0  # the same number outside log space


def test_lstm_paths_checks_its_arguments():
    gru = nn.GRU(2, 3)
    with pytest.raises(tb.GraphError):
        tb.inspect.lstm_gradient_paths(gru, np.zeros((3, 1, 2)))
    lstm = nn.LSTM(2, 3)
    out, _ = lstm(np.zeros((3, 1, 2)))
    out.sum().backward()
    with pytest.raises(tb.ShapeError):
        tb.inspect.lstm_gradient_paths(lstm, np.zeros((4, 1, 2)))


# --------------------------------------------------------------------------- Jacobian spectra


def fd_state_jacobian(spec, x_t, s, eps=1e-6):
    """d s_t / d s_{t-1} of one step by central differences of the forward pass alone."""
    H = spec.hidden_size

    def step(v):
        r = tb.inspect.run_cell(spec, x_t[None, None], v[None, :H], v[None, H:] if spec.kind == "lstm" else None)
        return np.concatenate([r.h[1, 0]] + ([r.c[1, 0]] if spec.kind == "lstm" else []))

    cols = []
    for k in range(len(s)):
        e = np.zeros(len(s))
        e[k] = eps
        cols.append((step(s + e) - step(s - e)) / (2 * eps))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_spectra_match_numpy_svd_of_explicit_jacobians(kind):
    rng = np.random.default_rng(11)
    T, I, H = 6, 2, 3
    G = {"rnn_tanh": 1, "lstm": 4, "gru": 3}[kind]
    spec = tb.inspect.CellSpec(kind, rng.standard_normal((G * H, I)), rng.standard_normal((G * H, H)),
                               0.1 * rng.standard_normal(G * H), 0.1 * rng.standard_normal(G * H))
    x = rng.standard_normal((T, 1, I))
    sp = tb.inspect.jacobian_spectra(spec, x)
    tr = tb.inspect.run_cell(spec, x)
    states = [np.concatenate([tr.h[k, 0]] + ([tr.c[k, 0]] if kind == "lstm" else [])) for k in range(T + 1)]
    J = [fd_state_jacobian(spec, x[t, 0], states[t]) for t in range(T)]  # J[t] = ds_t/ds_{t-1}
    for t in range(T):
        want = np.log10(np.linalg.svd(J[t][:H, :H], compute_uv=False))
        np.testing.assert_allclose(sp.step[t], want, atol=1e-7)
    P = np.eye(len(states[0]))
    for t in range(T - 1, -2, -1):  # product dh_{T-1}/dh_t, t = T-1 .. -1
        want = np.log10(np.linalg.svd(P[:H, :H], compute_uv=False))
        np.testing.assert_allclose(sp.product[t + 1], want, atol=1e-6)
        if t >= 0:
            P = P @ J[t]
    assert list(sp.product_steps) == list(range(-1, T)) and list(sp.steps) == list(range(T))
    rep = tb.inspect.jacobian_norms(spec, x)  # the largest singular value is jacobian_norms' number
    np.testing.assert_allclose(sp.product[:, 0], rep.log10_norms, atol=1e-10)


def test_spectra_of_a_vanilla_rnn_respect_the_classical_bound():
    rng = np.random.default_rng(3)
    H, T = 5, 30
    spec = tb.inspect.CellSpec("rnn_tanh", rng.standard_normal((H, 2)), 1.3 * rng.standard_normal((H, H)) / 2.2)
    sp = tb.inspect.jacobian_spectra(spec, rng.standard_normal((T, 1, 2)))
    assert sp.log10_bound_step == pytest.approx(math.log10(np.linalg.norm(spec.weight_hh, 2)))
    assert np.all(sp.step[:, 0] <= sp.log10_bound_step + 1e-12)
    assert np.all(sp.product[:, 0] <= sp.log10_bound_product + 1e-9)
    assert np.all(np.diff(sp.step, axis=1) <= 1e-12)  # descending


# --------------------------------------------------------------------------- plots and notebook display


def test_plots_and_notebook_pictures():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    nn.manual_seed(0)
    lstm = nn.LSTM(2, 3, num_layers=2)
    x = np.random.default_rng(0).standard_normal((8, 2, 2))
    out, _ = lstm(x)
    out[-1].sum().backward()
    tr = lstm.grad_trace
    fig = tr.plot()
    assert isinstance(fig, Figure) and len(fig.axes[0].lines) == 4  # h and c of two layers
    assert np.allclose(fig.axes[0].lines[0].get_ydata(), np.log10(tr.norms()[0]))
    assert list(fig.axes[0].lines[0].get_xdata()) == list(range(8))
    objs = [tr, tb.inspect.jacobian_norms(lstm, x), tb.inspect.jacobian_spectra(lstm, x),
            tb.inspect.lstm_gradient_paths(lstm, x)]
    import json
    for obj in objs:
        assert obj._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
        json.dumps(obj.to_dict())
    assert tr.to_dict()["h_norms"][1] == pytest.approx(list(tr.norms()[1]))


def test_dot_source_shows_itself_when_graphviz_exists():
    x = tb.tensor(np.ones(2), requires_grad=True)
    src = to_dot(walk((x * 2).sum()))
    assert isinstance(src, str) and src.startswith("digraph")
    svg = src._repr_svg_()
    if tb.inspect.dot_available():
        assert "<svg" in svg
    else:
        assert svg is None


# --------------------------------------------------------------------------- folded graphs of long unrolls


def lstm_walk(T, seed=0):
    nn.manual_seed(seed)
    lstm = nn.LSTM(2, 3, mode="ops")
    out, _ = lstm(np.random.default_rng(seed).standard_normal((T, 1, 2)))
    return walk(out[-1].sum(), model=lstm)


def test_folded_graph_does_not_grow_with_T():
    from tinybptt.inspect.fold import Folded
    small, large = Folded(lstm_walk(4)), Folded(lstm_walk(300))
    assert len(small.nodes) == len(large.nodes) and len(small.edges) == len(large.edges)
    src = tb.inspect.to_dot_folded(lstm_walk(300))
    edges = [line for line in src.splitlines() if re.match(r"\s+\w+ -> \w+", line)]
    assert len(edges) == len(large.edges) and "x 300 steps (t = 0..299)" in src
    assert "t-1 -> t, x 299" in src  # the recurrent back-edges


def test_folded_graph_has_the_statistics_of_the_unrolled_one():
    from tinybptt.inspect.fold import Folded
    T = 40
    w = lstm_walk(T, seed=1)
    folded = Folded(w)
    for op, role in [("sigmoid", "f"), ("sigmoid", "i"), ("tanh", "g"), ("sigmoid", "o"), ("add", "c")]:
        steps = w.nodes(op=op, role=role, label="lstm.l0")
        assert len(steps) == T
        fin = [r.log10_norm for r in steps if math.isfinite(r.log10_norm)]
        node = [n for n in folded.nodes if (n.op, n.role) == (op, role) and n.step is None]
        assert len(node) == 1 and len(folded.members[id(node[0])]) == T
        assert folded.stats(node[0]) == (min(fin), float(np.median(fin)), max(fin))
    f = [n for n in folded.nodes if (n.op, n.role, n.step) == ("sigmoid", "f", None)][0]
    assert f.status == "ok" and folded.exceptions(f) == ["zero at 1 step (t = 0)"]
    # every edge of the unrolled graph is one of the edges drawn
    by_id = {r.id for r in w.records if r.kind != "step"}
    unrolled = sum(len([c for c in dict.fromkeys(r.consumers) if c in by_id]) for r in w.records if r.kind != "step")
    assert sum(len(rs) for *_, rs in folded.edges) == unrolled


def test_unfolding_a_window_draws_those_steps_node_by_node():
    w = lstm_walk(30)
    src = tb.inspect.to_dot_folded(w, unfold=(27, 30))
    for r in w.nodes(kind="node"):
        drawn = "n%d [" % r.id in src
        assert drawn == (r.step is None or 27 <= r.step < 30)
    assert "x 27 steps (t = 0..26)" in src


def test_grid_svg_needs_no_graphviz():
    import xml.dom.minidom
    T = 25
    w = lstm_walk(T)
    svg = tb.inspect.grid_svg(w, title="T=25")
    xml.dom.minidom.parseString(svg)  # well-formed
    cells = [r for r in w.records if r.kind == "node" and r.step is not None]
    assert svg.count("<rect") == len(cells) + 9  # one square per node and step, 9 legend swatches
    assert svg._repr_svg_() == svg
    long = tb.inspect.grid_svg(lstm_walk(1000), width=1000)
    assert "median of 2 steps per column" in long


def test_a_cell_in_ops_mode_has_roles_and_the_explained_zero_too():
    nn.manual_seed(0)
    cell = nn.LSTMCell(2, 3, mode="ops")
    h, c = cell(np.ones((1, 2)))  # zero initial state
    w = walk(h.sum(), model=cell)
    f = w.nodes(op="sigmoid", role="f")
    assert len(f) == 1 and f[0].label == "lstm_cell" and f[0].status == "zero"
    assert "incoming cell state c = 0" in f[0].note
    assert {r.name for r in w.nodes(kind="leaf")} == {"lstm_cell.weight_ih", "lstm_cell.weight_hh", "lstm_cell.bias_ih",
                                                      "lstm_cell.bias_hh"}


def test_walk_explains_a_relu_that_is_off():
    x = tb.tensor(np.array([1.0, 2.0]), requires_grad=True)
    u = x * -1.0  # all negative
    w = walk(u.relu().sum())
    rec = [r for r in w.nodes(op="mul")][0]
    assert rec.status == "zero" and "relu" in rec.note and "is off" in rec.note

"""Views inside the unrolled graph: named gates (roles), parameter names, explained zeros,
gradient paths of an LSTM, Jacobian spectra, plots and notebook display.

Every value is checked against something computed here independently: the textbook cell
formulas in NumPy, torch's autograd, finite differences, NumPy's SVD."""
import math

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

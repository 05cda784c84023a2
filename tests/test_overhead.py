"""The short paths of a layer call and of the backward pass keep their guarantees.

A recurrent layer in mode="sequence" is one fused node; its outputs, the
version counters of views, the backward order and the saved-value guard are
checked here against plain rules (NumPy, mode="cell"), never against the code
under test.
"""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn
from tinybptt.backprop import topological_order
from tinybptt.errors import GraphError

LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def leaf(a, requires_grad=True):
    return tb.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def _x(T=5, B=2, I=3, seed=0):
    return np.random.default_rng(seed).standard_normal((T, B, I))


# --------------------------------------------------------------------------- the fused node's outputs


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_an_api_edit_of_a_fused_layers_output_before_backward_is_caught(backend, kind):
    """The fused node's backward reads its saved outputs, so an edit of ``out`` through the
    API between forward and backward must raise (as it does for tanh, which saves its output)."""
    layer = LAYERS[kind](3, 4)
    out, _ = layer(_x())
    loss = (out * 1.0).sum()
    with tb.no_grad():
        out.add_(1.0)
    with pytest.raises(GraphError, match=r"output 0 .*%s\w*_sequence" % kind):
        loss.backward()


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_one_fused_layers_final_state_is_a_copy_of_the_last_step(backend, kind):
    """h_n (and c_n) hold the last step's state and share no memory with ``out``: editing
    the carried state (a reset between chunks) changes neither ``out`` nor the gradient."""
    layer = LAYERS[kind](3, 4)
    out, state = layer(_x())
    h_n = state[0] if kind == "lstm" else state
    assert h_n.shape == (1, 2, 4)
    np.testing.assert_array_equal(h_n.data[0], out.data[-1])
    assert not np.shares_memory(h_n.data, out.data)
    before = out.data.copy()
    loss = (out * out).sum()
    with tb.no_grad():
        h_n.zero_()  # backward does not read h_n: not an edit of anything it saved
    loss.backward()
    np.testing.assert_array_equal(out.data, before)
    nn.manual_seed(0)
    ref = LAYERS[kind](3, 4, mode="cell")
    ref.load_state_dict(layer.state_dict())
    out_r, _ = ref(_x())
    (out_r * out_r).sum().backward()
    for p, q in zip(layer.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_gradients_through_the_final_state_equal_mode_cell(backend, kind, num_layers):
    """Loss on h_n (and c_n) only: the sequence layer's gradients equal the per-step layer's."""
    grads = []
    for mode in ("sequence", "cell"):
        nn.manual_seed(3)
        layer = LAYERS[kind](3, 4, num_layers=num_layers, mode=mode)
        x = leaf(_x(seed=1))
        _, state = layer(x)
        loss = (state[0] * state[0]).sum() + state[1].sum() if kind == "lstm" else (state * state).sum()
        loss.backward()
        grads.append([x.grad] + [p.grad for p in layer.parameters()])
    for g_seq, g_cell in zip(*grads):
        np.testing.assert_allclose(g_seq, g_cell, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- the backward order


def test_backward_order_puts_every_node_after_its_consumers():
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    c = a * b
    d = c.tanh()
    e = c + d  # c has two consumers, d one
    f = (e * a).sum()
    order = topological_order(f)
    pos = {node: k for k, node in enumerate(order)}
    assert len(order) == 5 and order[0] is f.node
    for node in order:
        for t in node.inputs:
            if t is not None and t.node is not None:
                assert pos[t.node] > pos[node], (t.node, node)
    f.backward()
    # d/da of sum((a*b + tanh(a*b)) * a) = (b + b*(1 - tanh(ab)^2)) * a + (ab + tanh(ab))
    av, bv = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    t = np.tanh(av * bv)
    np.testing.assert_allclose(a.grad, (bv + bv * (1 - t * t)) * av + av * bv + t, rtol=1e-12)


def test_backward_order_of_a_freed_graph_and_of_a_leaf():
    x = leaf([1.0])
    assert topological_order(x) == []
    y = (x * 2.0).sum()
    y.backward()
    assert [n.op for n in topological_order(y)] == ["sum"]  # a freed node keeps no inputs: the walk stops there


# --------------------------------------------------------------------------- the saved-value sample


def test_a_direct_edit_of_a_non_contiguous_saved_view_is_compared_whole():
    """A strided view of a parameter (here every other column) is sampled whole: a
    direct edit of any element of it is caught, also one a 32-value sample would miss."""
    w = leaf(np.full((100, 100), 0.5))
    v = w[:, ::2]  # 5000 values, neither C- nor F-contiguous
    loss = (v * v).sum()
    w.data[0, 2] = 7.0  # v's element 1: not among the first-and-every-156th of 5000
    with pytest.raises(GraphError, match=r"its \.data array was edited directly"):
        loss.backward()


def test_a_contiguous_saved_view_keeps_the_documented_sample():
    w = leaf(np.full((100, 100), 0.5))
    v = w[:50]  # C-contiguous: about 32 values are compared
    loss = (v * v).sum()
    w.data[0, 1] = 7.0  # not sampled (k = 5000 // 32 = 156)
    loss.backward()  # not caught: the documented limit
    loss = (w[:50] * w[:50]).sum()
    w.data[0, 0] = 7.0  # the first value is always sampled
    with pytest.raises(GraphError, match=r"its \.data array was edited directly"):
        loss.backward()


# --------------------------------------------------------------------------- modules


def test_setting_attributes_again_keeps_registration_right():
    m = nn.Module()
    m.scale = 1.0
    m.scale = 2.0  # a plain attribute set again
    assert m.scale == 2.0 and "scale" not in m._parameters
    p = nn.Parameter(np.ones(3))
    m.scale = p  # now a parameter: registered, no longer a plain attribute
    assert m._parameters["scale"] is p and "scale" not in m.__dict__ and m.scale is p
    sub = nn.Linear(2, 2)
    m.other = 0
    m.other = sub
    assert m._modules["other"] is sub and "other" not in m.__dict__
    assert [n for n, _ in m.named_parameters()] == ["scale", "other.weight", "other.bias"]


def test_zero_grad_clears_every_parameter_of_every_submodule():
    outer = nn.Module()
    outer.rnn = nn.RNN(3, 4)
    outer.head = nn.Linear(4, 2)
    outer.shared = outer.head.weight  # one parameter under two names
    out, _ = outer.rnn(_x())
    outer.head(out).sum().backward()
    assert all(p.grad is not None for p in outer.parameters())
    outer.zero_grad()
    assert all(p.grad is None for p in outer.parameters())

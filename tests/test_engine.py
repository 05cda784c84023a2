"""The autograd engine: graph traversal, accumulation, freeing, modes, dtypes, errors.

Expected gradients here are worked out by hand (closed forms), not by the engine.
"""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt.errors import DTypeError, GraphError, ShapeError

# Tests that reach a kernel (tanh, sigmoid, relu, matmul) run on both backends.
on_both_backends = pytest.mark.usefixtures("backend")


def leaf(a, dtype=None):
    return tb.tensor(a, dtype=dtype, requires_grad=True)


# --------------------------------------------------------------------------- traversal


def test_100k_node_chain_backprops_without_recursion():
    n = 100_000
    c = 1.0 - 1e-5
    x = leaf([1.0, -2.0])
    h = x
    for _ in range(n):
        h = h * c
    assert h.node is not None
    h.sum().backward()
    np.testing.assert_allclose(x.grad, [c ** n] * 2, rtol=1e-9)  # ~exp(-1)


@on_both_backends
def test_deep_chain_through_kernel_ops():
    """tanh / matmul nodes (kernel calls) in a 20 000-step chain."""
    n = 20_000
    x = leaf([[0.3, -0.2]])
    W = tb.tensor(np.eye(2) * 0.5)
    h = x
    for _ in range(n // 2):
        h = (h @ W).tanh()
    h.sum().backward()
    assert np.all(np.isfinite(x.grad))
    assert np.all(np.abs(x.grad) < 1e-30)  # (1/2)^10000 with tanh' <= 1: vanished, not NaN


# --------------------------------------------------------------------------- accumulation


def test_gradient_accumulates_over_reuses_of_a_leaf():
    x = leaf([1.0, 2.0, -3.0])
    y = x * x + x * 3.0 - x  # dy/dx = 2x + 2
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 2)


def test_gradient_accumulates_across_two_backward_calls():
    x = leaf([0.5, -1.0])
    (x * x).sum().backward()
    first = x.grad.copy()
    np.testing.assert_allclose(first, 2 * x.data)
    (x * 4.0).sum().backward()  # a second, separate graph
    np.testing.assert_allclose(x.grad, 2 * x.data + 4.0)
    x.zero_grad()
    assert x.grad is None


@on_both_backends
def test_retain_graph_allows_a_second_backward():
    x = leaf([0.1, 0.7])
    loss = x.tanh().sum()
    loss.backward(retain_graph=True)
    once = x.grad.copy()
    np.testing.assert_allclose(once, 1 - np.tanh(x.data) ** 2)
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * once)


@on_both_backends
def test_backward_through_a_freed_graph_names_the_node_and_suggests_detach():
    x = leaf([0.1, 0.7])
    with tb.node_scope(label="rnn.l0", step=3):
        h = x.tanh()
    loss = h.sum()
    loss.backward()
    with pytest.raises(GraphError) as info:
        loss.backward()
    msg = str(info.value)
    assert "sum" in msg  # the first freed node reached
    assert "detach" in msg
    # a new loss on the old hidden state also hits the freed tanh node, named with its scope
    with pytest.raises(GraphError, match=r"tanh \[rnn\.l0, t=3\].*detach"):
        (h * 2.0).sum().backward()
    assert isinstance(info.value, RuntimeError)


def test_node_scope_tags_role_and_describe_shows_it():
    x = leaf([0.1, 0.7])
    a = x * 2.0
    assert a.node.role is None
    with tb.node_scope(label="lstm.l0", step=3):
        with tb.node_scope(role="f"):
            f = a.sigmoid()
            with tb.node_scope(role="i"):  # an inner role replaces the outer one
                i = a.sigmoid()
        g = a.tanh()  # the role ends with its scope; label and step stay
    b = x * 3.0
    assert (f.node.label, f.node.step, f.node.role) == ("lstm.l0", 3, "f")
    assert i.node.role == "i"
    assert (g.node.label, g.node.step, g.node.role) == ("lstm.l0", 3, None)
    assert (b.node.label, b.node.step, b.node.role) == (None, None, None)
    assert f.node.describe() == "sigmoid [lstm.l0, t=3, f] #%d" % f.node.id
    assert g.node.describe() == "tanh [lstm.l0, t=3] #%d" % g.node.id
    with tb.node_scope(role="h"):
        h = x.tanh()
    assert h.node.describe() == "tanh [h] #%d" % h.node.id


def test_node_scope_role_is_restored_after_an_exception():
    with pytest.raises(RuntimeError):
        with tb.node_scope(role="z"):
            raise RuntimeError("boom")
    assert (leaf([1.0]) * 2.0).node.role is None


@on_both_backends
def test_detach_cuts_the_graph():
    x = leaf([0.3])
    h = x.tanh()
    h.sum().backward()
    h2 = h.detach() * 2.0  # carrying a state into the next chunk
    assert not h2.requires_grad
    y = leaf([1.0])
    (h.detach() * y).sum().backward()
    np.testing.assert_allclose(y.grad, np.tanh(0.3))


def test_retain_grad_on_an_intermediate():
    x = leaf([1.0, 2.0])
    h = (x * 3.0).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * h.data)
    np.testing.assert_allclose(x.grad, 18 * x.data)


# --------------------------------------------------------------------------- modes and roots


@on_both_backends
def test_no_grad_builds_no_graph():
    x = leaf([1.0, 2.0])
    with tb.no_grad():
        assert not tb.is_grad_enabled()
        y = (x * 2.0).tanh() @ tb.tensor(np.ones((2, 1)))
    assert tb.is_grad_enabled()
    assert not y.requires_grad and y.node is None and y.is_leaf
    with pytest.raises(GraphError, match="does not require grad"):
        y.sum().backward()
    assert x.grad is None


def test_backward_on_non_scalar_needs_grad():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    y = x * 2.0
    with pytest.raises(ShapeError, match=r"\(2, 2\)"):
        y.backward()
    y.backward(np.ones((2, 2)) * 0.5)
    np.testing.assert_allclose(x.grad, np.ones((2, 2)))
    with pytest.raises(ShapeError, match="grad has shape"):
        (x * 2.0).backward(np.ones(3))


def test_split_with_only_one_output_used():
    x = leaf(np.arange(6.0))
    a, b, c = tb.split(x, 3)
    (b * b).sum().backward()
    np.testing.assert_allclose(x.grad, [0, 0, 4.0, 6.0, 0, 0])


def test_backward_on_a_leaf():
    x = leaf(3.0)
    x.backward()
    assert x.grad == 1.0


# --------------------------------------------------------------------------- dtypes


@on_both_backends
@pytest.mark.parametrize("expr", [
    lambda x: x * 2, lambda x: 2 * x, lambda x: x + 1, lambda x: 1 - x, lambda x: x / 3,
    lambda x: 3 / x, lambda x: x ** 2, lambda x: -x, lambda x: x.tanh(), lambda x: x.sigmoid(),
    lambda x: x.relu(), lambda x: x.exp(), lambda x: x.sum(), lambda x: x.mean(axis=0),
    lambda x: x + np.float64(1.5), lambda x: np.float64(2) * x, lambda x: x @ tb.tensor(np.ones((2, 2), np.float32)),
])
def test_float32_stays_float32_with_python_scalars(expr):
    x = leaf([[0.5, 1.5]], dtype=np.float32)
    y = expr(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


@pytest.mark.parametrize("data", [[1, 2, 3], np.arange(3, dtype=np.int32), np.array([True, False]),
                                  np.arange(3, dtype=np.uint8), np.ones(2, np.float16), 7])
def test_integer_and_other_data_becomes_float64(data):
    t = tb.tensor(data)
    assert t.dtype == np.float64
    np.testing.assert_array_equal(t.data, np.asarray(data, dtype=np.float64))


def test_float32_and_float64_data_keep_their_dtype():
    assert tb.tensor(np.ones(2, np.float32)).dtype == np.float32
    assert tb.tensor(np.ones(2)).dtype == np.float64
    assert tb.tensor([1, 2], dtype=np.float32).dtype == np.float32


# --------------------------------------------------------------------------- errors for bad input


@on_both_backends
def test_matmul_inner_dimension_mismatch():
    a, b = leaf(np.ones((2, 3))), leaf(np.ones((4, 5)))
    with pytest.raises(ShapeError) as info:
        a @ b
    msg = str(info.value)
    assert "matmul" in msg and "(2, 3)" in msg and "(4, 5)" in msg
    assert isinstance(info.value, ValueError)


def test_broadcast_failure_names_op_and_shapes():
    a, b = leaf(np.ones((2, 3))), leaf(np.ones(4))
    for op, name in [(lambda: a + b, "add"), (lambda: a - b, "sub"), (lambda: a * b, "mul"),
                     (lambda: a / b, "div")]:
        with pytest.raises(ShapeError) as info:
            op()
        msg = str(info.value)
        assert name in msg and "(2, 3)" in msg and "(4,)" in msg, msg


def test_bad_reshape():
    x = leaf(np.ones((2, 3)))
    with pytest.raises(ShapeError, match=r"reshape.*\(2, 3\).*\(4, 2\)"):
        x.reshape(4, 2)


@pytest.mark.parametrize("call, op", [
    (lambda x: x.sum(axis=2), "sum"), (lambda x: x.mean(axis=-3), "mean"), (lambda x: x.sum(axis=(0, -2)), "sum"),
    (lambda x: x.transpose(0, 2), "transpose"), (lambda x: tb.concat([x, x], axis=5), "concat"),
    (lambda x: tb.stack([x, x], axis=4), "stack"), (lambda x: tb.split(x, 4, axis=1), "split"),
    (lambda x: x[5], "getitem"), (lambda x: tb.tensor(3.0).sum(axis=0), "sum"),
])
def test_bad_axis_or_index(call, op):
    x = leaf(np.ones((2, 3)))
    with pytest.raises(ShapeError, match=op) as info:
        call(x)
    assert isinstance(info.value, ValueError)


@on_both_backends
def test_dtype_errors_are_type_errors():
    with pytest.raises(DTypeError) as info:
        tb.tensor(["a", "b"])
    assert isinstance(info.value, TypeError)
    with pytest.raises(DTypeError, match="int64"):
        tb.tensor([1.0], dtype=np.int64)
    a = leaf(np.ones((2, 3), np.float32))
    b = leaf(np.ones((3, 2)))
    with pytest.raises(DTypeError, match=r"matmul.*float32.*float64|matmul.*float64.*float32"):
        a @ b


def test_engine_rejects_a_backward_with_wrong_shape():
    class Bad(tb.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g[:1]

    x = leaf([1.0, 2.0])
    with pytest.raises(ShapeError, match=r"bad.*\(1,\).*\(2,\)"):
        Bad.apply(x).sum().backward()

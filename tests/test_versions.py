"""In-place edits between a forward pass and its backward are caught.

Every tensor's data carries a version, bumped by the in-place API (``add_``,
``mul_``, ``zero_``, ``copy_``, ``t[idx] = v``, ...).  A node remembers the
versions of what it saved; backward raises GraphError naming the tensor, the
node and the fix when one changed.  Direct edits of a parameter's NumPy array
(``w.data *= 0.5``), which no counter can see, are caught by a sample of the
saved values.  Where PyTorch has the same program (its in-place ops under
``no_grad``), it must raise exactly when we do.
"""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn
from tinybptt.errors import GraphError

VERSION_MSG = r"was modified in place after the forward pass saved it.*Edit it only after backward"


def leaf(a, requires_grad=True):
    return tb.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


# --------------------------------------------------------------------------- the counter


def test_in_place_methods_edit_the_array_and_count():
    x = leaf([1.0, 2.0, 3.0], requires_grad=False)
    data = x.data
    assert x.version == 0
    x.add_(1.0).mul_(2.0)
    x.sub_(np.array([1.0, 1.0, 1.0]), alpha=2.0)
    x.div_(2.0)
    np.testing.assert_array_equal(x.data, [1.0, 2.0, 3.0])  # ((x + 1) * 2 - 2) / 2
    x[0] = 9.0
    x.fill_(4.0)
    x.copy_(np.array([5.0, 6.0, 7.0]))
    assert x.data is data and x.version == 7 and x._version == 7
    x.zero_()
    assert x.version == 8 and not x.data.any()
    x.data = np.ones(3)  # a new array: not an edit of the old one
    assert x.version == 8


def test_in_place_on_a_tensor_that_requires_grad_needs_no_grad():
    w = leaf([1.0, 2.0])
    with pytest.raises(GraphError, match=r"mul_.*requires grad.*no_grad"):
        w.mul_(2.0)
    with pytest.raises(GraphError, match=r"setitem.*no_grad"):
        w[0] = 1.0
    with tb.no_grad():
        w.mul_(2.0)
    np.testing.assert_array_equal(w.data, [2.0, 4.0])


def test_in_place_bad_values_are_clear_errors():
    x = leaf([1.0, 2.0], requires_grad=False)
    with pytest.raises(tb.DTypeError, match=r"add_.*complex128"):
        x.add_(1j)
    with pytest.raises(tb.ShapeError, match=r"copy_.*\(2,\)"):
        x.copy_(np.ones(3))
    with pytest.raises(tb.ShapeError, match=r"setitem.*\(2,\)"):
        x[5] = 1.0


def test_detach_and_views_share_the_version():
    x = leaf([0.1, 0.2, 0.3])
    y = x.tanh()
    h = y.detach()
    h.add_(1.0)  # edits y's data, which tanh saved for backward
    assert y.version == 1
    with pytest.raises(GraphError, match=r"output 0.*tanh"):
        y.sum().backward()
    w = leaf(np.ones((2, 3)))
    assert w.T.version == 0
    with tb.no_grad():
        w.mul_(2.0)
    # a view made after the edit starts from the shared count
    assert w.reshape(3, 2).version == w.version == 1


# --------------------------------------------------------------------------- caught (and not) against torch


def _programs():
    """(name, build(x, w) -> loss, which leaf is then edited in place), the same program in both libraries.

    (Where torch saves more than the gradient needs -- e.g. a / b keeps a for d/db,
    tinybptt keeps a / b -- it raises where tinybptt rightly does not; such programs
    are left out.)"""
    return [
        ("mul saves the other operand", lambda x, w: (w * x).sum(), "x"),
        ("mul of a constant saves nothing of w", lambda x, w: (w * x).sum(), "w"),
        ("add saves nothing", lambda x, w: (w + x).sum(), "x"),
        ("matmul saves x for dW", lambda x, w: (x[None, :] @ w).sum(), "x"),
        ("matmul of a view of w", lambda x, w: (x[None, :] @ w.T.T).sum(), "w"),
        ("exp saves its output, not w", lambda x, w: (x[None, :] @ w).exp().sum(), "w"),
        ("div saves the divisor", lambda x, w: (w / x[None, :]).sum(), "x"),
    ]


@pytest.mark.parametrize("name, build, target", _programs(), ids=[p[0] for p in _programs()])
def test_raises_exactly_when_torch_raises(name, build, target):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    xv, wv = rng.uniform(0.5, 1.5, 3), rng.uniform(0.5, 1.5, (3, 3))

    def run(lib_leaf, no_grad, x_grad):
        x, w = lib_leaf(xv, x_grad), lib_leaf(wv, True)
        loss = build(x, w)
        with no_grad():
            (x if target == "x" else w).mul_(2.0)
        try:
            loss.backward()
            return False
        except RuntimeError as exc:  # GraphError is a RuntimeError, as torch's is
            return "modified" in str(exc) or "inplace" in str(exc)

    for x_grad in (False, True):
        ours = run(lambda a, g: leaf(a, g), tb.no_grad, x_grad)
        theirs = run(lambda a, g: torch.tensor(a, requires_grad=g), torch.no_grad, x_grad)
        assert ours == theirs, (name, x_grad, ours, theirs)


def test_the_message_names_the_tensor_the_node_and_the_fix():
    x = leaf([1.0, 2.0], requires_grad=False)
    w = leaf([3.0, 4.0])
    loss = (w * x).sum()
    x.add_(1.0)
    with pytest.raises(GraphError, match=VERSION_MSG) as info:
        loss.backward()
    msg = str(info.value)
    assert "input 1 (a leaf tensor, shape (2,), float64)" in msg and "mul #" in msg
    assert "version 0 when saved, 1 now" in msg


# --------------------------------------------------------------------------- direct edits of the array


@pytest.mark.parametrize("edit", [
    lambda w: w.data.__imul__(0.5),
    lambda w: w.data.__setitem__(Ellipsis, 0.0),
    lambda w: w.data.__isub__(0.1 * np.ones_like(w.data)),
    lambda w: w.data.__setitem__((0, 0), 7.0),  # the first element is always sampled
], ids=["*=", "[...]=", "-=", "[0,0]="])
def test_direct_edits_of_a_saved_leaf_array_are_caught(edit):
    x = leaf(np.ones((4, 3)), requires_grad=False)
    w = leaf(np.full((3, 2), 0.5))
    loss = (x @ w).sum() + (w * w).sum()  # mul saves w
    edit(w)
    with pytest.raises(GraphError, match=r"its \.data array was edited directly"):
        loss.backward()


def test_what_a_direct_edit_is_not_caught_for():
    """Documented limits: a direct edit of an element that no sample covers, of input
    data that does not require grad, and of an intermediate result's array, cannot be
    seen (an API edit of any of them would be)."""
    w = leaf(np.full(100, 0.5))
    loss = (w * w).sum()
    w.data[1] = 7.0  # samples are every 3rd element (100 // 32)
    loss.backward()  # not caught
    x = leaf([1.0, 2.0], requires_grad=False)
    loss = (w[:2] * x).sum()
    x.data[...] = 5.0
    loss.backward()  # not caught
    x = leaf([0.1, 0.2])
    y = x.tanh()
    loss = y.sum()
    y.data[...] = 0.0  # an intermediate's array
    loss.backward()  # not caught


def test_assigning_a_new_array_is_not_an_edit_of_the_saved_one():
    w = leaf([1.0, 2.0])
    x = leaf([3.0, 4.0])
    loss = (w * x).sum()
    w.data = w.data * 10  # what the optimisers do: the node keeps the old array
    loss.backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0])  # the values the forward used


# --------------------------------------------------------------------------- recurrent layers


@pytest.mark.parametrize("mode", ["sequence", "cell"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_editing_a_recurrent_weight_between_forward_and_backward_raises(backend, mode, kind):
    layer = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind](3, 4, mode=mode)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    out, _ = layer(x)
    layer.weight_hh_l0.data *= 0.5  # the common way: edit the array
    with pytest.raises(GraphError, match=r"input 4 .*shape \(\d+, 4\).*%s\w*_(sequence|cell)" % kind):
        out.sum().backward()
    out, _ = layer(x)  # the fix: run the forward again after the edit
    out.sum().backward()
    assert layer.weight_hh_l0.grad is not None


def test_recurrent_layer_raises_as_torch_does_on_an_in_place_weight_update():
    torch = pytest.importorskip("torch")
    ours, theirs = nn.LSTM(3, 4), torch.nn.LSTM(3, 4)
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    out, _ = ours(x)
    t_out, _ = theirs(torch.tensor(x, dtype=torch.float32))
    with tb.no_grad():
        ours.weight_hh_l0.mul_(0.5)
    with torch.no_grad():
        theirs.weight_hh_l0.mul_(0.5)
    with pytest.raises(GraphError):
        out.sum().backward()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        t_out.sum().backward()


def test_an_optimizer_step_after_backward_is_fine():
    lstm = nn.LSTM(2, 3)
    opt = tb.optim.SGD(lstm.parameters(), lr=0.1)
    x = np.ones((4, 1, 2))
    for _ in range(3):
        out, _ = lstm(x)
        opt.zero_grad()
        out.sum().backward()
        opt.step()


# --------------------------------------------------------------------------- tensor copies, from_numpy shares


def test_tensor_copies_like_torch_tensor_and_from_numpy_shares():
    torch = pytest.importorskip("torch")
    a = np.array([1.0, 2.0])
    t, tt = tb.tensor(a), torch.tensor(a)
    s, ts = tb.from_numpy(a), torch.from_numpy(a)
    a[0] = 5.0
    assert t.data[0] == tt[0].item() == 1.0
    assert s.data[0] == ts[0].item() == 5.0
    assert s.data is a
    f32 = np.ones(2, np.float32)
    assert not np.shares_memory(tb.tensor(f32).data, f32) and tb.tensor(f32).dtype == np.float32
    assert not np.shares_memory(tb.tensor(s).data, a)  # from a Tensor: a copy too


def test_editing_the_callers_array_after_the_forward_does_not_change_the_gradient():
    a = np.array([1.0, 2.0])
    x = tb.tensor(a)
    w = leaf([3.0, 4.0])
    loss = (w * x).sum()
    a[...] = 100.0  # the caller reuses its buffer
    loss.backward()
    np.testing.assert_array_equal(w.grad, [1.0, 2.0])


def test_from_numpy_refuses_what_it_cannot_share():
    with pytest.raises(tb.DTypeError, match=r"from_numpy.*int64.*tinybptt.tensor"):
        tb.from_numpy(np.arange(3))
    with pytest.raises(TypeError, match=r"from_numpy.*list"):
        tb.from_numpy([1.0, 2.0])

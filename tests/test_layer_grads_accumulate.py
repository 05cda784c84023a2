"""Gradients that reach one tensor twice: ``x * x``, and the fused nodes' weight gradients.

``x * x`` gives its operand two gradients (g * x from each side) that the engine
adds.  The fused recurrent nodes' weight gradients reach the leaves through the
backward pass's in-place sums (``_InPlaceSums``): each parameter keeps an array
of its own, a second backward adds to it, and a weight used by two nodes gets
both shares.  The expected values come from NumPy formulas written here,
float64 finite differences (``tinybptt.gradcheck``) or PyTorch, never from the
engine itself.
"""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn


def leaf(a, requires_grad=True):
    return tb.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


# --------------------------------------------------------------------------- x * x


def test_square_by_mul_gives_twice_x_times_g():
    """d/dx sum(w * (x * x)) = w x + w x, the two operands' shares added."""
    rng = np.random.default_rng(0)
    xa, wa = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    x, w = leaf(xa), leaf(wa)
    ((x * x) * w).sum().backward()
    np.testing.assert_array_equal(x.grad, wa * xa + wa * xa)
    np.testing.assert_array_equal(w.grad, xa * xa)


def test_square_by_mul_in_float32_keeps_the_dtype_and_a_zero_dim_value():
    x = tb.tensor(np.float32(1.5), requires_grad=True)
    (x * x).backward()
    assert x.grad.dtype == np.float32 and x.grad.shape == () and float(x.grad) == 3.0


def test_two_tensors_sharing_one_array_each_get_their_own_gradient():
    """Only the same Tensor twice is a square: two tensors over one array are two operands."""
    data = np.array([1.0, -2.0, 3.0])
    a = tb.Tensor(data, requires_grad=True)
    b = tb.Tensor(data, requires_grad=True)
    (a * b).sum().backward()
    np.testing.assert_array_equal(a.grad, data)
    np.testing.assert_array_equal(b.grad, data)


def test_square_and_cube_by_mul_pass_gradcheck():
    x = leaf(np.random.default_rng(1).standard_normal((3, 4)))
    tb.gradcheck(lambda t: (t * t).sum(), [x])
    tb.gradcheck(lambda t: ((t * t) * t).sum(), [x])
    tb.gradcheck(lambda t: (t * t + t * 2.0).mean(), [x])


def test_square_reused_after_accumulating_into_a_leaf_twice():
    """x * x and x used again elsewhere: both contributions are summed into x.grad."""
    xa = np.array([0.5, -1.5, 2.0])
    x = leaf(xa)
    ((x * x).sum() + (x * 3.0).sum()).backward()
    np.testing.assert_array_equal(x.grad, (xa + xa) + 3.0)


# --------------------------------------------------------------------------- the fused nodes' gradients at the leaves


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_layer_gradients_are_separate_arrays_and_accumulate(backend, kind):
    """Each parameter's .grad is an array of its own (sharing memory with no other gradient,
    parameter or output), and a second backward without zero_grad adds to it without
    touching the array a caller kept from the first."""
    layer = getattr(nn, kind.upper())(3, 4)
    x = np.random.default_rng(2).standard_normal((5, 2, 3))
    out, _ = layer(x)
    (out * out).sum().backward()
    params = list(layer.parameters())
    firsts = [p.grad for p in params]
    kept = [g.copy() for g in firsts]
    arrays = [p.data for p in params] + [out.data] + firsts
    for i, g in enumerate(firsts):
        assert g.flags.writeable and g.flags.c_contiguous
        for j, other in enumerate(arrays):
            if other is not g:
                assert not np.shares_memory(g, other), (i, j)
    out, _ = layer(x)
    (out * out).sum().backward()
    for p, g, k in zip(params, firsts, kept):
        np.testing.assert_array_equal(g, k)  # the first pass's array is unchanged
        np.testing.assert_allclose(p.grad, 2 * k, rtol=1e-12, atol=0)


def test_a_layer_called_twice_in_one_graph_matches_torch(backend):
    """The same weights used by two fused nodes of one graph: the second node's gradients
    are added onto the first's exactly once."""
    torch = pytest.importorskip("torch")
    theirs = torch.nn.LSTM(3, 4).double()
    ours = nn.LSTM(3, 4)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((6, 2, 3)), rng.standard_normal((4, 2, 3))
    o1, _ = ours(x1)
    o2, _ = ours(x2)
    ((o1 * o1).sum() + (o2 * 2.0).sum()).backward()
    t1, _ = theirs(torch.tensor(x1))
    t2, _ = theirs(torch.tensor(x2))
    ((t1 * t1).sum() + (t2 * 2.0).sum()).backward()
    mine = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(mine[name].grad, p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_stacked_layers_feed_new_gradients_through_an_intermediate_output(backend):
    """Layer 1's output gets the gradient layer 2's kernel made plus another consumer's
    share; the sum must equal torch's."""
    torch = pytest.importorskip("torch")
    th1, th2 = torch.nn.GRU(3, 4).double(), torch.nn.RNN(4, 5).double()
    l1, l2 = nn.GRU(3, 4), nn.RNN(4, 5)
    for ours, theirs in ((l1, th1), (l2, th2)):
        ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    xa = np.random.default_rng(4).standard_normal((5, 2, 3))
    x = leaf(xa)
    o1, _ = l1(x)
    o2, _ = l2(o1)
    ((o2 * o2).sum() + (o1 * o1).sum()).backward()
    tx = torch.tensor(xa, requires_grad=True)
    p1, _ = th1(tx)
    p2, _ = th2(p1)
    ((p2 * p2).sum() + (p1 * p1).sum()).backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for ours, theirs in ((l1, th1), (l2, th2)):
        mine = dict(ours.named_parameters())
        for name, p in theirs.named_parameters():
            np.testing.assert_allclose(mine[name].grad, p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)

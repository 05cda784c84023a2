"""The gradient Sum's backward hands on for a total: every element gets the one upstream value.

It is a zero-stride view of that value (no array of the input's size is allocated), so it
must be read-only: a consumer that wrote into it would change every element at once.  The
expected values here are plain NumPy, never the code under test.
"""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt.autograd import Function


class _Peek(Function):
    """Identity whose backward keeps the gradient it receives, to look at it."""

    seen = []

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        _Peek.seen.append(g)
        return g.copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("keepdims", [False, True])
def test_the_gradient_of_a_total_is_the_upstream_value_everywhere_and_read_only(dtype, keepdims):
    x = tb.tensor(np.arange(6, dtype=dtype).reshape(2, 3), requires_grad=True)
    _Peek.seen.clear()
    s = _Peek.apply(x).sum(keepdims=keepdims)
    upstream = np.full(s.shape, 2.5, dtype)
    s.backward(upstream)
    (g,) = _Peek.seen
    assert g.shape == (2, 3) and g.dtype == dtype
    np.testing.assert_array_equal(g, np.full((2, 3), 2.5, dtype))
    assert not g.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        g[0, 0] = 7.0
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 2.5, dtype))
    assert x.grad.flags.writeable  # a leaf's .grad is its own array


def test_the_spread_value_does_not_follow_later_edits_of_the_upstream_gradient():
    """The view reads a copy of the value: editing the gradient array afterwards changes nothing."""
    x = tb.tensor(np.ones(4), requires_grad=True)
    _Peek.seen.clear()
    s = _Peek.apply(x).sum()
    upstream = np.array(3.0)
    s.backward(upstream)
    upstream[...] = -1.0
    np.testing.assert_array_equal(_Peek.seen[0], [3.0, 3.0, 3.0, 3.0])
    np.testing.assert_array_equal(x.grad, [3.0, 3.0, 3.0, 3.0])


def test_a_total_feeding_a_product_gives_the_product_rule():
    a = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.5]])
    x = tb.tensor(a, requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * a)

"""``x * x``: both operands are one tensor, whose gradient is the sum of the two, 2·g·x.

Two tensors that share one array (``x`` and ``x.detach()``) are not a square: only
one of them receives a gradient.  The expected values are written out by hand
(d(x*x)/dx = 2x).
"""
import numpy as np
import pytest

import tinybptt as tb


def test_square_gradient_is_two_x_times_the_incoming_gradient():
    x = tb.tensor([[1.0, -2.0], [3.0, 0.5]], requires_grad=True)
    w = tb.tensor([[1.0, 10.0], [100.0, 1000.0]])  # an uneven incoming gradient
    ((x * x) * w).sum().backward()
    np.testing.assert_array_equal(x.grad, [[2.0, -40.0], [600.0, 1000.0]])


def test_square_of_an_intermediate_reaches_the_leaf():
    x = tb.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 3.0
    y.retain_grad()
    (y * y).sum().backward()
    np.testing.assert_array_equal(y.grad, [6.0, 12.0, 18.0])  # 2y
    np.testing.assert_array_equal(x.grad, [18.0, 36.0, 54.0])  # 2y * 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_square_keeps_the_dtype_and_works_for_zero_d(dtype):
    x = tb.tensor(np.array(3.0, dtype), requires_grad=True)
    (x * x).backward()
    assert isinstance(x.grad, np.ndarray) and x.grad.dtype == dtype and x.grad.shape == ()
    assert x.grad == 6.0


def test_two_tensors_sharing_one_array_are_not_a_square():
    x = tb.tensor([1.0, 2.0], requires_grad=True)
    (x * x.detach()).sum().backward()  # d/dx (x * c) = c: the detached copy gets nothing
    np.testing.assert_array_equal(x.grad, [1.0, 2.0])
    x.grad = None
    (x.detach() * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0])


def test_square_does_not_write_into_the_incoming_gradient():
    """The backward doubles its product in place: never in g (a read-only broadcast from
    sum, or an array another node also uses)."""
    x = tb.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    g = np.array([1.0, 1.0])
    y.backward(g)
    np.testing.assert_array_equal(g, [1.0, 1.0])
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])


def test_square_gradcheck_float64():
    x = tb.tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    assert tb.gradcheck(lambda t: (t * t * t).sum(), (x,))
    assert tb.gradcheck(lambda t: (t * t).sum(), (x,))

"""Bad input at the engine's own doors: tensor(), Tensor.item(), backward(grad=...), gradcheck's settings.

Each used to end in an error from deep inside NumPy (or, for a complex or object
gradient, in a silently changed value); now each is an error of the project's
own classes that names the function and what it got.
"""
import re

import numpy as np
import pytest

import tinybptt as tb
from tinybptt.errors import DTypeError, ShapeError


def test_tensor_of_ragged_lists_is_a_shape_error():
    with pytest.raises(ShapeError, match="^tensor: cannot make an array"):
        tb.tensor([[1.0, 2.0], [3.0]])


@pytest.mark.parametrize("shape", [(2,), (0,), (1, 3)])
def test_item_of_a_tensor_without_one_element(shape):
    t = tb.tensor(np.zeros(shape, np.float32))
    with pytest.raises(ShapeError, match="^" + re.escape("item: needs a one-element tensor, got shape %s (float32)"
                                                         % (shape,))):
        t.item()
    assert tb.tensor([[2.5]]).item() == 2.5


@pytest.mark.parametrize("grad,error,words", [
    (np.array([1j, 2.0]), DTypeError, "complex"),
    (np.array([None, 1.0], dtype=object), DTypeError, "dtype object"),
    ("ab", DTypeError, "dtype <U2"),
    ([[1.0, 2.0], [3.0]], ShapeError, "cannot make an array"),
])
def test_backward_refuses_a_grad_that_is_not_real_numbers(grad, error, words):
    x = tb.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    with pytest.raises(error, match="^backward: .*" + words):
        y.backward(grad)
    assert x.grad is None  # nothing was accumulated
    y.backward([1, 1])  # ints and lists are numbers: converted, and the graph is still there
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


@pytest.mark.parametrize("kwargs,error,words", [
    ({"eps": 0}, ValueError, "eps must be a finite number above 0, got 0"),
    ({"eps": -1e-6}, ValueError, "eps must be"),
    ({"eps": float("nan")}, ValueError, "eps must be"),
    ({"atol": "a"}, TypeError, "atol must be a number, got 'a'"),
    ({"rtol": -0.1}, ValueError, "rtol must be a finite number of at least 0"),
    ({"atol": float("inf")}, ValueError, "atol must be"),
])
def test_gradcheck_settings_are_checked(kwargs, error, words):
    x = tb.tensor(np.linspace(-1, 1, 4), requires_grad=True)
    with pytest.raises(error, match="^gradcheck: " + words):
        tb.gradcheck(lambda t: (t * t).sum(), [x], **kwargs)
    assert tb.gradcheck(lambda t: (t * t).sum(), [x], eps=1e-6, atol=0, rtol=1e-3)

"""Non-Tensor operands at the edges: the function forms of the ops (``ops.tanh(array)``,
``ops.matmul(list, list)``), the losses' targets and ``where``/``masked_fill`` take numbers,
lists and arrays as ``tinybptt.tensor`` does (bool/int/float16 -> float64), and refuse what a
float array cannot hold (complex, strings, objects, ragged lists) with an error naming the op
and the dtype -- never a complex or float16 Tensor, a silently dropped imaginary part, or a
NumPy error from deep inside.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinybptt as tb
from tinybptt import ops
from tinybptt.errors import DTypeError, ShapeError
from tinybptt.nn import functional as F
from tinybptt.ops.masking import masked_fill, where

EDGES = settings(derandomize=True, database=None, deadline=None, max_examples=40)

# the unary function forms with their NumPy meaning (the reference)
UNARY = {
    "tanh": np.tanh,
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "relu": lambda a: np.maximum(a, 0.0),
    "exp": np.exp,
    "log": np.log,  # called on positive values only (_values)
}
ACCEPTED = [np.bool_, np.int8, np.int64, np.uint16, np.float16, np.float32, np.float64]


def _values(name, values):
    """The test values for op ``name``: |v| + 1 for log (which needs positive inputs)."""
    return [abs(v) + 1 for v in values] if name == "log" else values


@EDGES
@given(name=st.sampled_from(sorted(UNARY)), dtype=st.sampled_from(ACCEPTED),
       values=st.lists(st.integers(-3, 3), min_size=0, max_size=5))
def test_unary_function_forms_take_numeric_arrays_as_tensor_does(name, dtype, values):
    """ops.<f>(array of any real dtype) == NumPy's f on the float64 array (float32 stays float32)."""
    x = np.array(_values(name, values)).astype(dtype)
    y = getattr(ops, name)(x)
    want_dtype = np.float32 if dtype is np.float32 else np.float64
    assert isinstance(y, tb.Tensor) and y.dtype == want_dtype
    np.testing.assert_allclose(y.data, UNARY[name](x.astype(want_dtype)), rtol=1e-6)


@EDGES
@given(name=st.sampled_from(sorted(UNARY)), values=st.lists(st.floats(-3, 3), min_size=1, max_size=4))
def test_unary_function_forms_take_lists(name, values):
    values = _values(name, values)
    y = getattr(ops, name)(values)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.data, UNARY[name](np.array(values)), rtol=1e-12)


BAD = [
    ("complex", lambda: np.array([1.0, 2j]), "complex128"),
    ("complex scalar", lambda: 1j, "complex128"),
    ("object", lambda: np.array([1.0, None], dtype=object), "object"),
    ("string", lambda: "abc", "<U3"),
]


@pytest.mark.parametrize("name", sorted(UNARY) + ["matmul", "linear", "concat", "stack", "split"])
@pytest.mark.parametrize("what,make,dtype", BAD, ids=[b[0] for b in BAD])
def test_function_forms_refuse_non_real_operands_naming_op_and_dtype(name, what, make, dtype):
    """Before: complex data gave a complex128 Tensor (exp, log) and strings a NumPy TypeError."""
    bad = make()
    good = tb.tensor(np.ones((2, 2)))
    calls = {"matmul": lambda: ops.matmul(good, bad), "linear": lambda: ops.linear(good, bad),
             "concat": lambda: ops.concat([good, bad]), "stack": lambda: ops.stack([good, bad]),
             "split": lambda: ops.split(bad, 1)}
    with pytest.raises(DTypeError) as err:
        calls.get(name, lambda: getattr(ops, name)(bad))()
    assert err.value.args[0].startswith(name + ":") and dtype in str(err.value)


def test_matmul_and_linear_function_forms_take_lists():
    """Before: ops.matmul([[1., 2.]], [[1.], [2.]]) raised AttributeError ('list' has no 'dtype')."""
    a, b = [[1.0, 2.0], [3.0, 4.0]], [[1.0], [2.0]]
    np.testing.assert_array_equal(ops.matmul(a, b).data, np.array(a) @ np.array(b))
    np.testing.assert_array_equal(ops.linear(a, b, [0.5]).data, np.array(a) @ np.array(b) + 0.5)
    x = tb.tensor(np.array(a), requires_grad=True)
    (ops.matmul(x, np.array([[1, 0], [0, 1]], dtype=np.int32)) * 1.0).sum().backward()  # int weights: float64
    np.testing.assert_array_equal(x.grad, np.ones((2, 2)))


def test_ragged_operand_is_a_shape_error_naming_the_op():
    x = tb.tensor(np.ones(2))
    for call, op in ((lambda: ops.tanh([[1.0, 2.0], [3.0]]), "tanh"), (lambda: x + [[1.0, 2.0], [3.0]], "add")):
        with pytest.raises(ShapeError, match="^%s: cannot make an array" % op):
            call()


@pytest.mark.parametrize("loss", ["mse_loss", "linear"])
def test_losses_refuse_complex_targets_instead_of_dropping_the_imaginary_part(loss):
    """Before: mse_loss(x, complex target) cast the target to float64 with a warning and returned
    the loss of its real part; an object array or a string reached NumPy's float()."""
    x = tb.tensor(np.zeros((2, 3)), requires_grad=True)
    call = {"mse_loss": lambda t: F.mse_loss(x, t), "linear": lambda t: F.linear(x, t)}[loss]
    with pytest.raises(DTypeError, match="^%s: a complex operand .*complex128" % loss):
        call(np.ones((2, 3)) * (1 + 1j))
    with pytest.raises(DTypeError, match="^%s: .*object" % loss):
        call(np.ones((2, 3), dtype=object))
    # the same call with a real operand works and is right
    if loss == "mse_loss":
        assert F.mse_loss(x, [[1, 1, 1], [1, 1, 1]]).item() == 1.0
    else:
        np.testing.assert_array_equal(F.linear(x, np.ones((4, 3))).data, np.zeros((2, 4)))


def test_where_and_masked_fill_refuse_complex_operands():
    """Before: where(cond, complex array, x) silently used the real part."""
    x = tb.tensor(np.ones(3))
    cond = np.array([True, False, True])
    with pytest.raises(DTypeError, match="^where: a complex operand.*complex128"):
        where(cond, np.array([1j, 2j, 3j]), x)
    with pytest.raises(DTypeError, match="^masked_fill: a complex operand.*complex128"):
        masked_fill([1j, 2.0, 3.0], cond, 0.0)
    np.testing.assert_array_equal(where(cond, np.array([5, 6, 7]), x).data, [5.0, 1.0, 7.0])

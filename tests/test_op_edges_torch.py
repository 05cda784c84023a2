"""Edge values and bad arguments of the engine's own ops, against PyTorch.

pow at a base of 0 (and ``x ** 0``), a / b at |b| ~ 1e-200 and 1e200, relu at
NaN: values and gradients equal torch's (float64, both backends).  Bad
arguments (complex operands, zero sections, a float axis) raise a clear error
naming the op; the dtype rules (bool/int/float16 promoted, complex refused,
float32 kept against NumPy scalars and 0-d arrays) are those documented.
"""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt.errors import DTypeError, ShapeError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("backend")


def both(fn, *values):
    """fn applied in tinybptt and in torch to leaves holding ``values``: (ours, theirs), each (out, grads)."""
    ours = [tb.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for v in values]
    theirs = [torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for v in values]
    results = []
    for leaves in (ours, theirs):
        out = fn(*leaves)
        with np.errstate(invalid="ignore"):  # inf + -inf in the sum is NaN, as in torch
            out.sum().backward()
        results.append((np.asarray(out.detach().numpy() if hasattr(out.detach(), "numpy") else out.data),
                        [np.asarray(t.grad if isinstance(t, tb.Tensor) else t.grad.numpy()) for t in leaves]))
    return results


def assert_same(ours, theirs):
    (o_val, o_grads), (t_val, t_grads) = ours, theirs
    np.testing.assert_array_equal(o_val, t_val)
    for og, tg in zip(o_grads, t_grads):
        np.testing.assert_allclose(og, tg, rtol=1e-15, atol=0, equal_nan=True)


BASES = [0.0, -0.0, 2.0, -1.5, 1e-300, np.inf]
EXPONENTS = [0.0, 0.5, 1.0, 2.0, 3.0, -1.0, -0.5]


@pytest.mark.parametrize("a", BASES)
def test_pow_at_the_edges_matches_torch(a):
    b = np.array(EXPONENTS)
    assert_same(*both(lambda x, y: x ** y, np.full_like(b, a), b))


def test_x_to_the_power_0_has_zero_gradient_at_0():
    x = tb.tensor(np.array([0.0, 1.0, -2.0]), requires_grad=True)
    (x ** 0.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.0])
    assert_same(*both(lambda x: x ** 0.0, [0.0, 1.0, -2.0]))


@pytest.mark.parametrize("b", [1e-200, -1e-200, 1e200, -1e200, 0.0, 3.0])
@pytest.mark.parametrize("a", [1e-200, 1e200, 1.0, -2.0, 0.0])
def test_div_gradients_at_extreme_magnitudes_match_torch(a, b):
    ours, theirs = both(lambda x, y: x / y, [a], [b])
    assert_same(ours, theirs)


def test_div_gradient_does_not_overflow_where_the_true_value_is_finite():
    """d(a/b)/db = -a/b^2 = -1e200 at a = b = 1e-200 (b*b alone underflows to 0)."""
    a = tb.tensor([1e-200], requires_grad=True)
    b = tb.tensor([1e-200], requires_grad=True)
    (a / b).sum().backward()
    assert b.grad[0] == -1e200
    a = tb.tensor([1e200], requires_grad=True)
    b = tb.tensor([1e200], requires_grad=True)
    (a / b).sum().backward()
    assert b.grad[0] == -1e-200  # b*b alone overflows to inf


def test_relu_gradient_at_nan_passes_as_in_torch():
    assert_same(*both(lambda x: x.relu(), [np.nan, -1.0, 0.0, 2.0, -np.inf, np.inf]))


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("other", [np.complex128(1 + 2j), np.complex64(1j), 1 + 2j, np.array(1j),
                                   np.array([1j, 2.0])], ids=["np.complex128", "np.complex64", "complex",
                                                              "0-d array", "array"])
@pytest.mark.parametrize("op", ["add", "mul", "rsub", "pow"])
def test_complex_operands_raise_dtype_error_naming_the_op(op, other):
    x = tb.tensor([1.0, 2.0])
    call = {"add": lambda: x + other, "mul": lambda: x * other, "rsub": lambda: other - x,
            "pow": lambda: x ** other}[op]
    with pytest.raises(DTypeError, match=r"%s.*complex" % op.lstrip("r")):
        call()


def test_split_into_zero_sections_is_a_shape_error():
    x = tb.tensor(np.ones((4, 2)))
    for bad in (0, -2):
        with pytest.raises(ShapeError, match=r"split.*sections"):
            tb.split(x, bad)
    with pytest.raises(ShapeError, match=r"split.*3"):
        tb.split(x, 3)


@pytest.mark.parametrize("axis", [1.0, "1", (0, 1.5), [True], True])
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_reductions_reject_a_non_integer_axis_naming_the_op_and_argument(op, axis):
    x = tb.tensor(np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"%s: axis must be an int or a tuple of ints" % op):
        getattr(x, op)(axis=axis)


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.int64, np.uint16, np.float16])
def test_bool_int_float16_data_is_promoted_to_float64(dtype):
    t = tb.tensor(np.ones(3, dtype))
    assert t.dtype == np.float64


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_data_is_refused(dtype):
    with pytest.raises(DTypeError, match="complex"):
        tb.tensor(np.ones(3, dtype))


@pytest.mark.parametrize("scalar", [np.float64(2.0), np.array(2.0), 2.0, 2, np.int64(2), np.float16(2.0)],
                         ids=["np.float64", "0-d float64 array", "float", "int", "np.int64", "np.float16"])
@pytest.mark.parametrize("op", ["mul", "radd", "div", "rpow"])
def test_scalar_operands_keep_a_float32_tensor_float32_as_torch_does(op, scalar):
    x = tb.tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    tx = torch.tensor([1.0, 2.0], dtype=torch.float32)
    ts = torch.tensor(np.asarray(scalar))
    ours = {"mul": lambda: x * scalar, "radd": lambda: scalar + x, "div": lambda: x / scalar,
            "rpow": lambda: scalar ** x}[op]()
    theirs = {"mul": lambda: tx * ts, "radd": lambda: ts + tx, "div": lambda: tx / ts, "rpow": lambda: ts ** tx}[op]()
    assert ours.dtype == np.float32 and theirs.dtype == torch.float32
    ours.sum().backward()
    assert x.grad.dtype == np.float32


def test_arrays_with_dimensions_promote_by_numpys_rule():
    x = tb.tensor(np.array([1.0, 2.0], np.float32))
    assert (x * np.array([2.0])).dtype == np.float64  # torch: float32 * float64 tensor of 1 dim -> float64
    assert (torch.ones(2, dtype=torch.float32) * torch.tensor([2.0], dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_kernel_passes_the_gradient_at_nan(dtype):
    """The kernel itself (each backend) follows torch: zero exactly where y <= 0."""
    from tinybptt import kernels
    y = np.array([np.nan, 0.0, -0.0, 2.0, np.inf, -np.inf], dtype)
    g = np.array([3.0, 4.0, 5.0, 6.0, 7.0, 8.0], dtype)
    gx = kernels.backend.relu_backward(y, g)
    expected = torch.ops.aten.threshold_backward(torch.tensor(g), torch.tensor(y), 0.0).numpy()
    assert gx.dtype == dtype
    np.testing.assert_array_equal(gx, expected)
    np.testing.assert_array_equal(gx, np.array([3.0, 0.0, 0.0, 6.0, 7.0, 0.0], dtype))

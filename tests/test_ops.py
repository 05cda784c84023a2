"""Every built-in op: forward against NumPy, backward against finite differences.

Each test runs on both kernel backends (the ``backend`` fixture), in float64,
on shapes and values chosen by hypothesis.  Forward values are compared with
NumPy computed directly here; gradients with ``tinybptt.gradcheck`` (central
differences), so no expected value comes from the code under test.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinybptt as tb
from tinybptt.testing import assert_gradients_match, broadcastable_shapes, float_arrays, shapes

pytestmark = pytest.mark.usefixtures("backend")


def T(a):
    return tb.tensor(a, requires_grad=True)


def check(fn, inputs, expected, names=None, rtol=1e-12):
    """fn(*inputs) equals ``expected`` (NumPy) and its gradients match finite differences."""
    out = fn(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    exps = expected if isinstance(expected, tuple) else (expected,)
    assert len(outs) == len(exps)
    for o, e in zip(outs, exps):
        e = np.asarray(e)
        assert isinstance(o, tb.Tensor)
        assert o.shape == e.shape, (o.shape, e.shape)
        assert o.dtype == np.float64
        np.testing.assert_allclose(o.data, e, rtol=rtol, atol=1e-13)
    assert_gradients_match(fn, inputs, names=names, allow_kinks=False)


small = shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)


# --------------------------------------------------------------------------- binary elementwise


@st.composite
def broadcast_pair(draw, a_kwargs=None, b_kwargs=None):
    sa, sb = draw(broadcastable_shapes(small, max_side=3))
    if draw(st.booleans()):
        sa, sb = sb, sa
    a = draw(float_arrays(sa, **(a_kwargs or {})))
    b = draw(float_arrays(sb, **(b_kwargs or {})))
    return a, b


BINARY = {
    "add": (lambda a, b: a + b, np.add, {}, {}),
    "sub": (lambda a, b: a - b, np.subtract, {}, {}),
    "mul": (lambda a, b: a * b, np.multiply, {}, {}),
    "div": (lambda a, b: a / b, np.divide, {}, {"avoid_zero": True, "margin": 0.5}),
    "pow": (lambda a, b: a ** b, np.power, {"min_value": 0.5, "max_value": 2.0}, {}),
}


@pytest.mark.parametrize("op", sorted(BINARY))
@given(data=st.data())
def test_binary_ops_broadcast(op, data):
    fn, ref, ka, kb = BINARY[op]
    a, b = data.draw(broadcast_pair(ka, kb))
    check(fn, [T(a), T(b)], ref(a, b), names=["a", "b"])


@given(a=float_arrays(small, min_value=0.5, max_value=2.0))
def test_scalar_operands_on_either_side(a):
    """Python numbers on the left and right (reflected ops), grads only to the tensor."""
    check(lambda x: 2.0 - x, [T(a)], 2.0 - a)
    check(lambda x: 3.0 / x, [T(a)], 3.0 / a)
    check(lambda x: 1.5 ** x, [T(a)], 1.5 ** a)
    check(lambda x: x ** 3, [T(a)], a ** 3)
    check(lambda x: x ** -0.5, [T(a)], a ** -0.5)
    check(lambda x: 0.5 * x + 1, [T(a)], 0.5 * a + 1)
    check(lambda x: x - 2 * x / 3, [T(a)], a - 2 * a / 3)


@given(data=st.data())
def test_ndarray_operand_and_constant_tensor(data):
    """A NumPy array or a tensor without requires_grad as the other operand."""
    a, b = data.draw(broadcast_pair())
    check(lambda x: x * b, [T(a)], a * b)
    check(lambda x: b - x, [T(a)], b - a)
    c = tb.tensor(b)  # requires_grad=False: only x is checked
    check(lambda x: x / (c * c + 1), [T(a)], a / (b * b + 1))


@given(a=float_arrays(small))
def test_neg(a):
    check(lambda x: -x, [T(a)], -a)


# --------------------------------------------------------------------------- unary


@given(a=float_arrays(small, min_value=-3, max_value=3))
def test_tanh(a):
    check(tb.tanh, [T(a)], np.tanh(a))
    check(lambda x: x.tanh(), [T(a)], np.tanh(a))


@given(a=float_arrays(small, min_value=-4, max_value=4))
def test_sigmoid(a):
    check(tb.sigmoid, [T(a)], 1.0 / (1.0 + np.exp(-a)))


@given(a=float_arrays(small, avoid=(0.0,), margin=0.05))
def test_relu_away_from_the_kink(a):
    check(tb.relu, [T(a)], np.maximum(a, 0.0))
    check(lambda x: x.relu(), [T(a)], np.maximum(a, 0.0))


@given(a=float_arrays(small, min_value=-3, max_value=3))
def test_exp(a):
    check(tb.exp, [T(a)], np.exp(a))


@given(a=float_arrays(small, min_value=0.2, max_value=4))
def test_log(a):
    check(tb.log, [T(a)], np.log(a))
    check(lambda x: x.log(), [T(a)], np.log(a))


# --------------------------------------------------------------------------- matmul


@st.composite
def matmul_operands(draw):
    lead = draw(shapes(min_dims=0, max_dims=2, max_side=3))
    K = draw(st.integers(1, 4))
    N = draw(st.integers(1, 4))
    a = draw(float_arrays(lead + (K,)))
    b = draw(float_arrays((K, N)))
    return a, b


@given(ab=matmul_operands())
def test_matmul(ab):
    a, b = ab
    expected = np.einsum("...k,kn->...n", a, b)
    check(lambda x, w: x @ w, [T(a), T(b)], expected, names=["a", "b"], rtol=1e-10)
    check(tb.matmul, [T(a), T(b)], expected, names=["a", "b"], rtol=1e-10)


@given(ab=matmul_operands())
def test_matmul_with_one_side_constant(ab):
    a, b = ab
    expected = np.einsum("...k,kn->...n", a, b)
    check(lambda x: x @ b, [T(a)], expected, rtol=1e-10)  # b an ndarray
    check(lambda w: tb.tensor(a) @ w, [T(b)], expected, rtol=1e-10)


@given(ab=matmul_operands(), data=st.data())
def test_linear(ab, data):
    """linear(x, w, b) = x @ w + b in one node: value against NumPy, all three gradients."""
    a, w = ab
    b = data.draw(float_arrays((w.shape[1],)))
    expected = np.einsum("...k,kn->...n", a, w) + b
    check(tb.linear, [T(a), T(w), T(b)], expected, names=["x", "w", "b"], rtol=1e-10)
    check(lambda x, w: tb.linear(x, w), [T(a), T(w)], expected - b, names=["x", "w"], rtol=1e-10)
    check(lambda w: tb.linear(tb.tensor(a), w, tb.tensor(b)), [T(w)], expected, rtol=1e-10)  # x constant


def test_linear_errors_name_the_op_shapes_and_dtypes():
    x, w = tb.tensor(np.ones((2, 3))), tb.tensor(np.ones((3, 4)))
    with pytest.raises(tb.ShapeError, match=r"linear: b must have shape \(N,\) = \(4,\).*\(3,\)"):
        tb.linear(x, w, tb.tensor(np.ones(3)))
    with pytest.raises(tb.ShapeError, match=r"linear: expected x of shape \(\.\.\., K\).*\(2, 3\).*\(4, 4\)"):
        tb.linear(x, tb.tensor(np.ones((4, 4))))
    with pytest.raises(tb.DTypeError, match=r"linear: mixed dtypes.*float64.*\(4,\) float32"):
        tb.linear(x, w, tb.tensor(np.ones(4, np.float32)))  # would be silently cast by y += b
    with pytest.raises(tb.DTypeError, match=r"linear: mixed dtypes"):
        tb.linear(tb.tensor(np.ones((2, 3), np.float32)), w)


def test_matmul_transposed_views():
    """Non-contiguous operands (a transposed view) give the same product and gradients."""
    rng = np.random.default_rng(1)
    a = T(rng.standard_normal((5, 3)))
    b = T(rng.standard_normal((5, 4)))
    check(lambda x, w: x.T @ w, [a, b], a.data.T @ b.data, names=["a", "b"], rtol=1e-10)
    check(lambda x, w: (x.T @ w).T, [a, b], (a.data.T @ b.data).T, names=["a", "b"], rtol=1e-10)


# --------------------------------------------------------------------------- reductions


@st.composite
def array_and_axis(draw):
    shape = draw(shapes(min_dims=0, max_dims=3, max_side=3))
    a = draw(float_arrays(shape))
    nd = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none" or nd == 0:
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-nd, nd - 1))
    else:
        axes = draw(st.lists(st.integers(0, nd - 1), unique=True, max_size=nd))
        axis = tuple(ax - nd if draw(st.booleans()) else ax for ax in axes)  # mix negative axes in
    return a, axis, draw(st.booleans())


@given(aak=array_and_axis())
def test_sum(aak):
    a, axis, keepdims = aak
    check(lambda x: x.sum(axis=axis, keepdims=keepdims), [T(a)], np.sum(a, axis=axis, keepdims=keepdims))


@given(aak=array_and_axis())
def test_mean(aak):
    a, axis, keepdims = aak
    check(lambda x: x.mean(axis=axis, keepdims=keepdims), [T(a)], np.mean(a, axis=axis, keepdims=keepdims))


# --------------------------------------------------------------------------- shape ops


@st.composite
def array_and_new_shape(draw):
    shape = draw(shapes(min_dims=0, max_dims=3, max_side=4))
    a = draw(float_arrays(shape))
    n = a.size
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    d = draw(st.sampled_from(divisors))
    new = draw(st.sampled_from([(n,), (-1,), (d, n // d), (d, -1), (1, n, 1), tuple(reversed(shape))]))
    return a, new


@given(an=array_and_new_shape())
def test_reshape(an):
    a, new = an
    check(lambda x: x.reshape(new), [T(a)], a.reshape(new))
    check(lambda x: x.reshape(*new), [T(a)], a.reshape(new))


@st.composite
def array_and_perm(draw):
    shape = draw(shapes(min_dims=1, max_dims=4, max_side=3))
    a = draw(float_arrays(shape))
    perm = draw(st.permutations(range(len(shape))))
    perm = tuple(p - len(shape) if draw(st.booleans()) else p for p in perm)  # negative axes too
    return a, perm


@given(ap=array_and_perm())
def test_transpose(ap):
    a, perm = ap
    check(lambda x: x.transpose(perm), [T(a)], np.transpose(a, perm))
    check(lambda x: x.permute(*perm), [T(a)], np.transpose(a, perm))
    check(lambda x: x.permute(perm), [T(a)], np.transpose(a, perm))
    if len(perm) != 2:  # ndim ints, ndim != 2: NumPy's permutation
        check(lambda x: x.transpose(*perm), [T(a)], np.transpose(a, perm))
    check(lambda x: x.T, [T(a)], a.T)
    check(lambda x: x.transpose(), [T(a)], a.T)


@given(a=float_arrays(shapes(min_dims=1, max_dims=4, max_side=3)), data=st.data())
def test_transpose_of_two_dims_swaps_them(a, data):
    """``transpose(dim0, dim1)`` is PyTorch's: swap two dims, on any ndim (also 2-D)."""
    d0 = data.draw(st.integers(-a.ndim, a.ndim - 1))
    d1 = data.draw(st.integers(-a.ndim, a.ndim - 1))
    check(lambda x: x.transpose(d0, d1), [T(a)], np.swapaxes(a, d0, d1))


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4), (2, 3, 4, 5)])
def test_transpose_and_permute_agree_with_torch(shape):
    torch = pytest.importorskip("torch")
    a = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    n = len(shape)
    for d0 in range(-n, n):
        for d1 in range(-n, n):
            want = torch.from_numpy(a).transpose(d0, d1).numpy()
            got = tb.tensor(a).transpose(d0, d1).data
            assert got.shape == want.shape and np.array_equal(got, want), (shape, d0, d1)
    perm = tuple(reversed(range(n)))[1:] + (n - 1,)
    np.testing.assert_array_equal(tb.tensor(a).permute(*perm).data, torch.from_numpy(a).permute(*perm).numpy())


def test_transpose_and_permute_reject_bad_dims():
    x = tb.tensor(np.ones((2, 3, 4)))
    with pytest.raises(tb.ShapeError, match=r"transpose.*0 and 3.*3-D"):
        x.transpose(0, 3)
    with pytest.raises(tb.ShapeError, match=r"transpose.*3-D"):
        x.transpose(0, 1.0)
    with pytest.raises(tb.ShapeError, match=r"permute.*\(0, 1\).*\(2, 3, 4\)"):
        x.permute(0, 1)
    with pytest.raises(tb.ShapeError, match=r"transpose.*not a permutation"):
        x.permute(0, 0, 1)


# --------------------------------------------------------------------------- indexing


@st.composite
def array_and_basic_index(draw):
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=4))
    a = draw(float_arrays(shape))
    idx = draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    return a, idx


@given(ai=array_and_basic_index())
def test_basic_indexing_and_slicing(ai):
    """ints, slices (negative steps too), None and Ellipsis."""
    a, idx = ai
    check(lambda x: x[idx], [T(a)], a[idx])


@given(a=float_arrays(shapes(min_dims=1, max_dims=3, max_side=4)), data=st.data())
def test_negative_step_slices(a, data):
    n = a.shape[0]
    start = data.draw(st.integers(-n, n - 1))
    step = data.draw(st.integers(-3, -1))
    sl = slice(start, None, step)
    check(lambda x: x[sl], [T(a)], a[sl])
    check(lambda x: x[::-1] * x, [T(a)], a[::-1] * a)


@given(a=float_arrays(shapes(min_dims=1, max_dims=3, max_side=4)), data=st.data())
def test_integer_array_indexing_with_repeats(a, data):
    idx = data.draw(hnp.integer_array_indices(a.shape, result_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=5)))
    check(lambda x: x[idx], [T(a)], a[idx])
    n = a.shape[0]
    rows = data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=6))
    rows = rows + rows[:1]  # at least one repeat: gradients must add up, not overwrite
    check(lambda x: x[rows], [T(a)], a[rows])
    check(lambda x: x[np.array(rows)], [T(a)], a[np.array(rows)])


@given(a=float_arrays(shapes(min_dims=2, max_dims=3, max_side=4)), data=st.data())
def test_mixed_fancy_and_slice_indexing(a, data):
    n = a.shape[0]
    rows = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5))
    check(lambda x: x[rows, 1:], [T(a)], a[rows, 1:])
    check(lambda x: x[:, [0, 0, -1]], [T(a)], a[:, [0, 0, -1]])


@given(a=float_arrays(shapes(min_dims=1, max_dims=3, max_side=4)), data=st.data())
def test_boolean_mask_indexing(a, data):
    mask = data.draw(hnp.arrays(np.bool_, a.shape))
    check(lambda x: x[mask], [T(a)], a[mask])
    row_mask = data.draw(hnp.arrays(np.bool_, a.shape[:1]))
    check(lambda x: x[row_mask], [T(a)], a[row_mask])


# --------------------------------------------------------------------------- concat, stack, split


@st.composite
def concat_operands(draw):
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=3))
    nd = len(shape)
    axis = draw(st.integers(-nd, nd - 1))
    k = draw(st.integers(1, 3))
    arrays = []
    for _ in range(k):
        s = list(shape)
        s[axis] = draw(st.integers(1, 3))
        arrays.append(draw(float_arrays(tuple(s))))
    return arrays, axis


@given(aa=concat_operands())
def test_concat(aa):
    arrays, axis = aa
    names = ["x%d" % k for k in range(len(arrays))]
    check(lambda *xs: tb.concat(list(xs), axis=axis), [T(a) for a in arrays], np.concatenate(arrays, axis=axis), names)


@given(shape=shapes(min_dims=0, max_dims=3, max_side=3), data=st.data())
def test_stack(shape, data):
    k = data.draw(st.integers(1, 3))
    arrays = [data.draw(float_arrays(shape)) for _ in range(k)]
    axis = data.draw(st.integers(-(len(shape) + 1), len(shape)))
    names = ["x%d" % j for j in range(k)]
    check(lambda *xs: tb.stack(xs, axis=axis), [T(a) for a in arrays], np.stack(arrays, axis=axis), names)


@given(shape=shapes(min_dims=1, max_dims=3, max_side=4), data=st.data())
def test_split(shape, data):
    a = data.draw(float_arrays(shape))
    nd = len(shape)
    axis = data.draw(st.integers(-nd, nd - 1))
    n = shape[axis]
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    if data.draw(st.booleans()):
        sections = data.draw(st.sampled_from(divisors))
    else:
        sections = sorted(data.draw(st.lists(st.integers(0, n), max_size=3)))
    expected = tuple(np.split(a, sections, axis=axis))
    check(lambda x: tb.split(x, sections, axis=axis), [T(a)], expected)
    # only some of the outputs used: the others get zero gradient
    check(lambda x: tb.split(x, sections, axis=axis)[0] * 2.0, [T(a)], expected[0] * 2.0)


# --------------------------------------------------------------------------- reuse


@given(a=float_arrays(small))
def test_reused_leaf(a):
    check(lambda x: x * x, [T(a)], a * a)
    check(lambda x: x + x + x, [T(a)], 3 * a)
    check(lambda x: x * x.tanh() - x, [T(a)], a * np.tanh(a) - a)


@given(a=float_arrays(small))
def test_reused_intermediate_node(a):
    """A non-leaf used by several consumers (a diamond) gathers all their gradients."""

    def fn(x):
        y = x.tanh()
        z = y * y + y.sigmoid() - y
        return z * y

    y = np.tanh(a)
    check(fn, [T(a)], (y * y + 1 / (1 + np.exp(-y)) - y) * y)


@given(a=float_arrays(small))
def test_same_tensor_passed_twice(a):
    x = T(a)
    # x is the first and the second argument: both paths add into one gradient
    check(lambda p, q: (p * q).tanh() + p, [x, x], np.tanh(a * a) + a, names=["p", "q"])


@given(a=float_arrays(shapes(min_dims=2, max_dims=2, max_side=3)))
def test_composite_expression_with_two_outputs(a):
    """A tuple of outputs is checked as a whole (each output gets its own random weights)."""
    check(lambda x: (x.T @ x, (x * 2).sum(axis=0)), [T(a)], (a.T @ a, (a * 2).sum(axis=0)), rtol=1e-10)

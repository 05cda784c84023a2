"""The ops attention is built from: batched ``@``, softmax, masking and the tensor factories.

Every op runs on both kernel backends (the ``backend`` fixture) in float64.
Values are compared with NumPy written out here (``np.matmul``, a softmax
computed by hand) and, where torch is installed, with torch; gradients with
``tinybptt.gradcheck`` (central differences) and with torch's autograd.  The C
backend is compared with the NumPy reference directly as well.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinybptt as tb
from tinybptt import kernels
from tinybptt.errors import DTypeError, ShapeError
from tinybptt.factories import ones, randn, zeros
from tinybptt.nn import manual_seed
from tinybptt.ops.masking import masked_fill, where
from tinybptt.ops.softmax import log_softmax, softmax
from tinybptt.testing import assert_gradients_match, broadcastable_shapes, float_arrays, shapes

try:
    import torch
except ImportError:  # the torch comparisons are skipped, the rest runs
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def T(a):
    return tb.tensor(a, requires_grad=True)


def torch_grads(fn, arrays, g):
    """Value of ``fn`` on torch tensors made from ``arrays`` and the gradients of <out, g>."""
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(torch.tensor(g))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


def our_grads(fn, arrays, g):
    ts = [T(a) for a in arrays]
    out = fn(*ts)
    out.backward(g)
    return out.data, [t.grad for t in ts]


# --------------------------------------------------------------------------- batched matmul

# (a shape, b shape): NumPy's rules for every rank, broadcast batch axes and zero-size axes
MATMUL_SHAPES = [
    ((3,), (3,)),                 # dot product: a 0-D result
    ((3,), (3, 4)),               # 1-D @ 2-D
    ((2, 3), (3,)),               # 2-D @ 1-D
    ((5, 2, 3), (3,)),            # batched @ 1-D
    ((3,), (5, 3, 4)),            # 1-D @ batched
    ((2, 3), (5, 3, 4)),          # a matrix broadcast over b's batch
    ((5, 2, 3), (3, 4)),          # the flattened single-GEMM path
    ((5, 2, 3), (5, 3, 4)),       # a plain batch
    ((2, 3, 4, 5), (2, 3, 5, 2)),  # 4-D: (N, H, L, D) @ (N, H, D, S)
    ((5, 1, 2, 3), (4, 3, 2)),    # batch axes broadcast both ways
    ((1, 2, 3), (4, 1, 3, 2)),
    ((2, 0), (0, 3)),             # K = 0: zeros, and zero gradients
    ((4, 2, 0), (4, 0, 3)),       # batched K = 0
    ((0, 2, 3), (3, 4)),          # empty batch
    ((3, 0, 2, 3), (1, 3, 4)),    # empty broadcast batch
    ((2, 3), (3, 0)),             # N = 0
    ((2, 5, 3), (2, 3, 0)),
    ((0,), (0,)),                 # an empty dot product is 0
]


@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES)
def test_matmul_matches_numpy_and_gradcheck(backend, sa, sb):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    out = T(a) @ T(b)
    expected = np.matmul(a, b)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    assert_gradients_match(lambda x, y: x @ y, [T(a), T(b)], names=["a", "b"], allow_kinks=False)


@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES)
def test_matmul_gradients_against_numpy_formula(backend, sa, sb):
    """dL/da = g b^T summed over a's broadcast batch axes; zero-size axes give zeros."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    g = rng.standard_normal(np.matmul(a, b).shape)
    _, (da, db) = our_grads(lambda x, y: x @ y, [a, b], g)
    # the same sums written with einsum on explicitly broadcast operands
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = np.asarray(g).reshape(np.matmul(a2, b2).shape)
    full_da = np.einsum("...mn,...kn->...mk", g2, np.broadcast_to(b2, g2.shape[:-2] + b2.shape[-2:]))
    full_db = np.einsum("...mk,...mn->...kn", np.broadcast_to(a2, g2.shape[:-2] + a2.shape[-2:]), g2)
    want_da = _sum_to(full_da, a2.shape).reshape(a.shape)
    want_db = _sum_to(full_db, b2.shape).reshape(b.shape)
    assert da.shape == a.shape and db.shape == b.shape
    np.testing.assert_allclose(da, want_da, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, want_db, rtol=1e-12, atol=1e-12)


def _sum_to(x, shape):
    """Sum ``x`` over leading axes and stretched size-1 axes down to ``shape`` (written out here)."""
    while x.ndim > len(shape):
        x = x.sum(axis=0)
    for k, n in enumerate(shape):
        if n == 1 and x.shape[k] != 1:
            x = x.sum(axis=k, keepdims=True)
    return x


@st.composite
def batched_operands(draw):
    """a (..., M, K) and b (..., K, N) whose batch axes broadcast (either side may stretch)."""
    batch_a, batch_b = draw(broadcastable_shapes(shapes(min_dims=0, max_dims=2, max_side=3), max_side=3))
    if draw(st.booleans()):
        batch_a, batch_b = batch_b, batch_a
    M, K, N = (draw(st.integers(1, 3)) for _ in range(3))
    return draw(float_arrays(batch_a + (M, K))), draw(float_arrays(batch_b + (K, N)))


@given(ab=batched_operands())
def test_broadcast_batched_matmul_property(backend, ab):
    a, b = ab
    np.testing.assert_allclose((T(a) @ T(b)).data, np.matmul(a, b), rtol=1e-12, atol=1e-12)
    assert_gradients_match(lambda x, y: x @ y, [T(a), T(b)], names=["a", "b"], allow_kinks=False)


@needs_torch
@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES)
def test_matmul_matches_torch(backend, sa, sb):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    g = rng.standard_normal(np.matmul(a, b).shape)
    tv, (tda, tdb) = torch_grads(torch.matmul, [a, b], g)
    v, (da, db) = our_grads(lambda x, y: x @ y, [a, b], g)
    np.testing.assert_allclose(v, tv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(da, tda, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, tdb, rtol=1e-12, atol=1e-12)


@needs_torch
@pytest.mark.parametrize("sx, sw", [((2, 4), (4, 0)), ((3, 2, 4), (4, 0)), ((2, 0), (0, 3)), ((4,), (4, 3)),
                                    ((0,), (0, 3)), ((0, 4), (4, 3))])
def test_linear_zero_size_and_1d_match_torch(backend, sx, sw):
    """linear(x, w, b) with w (K, N) is torch's F.linear(x, w.T, b), also for empty and 1-D inputs."""
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal(sx), rng.standard_normal(sw), rng.standard_normal(sw[1])
    g = rng.standard_normal(sx[:-1] + sw[1:])
    tv, tgrads = torch_grads(lambda x, w, b: torch.nn.functional.linear(x, w.T, b), [x, w, b], g)
    v, grads = our_grads(tb.linear, [x, w, b], g)
    np.testing.assert_allclose(v, tv, rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(grads, tgrads):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_batched_matmul_c_matches_numpy_reference():
    """Forward and both gradients of a broadcast 4-D product, C backend against the NumPy backend."""
    if "c" not in kernels.available_backends():
        pytest.skip("the C backend is not built")
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((3, 1, 5, 7)), rng.standard_normal((4, 7, 6))
    g = rng.standard_normal((3, 4, 5, 6))
    results = {}
    previous = tb.get_backend()
    try:
        for name in ("numpy", "c"):
            tb.set_backend(name)
            results[name] = our_grads(lambda x, y: x @ y, [a, b], g)
    finally:
        tb.set_backend(previous)
    (vn, gn), (vc, gc) = results["numpy"], results["c"]
    np.testing.assert_allclose(vc, vn, rtol=1e-12, atol=1e-12)
    for c_grad, np_grad in zip(gc, gn):
        np.testing.assert_allclose(c_grad, np_grad, rtol=1e-12, atol=1e-12)


def test_batched_matmul_is_one_bmm_call(monkeypatch):
    """The whole batch goes to the kernel in one call: no Python loop over the batch."""
    calls = []
    real = kernels.backend.bmm
    monkeypatch.setattr(kernels.backend, "bmm", lambda a, b: calls.append((a.shape, b.shape)) or real(a, b))
    a, b = T(np.ones((2, 3, 4, 5))), T(np.ones((2, 3, 5, 6)))
    (a @ b).sum().backward()
    assert calls[0] == ((6, 4, 5), (6, 5, 6))  # forward
    assert len(calls) == 3  # forward, dL/da, dL/db


def test_matmul_float32_stays_float32(backend):
    a, b = np.ones((2, 3, 4), np.float32), np.ones((2, 4, 5), np.float32)
    out = tb.tensor(a, requires_grad=True) @ tb.tensor(b)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, np.matmul(a, b))


@pytest.mark.parametrize("sa, sb, words", [
    ((2, 3, 4), (2, 5, 6), ["matmul", "(2, 3, 4) float64", "(2, 5, 6) float64"]),
    ((2, 3, 4), (3, 4, 6), ["matmul", "batch axes", "(2,)", "(3,)"]),
    ((3,), (4,), ["matmul", "(3,)", "(4,)"]),
    ((2, 3), (4,), ["matmul", "(2, 3)", "(4,)"]),
    ((), (3, 4), ["matmul", "at least one dimension"]),
])
def test_matmul_shape_errors_name_op_and_shapes(sa, sb, words):
    with pytest.raises(ShapeError) as info:
        tb.tensor(np.ones(sa)) @ tb.tensor(np.ones(sb))
    for w in words:
        assert w in str(info.value), str(info.value)


def test_matmul_mixed_dtypes_is_a_dtype_error():
    with pytest.raises(DTypeError, match=r"matmul: mixed dtypes.*\(2, 3, 4\) float32.*\(2, 4, 5\) float64"):
        tb.tensor(np.ones((2, 3, 4), np.float32)) @ tb.tensor(np.ones((2, 4, 5)))


# --------------------------------------------------------------------------- softmax


def softmax_by_hand(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("shape, axis", [((5,), -1), ((3, 4), -1), ((3, 4), 0), ((2, 3, 4), 1), ((2, 2, 3, 4), -1)])
def test_softmax_and_log_softmax(backend, shape, axis):
    x = np.random.default_rng(5).standard_normal(shape) * 3
    want = softmax_by_hand(x, axis)
    np.testing.assert_allclose(softmax(T(x), axis).data, want, rtol=1e-13)
    np.testing.assert_allclose(log_softmax(T(x), axis).data, np.log(want), rtol=1e-12, atol=1e-13)
    assert_gradients_match(lambda t: softmax(t, axis), [T(x)], allow_kinks=False)
    assert_gradients_match(lambda t: log_softmax(t, axis), [T(x)], allow_kinks=False)


def test_softmax_is_stable_for_huge_logits(backend):
    x = np.array([[1000.0, 999.0, -1000.0], [-1000.0, -1001.0, -1002.0]])
    y = softmax(T(x))
    assert np.all(np.isfinite(y.data))
    np.testing.assert_allclose(y.data, softmax_by_hand(x, -1), rtol=1e-13)
    np.testing.assert_allclose(log_softmax(T(x)).data[0, 2], -2000.0 - np.log1p(np.exp(-1.0)), rtol=1e-13)
    assert_gradients_match(lambda t: softmax(t) * tb.tensor([1.0, 2.0, 3.0]), [T(x)], allow_kinks=False)


def test_minus_inf_is_probability_zero_and_a_full_row_of_it_is_nan(backend):
    x = T(np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]]))
    y = softmax(x)
    np.testing.assert_allclose(y.data[0], [1 / (1 + np.e), 0.0, np.e / (1 + np.e)], rtol=1e-13)
    assert np.all(np.isnan(y.data[1]))  # nothing to give probability to: NaN, as torch
    (y[0] * tb.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad[0, 1] == 0.0 and np.all(np.isfinite(x.grad[0]))


@needs_torch
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_matches_torch(backend, axis):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4, 5))
    x[0, 0, 1] = -np.inf
    g = rng.standard_normal(x.shape)
    for ours, theirs in [(softmax, torch.softmax), (log_softmax, torch.log_softmax)]:
        tv, (tdx,) = torch_grads(lambda t: theirs(t, axis), [x], g)
        v, (dx,) = our_grads(lambda t: ours(t, axis), [x], g)
        np.testing.assert_allclose(v, tv, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dx, tdx, rtol=1e-12, atol=1e-14)


@needs_torch
def test_fully_masked_row_is_nan_like_torch():
    x = np.full((2, 3), -np.inf)
    x[0] = [0.0, 1.0, 2.0]
    tv = torch.softmax(torch.tensor(x), -1).numpy()
    v = softmax(T(x)).data
    np.testing.assert_array_equal(np.isnan(v), np.isnan(tv))


def test_softmax_bad_axis_names_op_shape_and_dtype():
    with pytest.raises(ShapeError, match=r"softmax: axis 3 is out of range.*\(2, 3\) float64"):
        softmax(T(np.ones((2, 3))), 3)
    with pytest.raises(TypeError, match=r"log_softmax: axis must be an int, got 1.5"):
        log_softmax(T(np.ones((2, 3))), 1.5)


# --------------------------------------------------------------------------- masking


def test_where_broadcasts_and_routes_gradients(backend):
    rng = np.random.default_rng(7)
    cond = rng.random((3, 1, 4)) > 0.5
    a, b = rng.standard_normal((2, 4)), rng.standard_normal((3, 2, 1))
    out = where(cond, T(a), T(b))
    np.testing.assert_array_equal(out.data, np.where(cond, a, b))
    assert_gradients_match(lambda x, y: where(cond, x, y), [T(a), T(b)], names=["a", "b"], allow_kinks=False)


def test_where_with_a_number(backend):
    cond = np.array([True, False, True])
    x = T(np.array([1.0, 2.0, 3.0]))
    out = where(cond, x, 0.0)
    np.testing.assert_array_equal(out.data, [1.0, 0.0, 3.0])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 1.0])


def test_masked_fill_broadcast_mask(backend):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 4))
    mask = np.triu(np.ones((3, 4), bool), k=1)  # broadcast over the first axis
    out = masked_fill(T(x), mask, -7.5)
    np.testing.assert_array_equal(out.data, np.where(mask, -7.5, x))
    assert_gradients_match(lambda t: masked_fill(t, mask, -7.5) * 1.5, [T(x)], allow_kinks=False)


def test_masked_fill_with_minus_inf_through_softmax(backend):
    """The attention idiom: masked scores get probability 0 and no gradient."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 3))
    causal = np.triu(np.ones((3, 3), bool), k=1)
    fn = lambda t: softmax(masked_fill(t, causal, float("-inf"))) * tb.tensor(np.arange(9.0).reshape(3, 3))
    y = softmax(masked_fill(T(x), causal, float("-inf")))
    assert np.all(y.data[causal] == 0)
    np.testing.assert_allclose(y.data[0], [1.0, 0.0, 0.0])
    rep = assert_gradients_match(fn, [T(x)], allow_kinks=False)
    assert rep.ok
    t = T(x)
    fn(t).sum().backward()
    assert np.all(t.grad[causal] == 0)


@needs_torch
def test_masking_matches_torch(backend):
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 4))
    mask = rng.random((3, 4)) > 0.5
    g = rng.standard_normal((2, 3, 4))
    tm = torch.tensor(mask)
    tv, tg = torch_grads(lambda a, b: torch.where(tm, a, b), [x, y], g)
    v, og = our_grads(lambda a, b: where(mask, a, b), [x, y], g)
    np.testing.assert_array_equal(v, tv)
    for ours, theirs in zip(og, tg):
        np.testing.assert_array_equal(ours, theirs)
    tv, (tdx,) = torch_grads(lambda a: a.masked_fill(tm, -3.0), [x], g)
    v, (dx,) = our_grads(lambda a: masked_fill(a, mask, -3.0), [x], g)
    np.testing.assert_array_equal(v, tv)
    np.testing.assert_array_equal(dx, tdx)


def test_masking_errors():
    x = T(np.ones((2, 3)))
    with pytest.raises(DTypeError, match=r"masked_fill: the mask must be a boolean array, got \(2, 3\) float64"):
        masked_fill(x, np.ones((2, 3)), 0.0)
    with pytest.raises(DTypeError, match=r"where: the mask must be a boolean array, got a Tensor of \(2, 3\)"):
        where(x, x, x)
    with pytest.raises(ShapeError, match=r"masked_fill: shapes do not broadcast together: \(2, 3\) float64, \(4,\) bool"):
        masked_fill(x, np.ones(4, bool), 0.0)
    with pytest.raises(ShapeError, match=r"masked_fill: the mask \(shape \(3, 2, 3\)\) must broadcast"):
        masked_fill(x, np.ones((3, 2, 3), bool), 0.0)  # would grow the output
    with pytest.raises(ShapeError, match=r"where: shapes do not broadcast.*\(2, 3\).*\(4,\)"):
        where(np.ones((2, 3), bool), x, T(np.ones(4)))
    with pytest.raises(DTypeError, match=r"where: mixed dtypes \(a \(2, 3\) float64, b \(2, 3\) float32\)"):
        where(np.ones((2, 3), bool), x, tb.tensor(np.ones((2, 3), np.float32)))
    with pytest.raises(DTypeError, match=r"masked_fill: value must be a number"):
        masked_fill(x, np.ones((2, 3), bool), "zero")


# --------------------------------------------------------------------------- factories


def test_zeros_ones_shapes_dtypes_and_grad():
    z = zeros(2, 3)
    assert isinstance(z, tb.Tensor) and z.shape == (2, 3) and z.dtype == np.float64 and not z.requires_grad
    assert np.all(z.data == 0)
    o = ones((4,), dtype=np.float32, requires_grad=True)
    assert o.shape == (4,) and o.dtype == np.float32 and o.requires_grad and o.is_leaf and np.all(o.data == 1)
    assert zeros(0, 3).shape == (0, 3) and ones().shape == ()


def test_randn_seeding():
    a = randn(3, 4, generator=0)
    np.testing.assert_array_equal(a.data, np.random.default_rng(0).standard_normal((3, 4)))
    np.testing.assert_array_equal(randn((3, 4), generator=0).data, a.data)  # same seed, same tensor
    assert not np.array_equal(randn(3, 4, generator=1).data, a.data)
    g = np.random.default_rng(5)
    first, second = randn(2, generator=g), randn(2, generator=g)  # a Generator advances
    np.testing.assert_array_equal(np.concatenate([first.data, second.data]),
                                  np.random.default_rng(5).standard_normal(4))
    manual_seed(11)
    u = randn(5)
    manual_seed(11)
    np.testing.assert_array_equal(randn(5).data, u.data)  # the global generator follows manual_seed
    f32 = randn(3, 4, generator=0, dtype=np.float32, requires_grad=True)
    assert f32.dtype == np.float32 and f32.requires_grad
    np.testing.assert_allclose(f32.data, a.data, rtol=1e-6)


def test_factory_errors():
    with pytest.raises(ShapeError, match=r"zeros: the shape must be ints >= 0, got \(2, -1\)"):
        zeros(2, -1)
    with pytest.raises(ShapeError, match=r"ones: the shape must be ints"):
        ones(2.5)
    with pytest.raises(DTypeError, match=r"randn: dtype must be float32 or float64, got int64"):
        randn(2, dtype=np.int64)
    with pytest.raises(TypeError, match=r"randn: generator must be None, an int seed or a numpy.random.Generator"):
        randn(2, generator="seed")

"""The C kernels against the NumPy reference kernels (and NumPy itself).

matmul in every transpose combination and memory layout (non-contiguous,
negatively strided, Fortran-ordered), with empty and unit dimensions, odd
sizes, ``out=`` and ``accumulate=``; bmm (one C call for a batch of
products) with zero and odd sizes; tanh / sigmoid / relu and their backward
passes including +-1000, infinities and NaN, with NumPy warnings turned into
errors; both float dtypes; and bad input that must raise DTypeError /
ShapeError from both backends rather than crash.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinybptt import kernels
from tinybptt.errors import DTypeError, ShapeError

REF = kernels.numpy_backend
C = kernels.c_backend
needs_c = pytest.mark.skipif(C is None, reason="the C backend is not built (%s)" % (kernels.C_IMPORT_ERROR,))
BACKENDS = [pytest.param(REF, id="numpy"), pytest.param(C, id="c", marks=needs_c)]
DTYPES = [np.float32, np.float64]

TOL = {np.dtype(np.float32): dict(rtol=2e-5, atol=2e-6), np.dtype(np.float64): dict(rtol=1e-12, atol=1e-14)}


# --------------------------------------------------------------------------- layouts


LAYOUTS = ["c", "f", "strided", "negative", "transposed_view"]


def in_layout(a, layout):
    """An array equal to ``a`` stored in the given memory layout."""
    if layout == "c":
        return np.ascontiguousarray(a)
    if layout == "f":
        return np.asfortranarray(a)
    if layout == "strided":  # every other row and column of a bigger array
        big = np.full((2 * a.shape[0] + 1, 2 * a.shape[1] + 1), np.nan, a.dtype)
        big[1::2, 1::2] = a
        return big[1::2, 1::2]
    if layout == "negative":  # negative strides on both axes
        return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    if layout == "transposed_view":
        return np.ascontiguousarray(a.T).T
    raise ValueError(layout)


@st.composite
def matmul_case(draw, max_side=9):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    M, N, K = (draw(st.integers(0, max_side)) for _ in range(3))
    ta, tb = draw(st.booleans()), draw(st.booleans())
    elems = st.floats(-1, 1, width=32)
    a = draw(hnp.arrays(dtype, (K, M) if ta else (M, K), elements=elems))
    b = draw(hnp.arrays(dtype, (N, K) if tb else (K, N), elements=elems))
    a = in_layout(a, draw(st.sampled_from(LAYOUTS)))
    b = in_layout(b, draw(st.sampled_from(LAYOUTS)))
    return a, b, ta, tb


def product64(a, b, ta, tb):
    """The exact-ish product in float64 with plain NumPy."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64.T if ta else a64) @ (b64.T if tb else b64)


def assert_product(r, a, b, ta, tb):
    K = a.shape[0] if ta else a.shape[1]
    tol = TOL[a.dtype]
    np.testing.assert_allclose(r, product64(a, b, ta, tb), rtol=tol["rtol"] * 10, atol=tol["atol"] * 10 * max(K, 1))


# --------------------------------------------------------------------------- matmul


@needs_c
@given(case=matmul_case())
def test_matmul_c_matches_numpy(case):
    a, b, ta, tb = case
    a0, b0 = a.copy(), b.copy()
    rc = C.matmul(a, b, trans_a=ta, trans_b=tb)
    rn = REF.matmul(a, b, trans_a=ta, trans_b=tb)
    M = a.shape[1] if ta else a.shape[0]
    N = b.shape[0] if tb else b.shape[1]
    assert rc.shape == rn.shape == (M, N)
    assert rc.dtype == rn.dtype == a.dtype
    np.testing.assert_allclose(rc, rn, **TOL[a.dtype])
    assert_product(rc, a, b, ta, tb)
    np.testing.assert_array_equal(a, a0)  # inputs untouched
    np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=matmul_case(max_side=6), accumulate=st.booleans(), data=st.data())
def test_matmul_out_and_accumulate(backend, case, accumulate, data):
    a, b, ta, tb = case
    M = a.shape[1] if ta else a.shape[0]
    N = b.shape[0] if tb else b.shape[1]
    out = data.draw(hnp.arrays(a.dtype, (M, N), elements=st.floats(-1, 1, width=32)))
    before = out.copy()
    r = backend.matmul(a, b, trans_a=ta, trans_b=tb, out=out, accumulate=accumulate)
    assert r is out
    expected = product64(a, b, ta, tb) + (before.astype(np.float64) if accumulate else 0)
    K = a.shape[0] if ta else a.shape[1]
    tol = TOL[a.dtype]
    np.testing.assert_allclose(out, expected, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10 * (K + 1))


@needs_c
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("MNK", [(0, 3, 4), (3, 0, 4), (3, 4, 0), (0, 0, 0), (1, 1, 1), (1, 7, 1), (7, 1, 13),
                                 (17, 33, 65), (64, 48, 257)])
def test_matmul_edge_and_odd_sizes(dtype, ta, tb, MNK):
    """Empty and unit dimensions; sizes that are not multiples of any register tile."""
    M, N, K = MNK
    rng = np.random.default_rng(M * 10000 + N * 100 + K)
    a = rng.uniform(-1, 1, (K, M) if ta else (M, K)).astype(dtype)
    b = rng.uniform(-1, 1, (N, K) if tb else (K, N)).astype(dtype)
    rc = C.matmul(a, b, trans_a=ta, trans_b=tb)
    rn = REF.matmul(a, b, trans_a=ta, trans_b=tb)
    assert rc.shape == rn.shape == (M, N)
    assert_product(rc, a, b, ta, tb)
    np.testing.assert_allclose(rc, rn, rtol=TOL[np.dtype(dtype)]["rtol"] * 10, atol=TOL[np.dtype(dtype)]["atol"] * 10 * max(K, 1))
    if K == 0:  # an empty sum is zero, even into garbage memory
        assert np.all(rc == 0)
        out = np.full((M, N), np.nan, dtype)
        C.matmul(a, b, trans_a=ta, trans_b=tb, out=out)
        assert np.all(out == 0)


# --------------------------------------------------------------------------- activations


ACTS = {
    "tanh": np.tanh,
    "sigmoid": lambda x: np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x)))),
    "relu": lambda x: np.where(np.isnan(x), x, np.maximum(x, 0)),
}
# d act / dx from the saved output y
DERIV = {"tanh": lambda y: 1 - y * y, "sigmoid": lambda y: y * (1 - y), "relu": lambda y: (~(y <= 0)).astype(y.dtype)}  # torch's rule: NaN passes

SPECIAL = [0.0, -0.0, 1.0, -1.0, 20.0, -20.0, 40.0, -40.0, 100.0, -100.0, 710.0, -710.0, 1000.0, -1000.0,
           np.inf, -np.inf, np.nan]


def act_arrays(dtype):
    width = 32 if dtype == np.float32 else 64
    elements = st.one_of(st.floats(-1000, 1000, width=width), st.sampled_from(SPECIAL))
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5), elements=elements)


def reference(name, x):
    with np.errstate(over="ignore", invalid="ignore"):  # only our oracle may overflow quietly
        return ACTS[name](x.astype(np.float64))


@needs_c
@pytest.mark.parametrize("name", sorted(ACTS))
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_activation_c_matches_numpy_without_warnings(name, dtype, data):
    x = data.draw(act_arrays(dtype))
    if data.draw(st.booleans()) and x.ndim >= 1 and x.shape[-1] > 1:
        x = x[..., ::-2]  # non-contiguous, negative stride
    x0 = x.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value warnings from either backend
        yc = getattr(C, name)(x)
        yn = getattr(REF, name)(x)
    assert np.shape(yc) == np.shape(yn) == x.shape
    assert yc.dtype == np.asarray(yn).dtype == x.dtype
    tol = TOL[np.dtype(dtype)]
    np.testing.assert_allclose(yc, yn, **tol)  # NaN where NaN, equal infinities
    np.testing.assert_allclose(yc, reference(name, x).astype(dtype), rtol=tol["rtol"] * 4, atol=tol["atol"])
    np.testing.assert_array_equal(x, x0)


@needs_c
@pytest.mark.parametrize("name", sorted(ACTS))
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_activation_backward_c_matches_numpy(name, dtype, data):
    x = data.draw(act_arrays(dtype))
    y = getattr(REF, name)(x)
    y = np.asarray(y)
    dy = data.draw(hnp.arrays(dtype, x.shape, elements=st.one_of(
        st.floats(-3, 3, width=32), st.sampled_from([0.0, np.nan, 1e30, -1e30]))))
    bw = name + "_backward"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="ignore"):  # 1e30 * ... in float32 may overflow to inf: not a kernel warning
            dc = getattr(C, bw)(y, dy)
            dn = getattr(REF, bw)(y, dy)
    assert np.shape(dc) == np.shape(dn) == x.shape
    tol = TOL[np.dtype(dtype)]
    np.testing.assert_allclose(dc, dn, **tol)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = (dy.astype(np.float64) * DERIV[name](y.astype(np.float64)))
    if name == "relu":  # relu passes dy through (or 0) exactly: 0 where y <= 0, dy where y > 0 or y is NaN
        expected = np.where(y <= 0, 0, dy).astype(np.float64)
    np.testing.assert_allclose(dc, expected.astype(dtype), rtol=tol["rtol"] * 4, atol=tol["atol"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_at_plus_minus_1000_and_nan(backend, dtype):
    x = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0, np.nan, -np.inf, np.inf], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = backend.tanh(x)
        s = backend.sigmoid(x)
        r = backend.relu(x)
        dt = backend.tanh_backward(t, np.ones_like(x))
        ds = backend.sigmoid_backward(s, np.ones_like(x))
        dr = backend.relu_backward(r, np.ones_like(x))
    np.testing.assert_array_equal(t, np.array([-1, -1, 0, 1, 1, np.nan, -1, 1], dtype))
    np.testing.assert_array_equal(s[[0, 2, 4, 5, 6, 7]], np.array([0, 0.5, 1, np.nan, 0, 1], dtype))
    assert 0 <= s[1] < 1e-40  # sigmoid(-100) = 3.7e-44: subnormal in float32, tiny in float64
    if dtype == np.float64:
        assert s[1] == pytest.approx(np.exp(-100.0), rel=1e-12)
    np.testing.assert_array_equal(r, np.array([0, 0, 0, 100, 1000, np.nan, 0, np.inf], dtype))
    np.testing.assert_array_equal(dt, np.array([0, 0, 1, 0, 0, np.nan, 0, 0], dtype))
    np.testing.assert_array_equal(ds[[0, 2, 4, 5, 6, 7]], np.array([0, 0.25, 0, np.nan, 0, 0], dtype))
    np.testing.assert_array_equal(dr, np.array([0, 0, 0, 1, 1, 1, 0, 1], dtype))  # 1 at the NaN, as torch


@pytest.mark.parametrize("backend", [pytest.param(C, id="c", marks=needs_c), pytest.param(REF, id="numpy")])
def test_activation_results_are_arrays_even_for_0d(backend):
    x = np.array(0.5)
    for name in ["tanh", "sigmoid", "relu"]:
        y = getattr(backend, name)(x)
        assert isinstance(y, np.ndarray) and y.shape == ()
        d = getattr(backend, name + "_backward")(np.asarray(y), np.array(1.0))
        assert isinstance(d, np.ndarray) and d.shape == ()


# --------------------------------------------------------------------------- bad input


BAD_DTYPES = [np.int32, np.int64, np.float16, np.bool_, np.complex128]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", BAD_DTYPES)
def test_bad_dtypes_raise_dtype_error(backend, bad):
    good = np.ones((2, 2))
    x = np.ones((2, 2), dtype=bad)
    for name in ["tanh", "sigmoid", "relu"]:
        with pytest.raises(DTypeError, match=name):
            getattr(backend, name)(x)
        with pytest.raises(DTypeError, match=name + "_backward"):
            getattr(backend, name + "_backward")(x, good)
        with pytest.raises(DTypeError, match=name + "_backward"):
            getattr(backend, name + "_backward")(good, x)
    with pytest.raises(DTypeError, match="matmul"):
        backend.matmul(x, good)
    with pytest.raises(DTypeError, match="matmul"):
        backend.matmul(good, x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_dtypes_raise_dtype_error(backend):
    a32, a64 = np.ones((2, 2), np.float32), np.ones((2, 2))
    with pytest.raises(DTypeError, match=r"matmul.*float32.*float64"):
        backend.matmul(a32, a64)
    for name in ["tanh_backward", "sigmoid_backward", "relu_backward"]:
        with pytest.raises(DTypeError, match=name):
            getattr(backend, name)(a64, a32)
    with pytest.raises(DTypeError):
        backend.tanh([1.0, 2.0])  # not an ndarray
    assert isinstance(DTypeError("x"), TypeError)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_matmul_shapes_raise_shape_error(backend):
    a = np.ones((2, 3))
    with pytest.raises(ShapeError, match=r"matmul.*\(2, 3\)"):
        backend.matmul(a, np.ones((4, 5)))
    with pytest.raises(ShapeError, match="inner"):
        backend.matmul(a, np.ones((3, 2)), trans_a=True)  # op(a) is (3, 2), b is (3, 2)
    with pytest.raises(ShapeError, match="2-D"):
        backend.matmul(np.ones(3), np.ones((3, 2)))
    with pytest.raises(ShapeError, match="2-D"):
        backend.matmul(np.ones((1, 2, 3)), np.ones((3, 2)))
    with pytest.raises(ShapeError, match="out"):
        backend.matmul(a, np.ones((3, 4)), out=np.zeros((2, 5)))
    assert isinstance(ShapeError("x"), ValueError)


@pytest.mark.parametrize("backend", [
    pytest.param(C, id="c", marks=needs_c),
    pytest.param(REF, id="numpy"),
])
@pytest.mark.parametrize("name", ["tanh_backward", "sigmoid_backward", "relu_backward"])
def test_backward_shape_mismatch_raises_shape_error(backend, name):
    with pytest.raises(ShapeError, match=name):
        getattr(backend, name)(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ShapeError, match=name):
        getattr(backend, name)(np.ones((2, 3)), np.ones((1, 3)))  # broadcastable is still wrong


# --------------------------------------------------------------------------- bmm


BMM_SIZES = [(0, 3, 4, 5), (2, 0, 4, 5), (2, 3, 0, 5), (2, 3, 4, 0), (0, 0, 0, 0), (1, 1, 1, 1),
             (3, 7, 1, 13), (5, 17, 33, 65), (2, 64, 48, 257)]


@needs_c
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("SMNK", BMM_SIZES)
def test_bmm_c_matches_numpy_reference(dtype, SMNK):
    """Batched products, odd and zero sizes: C, the NumPy reference and a per-matrix float64 loop agree."""
    S, M, N, K = SMNK
    rng = np.random.default_rng(S * 10**6 + M * 10**4 + N * 100 + K)
    a = rng.uniform(-1, 1, (S, M, K)).astype(dtype)
    b = rng.uniform(-1, 1, (S, K, N)).astype(dtype)
    rc, rn = C.bmm(a, b), REF.bmm(a, b)
    assert rc.shape == rn.shape == (S, M, N) and rc.dtype == rn.dtype == np.dtype(dtype)
    expected = np.zeros((S, M, N))
    for s in range(S):  # the oracle: one plain float64 product per matrix
        expected[s] = a[s].astype(np.float64) @ b[s].astype(np.float64)
    tol = TOL[np.dtype(dtype)]
    for r in (rc, rn):
        np.testing.assert_allclose(r, expected, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10 * max(K, 1))
    if K == 0:
        assert not np.any(rc) and not np.any(rn)  # an empty sum is zero


@pytest.mark.parametrize("backend", BACKENDS)
def test_bmm_returns_a_new_array_and_accepts_strided_inputs(backend):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, 4, 5))
    b = rng.standard_normal((5, 3, 6)).transpose(1, 0, 2)  # (3, 5, 6), not C-contiguous
    a_before, b_before = a.copy(), b.copy()
    r = backend.bmm(a[:, ::-1], b)
    np.testing.assert_allclose(r, np.einsum("smk,skn->smn", a[:, ::-1], b), rtol=1e-12)
    assert r.flags.c_contiguous and not np.shares_memory(r, a) and not np.shares_memory(r, b)
    np.testing.assert_array_equal(a, a_before)
    np.testing.assert_array_equal(b, b_before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bmm_bad_input_raises(backend):
    good = np.ones((2, 3, 4))
    with pytest.raises(ShapeError, match=r"bmm.*3-D"):
        backend.bmm(np.ones((3, 4)), np.ones((4, 5)))
    with pytest.raises(ShapeError, match=r"bmm.*3-D"):
        backend.bmm(good, np.ones((2, 1, 4, 5)))
    with pytest.raises(ShapeError, match=r"bmm: batch sizes differ.*2.*3"):
        backend.bmm(good, np.ones((3, 4, 5)))
    with pytest.raises(ShapeError, match=r"bmm: inner dimensions differ.*\(3, 4\).*\(5, 6\)"):
        backend.bmm(good, np.ones((2, 5, 6)))
    with pytest.raises(DTypeError, match=r"bmm.*float32.*float64"):
        backend.bmm(good.astype(np.float32), np.ones((2, 4, 5)))
    for bad in BAD_DTYPES:
        with pytest.raises(DTypeError, match="bmm"):
            backend.bmm(good.astype(bad), np.ones((2, 4, 5), bad))
    with pytest.raises(DTypeError, match="bmm"):
        backend.bmm([[[1.0]]], np.ones((1, 1, 1)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("MNK", [(0, 3, 4), (3, 0, 4), (3, 4, 0), (0, 0, 0)])
def test_matmul_zero_sizes_with_out(backend, MNK):
    """A zero-size product is zeros or empty, also into ``out=`` and with ``accumulate=True``."""
    M, N, K = MNK
    a, b = np.ones((M, K), np.float32), np.ones((K, N), np.float32)
    r = backend.matmul(a, b)
    assert r.shape == (M, N) and r.dtype == np.float32 and not np.any(r)
    out = np.full((M, N), np.nan, np.float32)
    assert backend.matmul(a, b, out=out) is out and not np.any(out)
    out[...] = 5
    backend.matmul(a, b, out=out, accumulate=True)
    assert np.all(out == 5)

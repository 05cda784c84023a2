"""Blocked GEMM (csrc/gemm*.c) against its plain triple-loop reference and NumPy.

Every micro-kernel this CPU can run (portable, AVX2+FMA, AVX-512F) is checked,
not only the one the dispatcher picks: ``tb_select_isa`` switches the runtime's
instruction set, which the GEMM dispatches on, for the whole process.

Shapes are drawn around the micro-kernel tile edges (MR = 4, 6, 14; NR = 8, 16,
32) and the depth block (KC = 256, 384), including 0 and 1; all four
transpose combinations; alpha/beta including beta == 0 over a NaN-filled C;
leading dimensions larger than the minimum (operands and C are sub-matrix
views whose padding must stay untouched).  Speed is not asserted here
(benchmarks/bench_gemm.py measures it).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

try:
    from tinybptt.kernels._ffi import ffi, lib
except ImportError:  # extension not built: nothing to test here
    pytest.skip("C extension not built", allow_module_level=True)

from tinybptt.kernels import c as kc

KERNELS = ["portable", "avx2", "avx512"]
DTYPES = [np.float32, np.float64]
CTYPE = {np.float32: "float *", np.float64: "double *"}
SUFFIX = {np.float32: "f32", np.float64: "f64"}

# sizes around every tile edge (MR 4/6/14, NR 8/16/32) and 0/1
EDGE_SIZES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 27, 28, 29, 31, 32, 33, 43, 64, 65]
# depths around KC (256 or 384) and its halves
DEPTHS = [0, 1, 2, 3, 7, 16, 31, 127, 128, 129, 255, 256, 257, 383, 384, 385, 520]


def kernel_name():
    """The GEMM micro-kernel in use, as build_info reports it (``gemm=<name>;``)."""
    return kc.build_info().split("gemm=")[1].split(";")[0]


@pytest.fixture(params=KERNELS)
def kernel(request):
    """Run the test with one micro-kernel forced; skip it if this CPU cannot."""
    if lib.tb_select_isa(request.param.encode()) != 0:
        pytest.skip("%s micro-kernel not available on this CPU/build" % request.param)
    yield request.param
    assert lib.tb_select_isa(b"auto") == 0


def padded(rng, rows, cols, pad, dtype, fill=None):
    """A (rows, cols) view into a (rows + 1, cols + pad) array, and the base."""
    base = rng.standard_normal((rows + 1, cols + pad)).astype(dtype)
    if fill is not None:
        base[...] = fill
    return base[:rows, :cols], base


def gemm(fn, ta, tb, M, N, K, alpha, A, Abase, B, Bbase, beta, C, Cbase, dtype):
    """Call a tb_gemm* function on (possibly padded) row-major views."""
    ct = CTYPE[dtype]
    p = lambda a: ffi.cast(ct, a.ctypes.data)
    fn(ta, tb, M, N, K, alpha, p(A), Abase.shape[1], p(B), Bbase.shape[1], beta, p(C), Cbase.shape[1])


def reference_bound(ta, tb, alpha, A, B, beta, C0, dtype, K):
    """Elementwise tolerance: summation-order error of |alpha| |op A| |op B| + |beta C|."""
    opA = np.abs(A.T if ta else A).astype(np.float64)
    opB = np.abs(B.T if tb else B).astype(np.float64)
    scale = abs(alpha) * (opA @ opB)
    if beta != 0:
        scale = scale + abs(beta) * np.abs(C0.astype(np.float64))
    eps = np.finfo(dtype).eps
    return 4 * eps * (K + 4) * (scale + 1e-30)


def check_case(rng, ta, tb, M, N, K, alpha, beta, pads, dtype):
    pa, pb, pc = pads
    A, Abase = padded(rng, *((K, M) if ta else (M, K)), pa, dtype)
    B, Bbase = padded(rng, *((N, K) if tb else (K, N)), pb, dtype)
    C, Cbase = padded(rng, M, N, pc, dtype, fill=np.nan if beta == 0 else None)
    if beta == 0:  # C's old contents must be ignored, NaN included
        Cbase[...] = np.nan
    C0 = C.copy()
    Cref_base = Cbase.copy()
    Cref = Cref_base[:M, :N]
    sentinel = Cbase.copy()

    suf = SUFFIX[dtype]
    gemm(getattr(lib, "tb_gemm_" + suf), ta, tb, M, N, K, alpha, A, Abase, B, Bbase, beta, C, Cbase, dtype)
    gemm(getattr(lib, "tb_gemm_ref_" + suf), ta, tb, M, N, K, alpha, A, Abase, B, Bbase, beta, Cref, Cref_base, dtype)

    where = "%s %s M=%d N=%d K=%d ta=%d tb=%d alpha=%g beta=%g pads=%s" % (
        kernel_name(), suf, M, N, K, ta, tb, alpha, beta, pads)
    assert not np.isnan(C).any(), "NaN in result: " + where
    tol = reference_bound(ta, tb, alpha, A, B, beta, C0, dtype, K)
    err = np.abs(C.astype(np.float64) - Cref.astype(np.float64))
    assert (err <= tol).all(), "vs reference: max err %g (%s)" % (err.max(), where)
    # NumPy oracle too (same tolerance)
    opA = (A.T if ta else A).astype(np.float64)
    opB = (B.T if tb else B).astype(np.float64)
    want = alpha * (opA @ opB) + (beta * C0.astype(np.float64) if beta != 0 else 0)
    err = np.abs(C.astype(np.float64) - want)
    assert (err <= tol).all(), "vs numpy: max err %g (%s)" % (err.max(), where)
    # nothing outside the (M, N) view was written: padding columns, spare row
    outside = np.ones(Cbase.shape, bool)
    outside[:M, :N] = False
    np.testing.assert_array_equal(Cbase[outside], sentinel[outside], err_msg="wrote outside C: " + where)


shapes = st.tuples(st.sampled_from(EDGE_SIZES), st.sampled_from(EDGE_SIZES), st.sampled_from(DEPTHS))
scalars = st.sampled_from([(1.0, 0.0), (1.0, 1.0), (0.5, -2.0), (-1.5, 0.0), (2.0, 0.25), (0.0, 0.5), (0.0, 0.0)])
pads = st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@settings(max_examples=60)
@given(shape=shapes, trans=st.tuples(st.booleans(), st.booleans()), ab=scalars, pads=pads,
       seed=st.integers(0, 2**32 - 1))
def test_gemm_matches_reference(kernel, dtype, shape, trans, ab, pads, seed):
    M, N, K = shape
    check_case(np.random.default_rng(seed), int(trans[0]), int(trans[1]), M, N, K, ab[0], ab[1], pads, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_gemm_blocks_and_edges(kernel, dtype, ta, tb):
    """Deterministic shapes crossing every cache block: several MC/NC/KC blocks
    with ragged ends, the few-row paths, B read in place and B packed."""
    rng = np.random.default_rng(7)
    cases = [(1, 1, 1), (1, 200, 300), (3, 97, 385), (16, 1000, 33), (28, 33, 800),
             (29, 70, 20), (37, 531, 47), (150, 35, 260), (1030, 9, 5), (45, 40, 1100),
             (13, 40, 300), (120, 700, 200)]   # few-row dot products; packed B
    for i, (M, N, K) in enumerate(cases):
        if i % 2:
            check_case(rng, ta, tb, M, N, K, 1.25, 0.75, (1, 2, 3), dtype)
        else:
            check_case(rng, ta, tb, M, N, K, 1.0, 0.0, (0, 0, 0), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_gemm_degenerate(dtype):
    suf = SUFFIX[dtype]
    fn = getattr(lib, "tb_gemm_" + suf)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 3)).astype(dtype)
    B = rng.standard_normal((3, 5)).astype(dtype)
    # K == 0: C = beta * C; beta == 0 zeroes even a NaN-filled C
    C = np.full((4, 5), np.nan, dtype)
    gemm(fn, 0, 0, 4, 5, 0, 1.0, A, A, B, B, 0.0, C, C, dtype)
    assert (C == 0).all()
    C = np.ones((4, 5), dtype)
    gemm(fn, 0, 0, 4, 5, 0, 1.0, A, A, B, B, 3.0, C, C, dtype)
    assert (C == 3).all()
    # alpha == 0: A and B are not needed, C = beta * C
    C = np.full((4, 5), 2.0, dtype)
    gemm(fn, 0, 0, 4, 5, 3, 0.0, A, A, B, B, 0.5, C, C, dtype)
    assert (C == 1).all()
    # M == 0 or N == 0: nothing written
    C = np.full((4, 5), 7.0, dtype)
    gemm(fn, 0, 0, 0, 5, 3, 1.0, A, A, B, B, 0.0, C, C, dtype)
    gemm(fn, 0, 0, 4, 0, 3, 1.0, A, A, B, B, 0.0, C, C, dtype)
    assert (C == 7).all()


def test_dispatch_reports_a_kernel():
    name, isa = kernel_name(), ffi.string(lib.tb_isa_name()).decode()
    assert name.split()[0] == {"portable": "portable", "avx2": "avx2+fma", "avx512": "avx512f"}[isa]
    assert lib.tb_select_isa(b"no-such-kernel") == 1
    assert kernel_name() == name


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_gemm_threads(dtype):
    """With tb_set_num_threads(2) large products are split over OpenMP threads;
    results agree with the reference (serial is the default)."""
    before = lib.tb_get_num_threads()
    try:
        lib.tb_set_num_threads(2)
        rng = np.random.default_rng(3)
        for ta, tb in [(0, 0), (1, 1)]:
            check_case(rng, ta, tb, 100, 170, 200, 1.0, 0.5, (1, 0, 2), dtype)
            check_case(rng, ta, tb, 20, 700, 260, 1.0, 0.0, (0, 1, 0), dtype)
            check_case(rng, ta, tb, 130, 450, 300, 0.5, 1.0, (0, 0, 1), dtype)
    finally:
        lib.tb_set_num_threads(before)


def test_gemm_thread_safe():
    """Concurrent calls from Python threads use per-thread scratch: results agree."""
    import threading
    rng = np.random.default_rng(5)
    jobs = []
    for i in range(8):
        M, N, K = [(3, 700, 300), (40, 90, 500), (200, 64, 64), (1, 33, 1000)][i % 4]
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        jobs.append((a, b, a.astype(np.float64) @ b.astype(np.float64)))
    errors = []

    def work(a, b, want):
        for _ in range(20):
            got = kc.matmul(a, b)
            if not np.allclose(got, want, rtol=1e-4, atol=1e-3):
                errors.append(np.abs(got - want).max())

    threads = [threading.Thread(target=work, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@settings(max_examples=40)
@given(shape=st.tuples(st.integers(1, 70), st.integers(1, 70), st.integers(0, 300)),
       trans=st.tuples(st.booleans(), st.booleans()), layout=st.tuples(st.booleans(), st.booleans()),
       seed=st.integers(0, 2**32 - 1))
def test_kernels_c_matmul(dtype, shape, trans, layout, seed):
    """The Python wrapper: transposes, F-contiguous operands passed as transposes, out/accumulate."""
    M, N, K = shape
    ta, tb = trans
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    if layout[0]:
        a = np.asfortranarray(a)
    if layout[1]:
        b = np.asfortranarray(b)
    want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
    tol = dict(rtol=1e-4, atol=1e-4 * (K + 1)) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12 * (K + 1))
    got = kc.matmul(a, b, trans_a=ta, trans_b=tb)
    assert got.dtype == dtype and got.shape == (M, N)
    np.testing.assert_allclose(got, want, **tol)
    out = np.full((M, N), np.nan, dtype)
    kc.matmul(a, b, trans_a=ta, trans_b=tb, out=out)
    np.testing.assert_allclose(out, want, **tol)
    kc.matmul(a, b, trans_a=ta, trans_b=tb, out=out, accumulate=True)
    np.testing.assert_allclose(out, 2 * want, **tol)

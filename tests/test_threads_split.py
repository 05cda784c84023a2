"""Two threads give the same bits as one: the products that split, and the sequence kernels.

With ``tinybptt.set_num_threads(2)`` a product big enough (csrc/runtime.c,
tb_threads_for: at least MIN_WORK_PER_THREAD multiply-adds per thread, and at
least MIN_WORK_PER_BYTE per byte of its operands) is split between two
threads: the GEMM (csrc/gemm_impl.h) cuts C into slices of whole column (or
row) panels, one per thread, the per-step product (csrc/recurrent_mm.c)
shares out its column-panel groups.  Every element of the result is still
computed by one thread, in the same order, so the result must equal one
thread's bit for bit.  A split that drops, repeats or overlaps columns, rows
or panels, or offsets a slice's operands wrongly, gives different bits, and
often a wrong answer: the products are also checked against NumPy in
float64.

The shapes are odd (the last row panel, column panel and depth block are
ragged) and chosen against the rule, whose two constants are read from
csrc/runtime.c: most split, a few sit just below a threshold (one thread).
``test_the_shapes_are_split`` checks that they still are what they claim
when the constants change.  No timing here: whether a split pays is
measured by benchmarks/threads_sweep.py.
"""
import os
import re

import numpy as np
import pytest

import tinybptt
from tinybptt.kernels import numpy as KN

try:
    from tinybptt.kernels._ffi import ffi, lib
    from tinybptt.kernels import c as KC
except ImportError:  # extension not built
    KC = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME_C = os.path.join(ROOT, "csrc", "runtime.c")

pytestmark = [
    pytest.mark.skipif(KC is None, reason="the C extension is not built"),
    pytest.mark.skipif(KC is not None and "openmp=yes" not in KC.build_info(), reason="built without OpenMP"),
    pytest.mark.skipif(not os.path.exists(RUNTIME_C), reason="needs the C sources (csrc/runtime.c)"),
]


def _constant(name):
    with open(RUNTIME_C) as f:
        m = re.search(r"#define %s\s+\(?(\d+)L?(?:\s*<<\s*(\d+))?\)?" % name, f.read())
    assert m, "csrc/runtime.c no longer defines %s as this test reads it" % name
    return int(m.group(1)) << int(m.group(2) or 0)


def splits(work, nbytes):
    """tb_threads_for(work, nbytes) > 1 with two threads (the rule in csrc/runtime.c)."""
    return work >= _constant("MIN_WORK_PER_BYTE") * nbytes and work >= 2 * _constant("MIN_WORK_PER_THREAD")


def gemm_splits(M, N, K, dtype):
    return splits(M * N * K, (M * K + K * N + M * N) * np.dtype(dtype).itemsize)


def step_splits(M, N, K, dtype):
    return splits(M * N * K, (M * K + M * N) * np.dtype(dtype).itemsize)


@pytest.fixture
def threads():
    """Sets the thread count for a test; the count from before is restored after it."""
    before = tinybptt.get_num_threads()
    yield tinybptt.set_num_threads
    tinybptt.set_num_threads(before)
    assert tinybptt.get_num_threads() == before


def _ptr(a):
    return ffi.from_buffer("float[]" if a.dtype == np.float32 else "double[]", a)


def _on_threads(set_threads, run):
    """run() on one thread and on two; the thread count is left at 2 by the kernels."""
    got = {}
    for n in (1, 2):
        set_threads(n)
        got[n] = run()
        assert tinybptt.get_num_threads() == n  # no kernel changes the count
    return got[1], got[2]


# ---------------------------------------------------------------- the GEMM

# M, N, K: split on two threads, the last one just below the least density that splits
# (a cube of side c has c/3 multiply-adds per element of its operands; with 12 per byte
# the split starts at c = 144 in float32 and 288 in float64)
GEMMS = {np.float32: [(403, 397, 411), (139, 1501, 1201), (1001, 129, 577), (145, 145, 145), (143, 143, 143)],
         np.float64: [(403, 397, 411), (801, 301, 1203), (289, 289, 289), (287, 287, 287)]}
GEMM_CASES = [(dt, shape) for dt, shapes in GEMMS.items() for shape in shapes]


def test_the_shapes_are_split():
    """The shapes below are what they say against the rule's constants (so that the tests
    of the split still reach it if the constants change)."""
    for dt, shapes in GEMMS.items():
        *split, below = shapes
        assert all(gemm_splits(*shape, dt) for shape in split), (dt, split)
        assert not gemm_splits(*below, dt), (dt, below)
    *split, below = STEPS
    assert all(step_splits(*shape, np.float64) for shape in split), split
    assert not step_splits(*below, np.float32), below


@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("dtype,shape", GEMM_CASES, ids=["%s-%dx%dx%d" % ((dt.__name__,) + sh) for dt, sh in GEMM_CASES])
def test_gemm_two_threads_equal_one(threads, dtype, shape, ta, tb):
    M, N, K = shape
    rng = np.random.default_rng(M + N + K + 7 * ta + 13 * tb)
    # row strides wider than the rows: a split that ignores them reads the wrong values
    A = rng.standard_normal((K, M + 3) if ta else (M, K + 3)).astype(dtype)
    B = rng.standard_normal((N, K + 5) if tb else (K, N + 5)).astype(dtype)
    C0 = rng.standard_normal((M, N + 2)).astype(dtype)
    alpha, beta = 0.75, -0.5
    gemm = getattr(lib, "tb_gemm_" + ("f32" if dtype == np.float32 else "f64"))

    def run():
        C = C0.copy()
        assert gemm(ta, tb, M, N, K, alpha, _ptr(A), A.shape[1], _ptr(B), B.shape[1],
                    beta, _ptr(C), C.shape[1]) == 0
        return C

    one, two = _on_threads(threads, run)
    assert np.array_equal(two[:, N:], C0[:, N:]), "columns past N were written"
    assert np.array_equal(one, two), "two threads differ from one (M, N, K = %d, %d, %d)" % (M, N, K)
    opa = (A[:, :M].T if ta else A[:, :K]).astype(np.float64)
    opb = (B[:, :K].T if tb else B[:, :N]).astype(np.float64)
    want = alpha * opa @ opb + beta * C0[:, :N]
    tol = 1e-4 * np.sqrt(K) if dtype == np.float32 else 1e-11 * np.sqrt(K)
    np.testing.assert_allclose(two[:, :N], want, rtol=tol, atol=tol)


# ---------------------------------------------------------------- the per-step product

# M, N, K: split on two threads (one row, few rows, a row group; ragged last panels), then
# one just below the least work that splits
STEPS = [(1, 2065, 1031), (7, 515, 600), (33, 259, 300), (64, 2048, 256), (7, 515, 580)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,N,K", STEPS)
def test_per_step_product_two_threads_equal_one(threads, M, N, K, dtype):
    rng = np.random.default_rng(M * N + K)
    suf = "f32" if dtype == np.float32 else "f64"
    mm = getattr(lib, "tb_recurrent_mm_" + suf)
    A = rng.standard_normal((M, K + 1)).astype(dtype)
    init = rng.standard_normal(N).astype(dtype)
    C0 = rng.standard_normal((M, N + 3)).astype(dtype)
    for trans in (0, 1):
        W = rng.standard_normal((N, K) if trans else (K, N)).astype(dtype)
        for accumulate, with_init in ((0, False), (1, True)):
            def run():
                C = C0.copy()
                ip = _ptr(init) if with_init else ffi.NULL
                # two products after one packing, as in a sequence
                assert mm(M, N, K, _ptr(A), K + 1, _ptr(W), W.shape[1], trans, _ptr(C), N + 3,
                          accumulate, ip, 2) == 0
                return C

            one, two = _on_threads(threads, run)
            what = "M, N, K = %d, %d, %d trans=%d accumulate=%d" % (M, N, K, trans, accumulate)
            assert np.array_equal(two[:, N:], C0[:, N:]), "columns past N were written: " + what
            assert np.array_equal(one, two), "two threads differ from one: " + what
            opw = (W.T if trans else W).astype(np.float64)
            once = A[:, :K].astype(np.float64) @ opw + (init if with_init else 0)
            # run twice: with accumulate, C0 + 2 * (A @ op(W) + init); without, the product once
            want = C0[:, :N] + 2 * once if accumulate else once
            tol = 1e-4 * np.sqrt(K) if dtype == np.float32 else 1e-11 * np.sqrt(K)
            np.testing.assert_allclose(two[:, :N], want, rtol=tol, atol=tol, err_msg=what)


# ---------------------------------------------------------------- the sequence kernels

CELLS = ["rnn_tanh", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "lstm": 4, "gru": 3}
# T, B, I, H: at the first, every per-step product splits, and so do the weight gradients
# (taken over all 528 rows, the transposed form; in float64 the dW_ih part does not);
# the second takes the LSTM's and GRU's weight gradients a group of steps at a time (their
# sums fit the cache), in products of about 128 rows (the LSTM's split in float32)
SEQ_SIZES = [(16, 33, 130, 600), (9, 16, 64, 128)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,B,I,H", SEQ_SIZES)
@pytest.mark.parametrize("cell", CELLS)
def test_sequence_kernels_two_threads_equal_one(threads, cell, T, B, I, H, dtype):
    G = GATES[cell]
    rng = np.random.default_rng(T * B + H)

    def r(*shape, scale=0.3):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    w = 1 / np.sqrt(I + H)  # weights that keep the states and gradients of order one
    args = (r(T, B, I), r(B, H), r(B, H) if cell == "lstm" else None, r(G * H, I, scale=w), r(G * H, H, scale=w),
            r(G * H), r(G * H))
    d_out, d_hn = r(T, B, H), r(B, H)
    d_cn = r(B, H) if cell == "lstm" else None

    def run():
        out, c_out, s = KC.seq_forward(cell, *args)
        g = KC.seq_backward(cell, s, d_out, d_hn, d_cn, need_dx=True)
        return dict(g, out=out, c_out=c_out)

    one, two = _on_threads(threads, run)
    out_n, c_n, s_n = KN.seq_forward(cell, *args)
    want = dict(KN.seq_backward(cell, s_n, d_out, d_hn, d_cn, need_dx=True), out=out_n, c_out=c_n)
    # float32 sums of hundreds of terms, in a different order from NumPy's: an absolute
    # tolerance relative to the largest entry
    rtol, scale = (2e-3, 1e-4) if dtype == np.float32 else (1e-9, 1e-11)
    for key, v in one.items():
        if v is None:
            assert two[key] is None and want[key] is None, key
            continue
        assert np.array_equal(v, two[key]), "%s: two threads differ from one" % key
        np.testing.assert_allclose(two[key], want[key], rtol=rtol, atol=scale * np.abs(want[key]).max(),
                                   err_msg=key)


def test_the_thread_count_survives_the_kernels(threads):
    """The kernels read the count; they never change it."""
    threads(2)
    a = np.ones((300, 300), np.float32)
    KC.matmul(a, a)
    assert tinybptt.get_num_threads() == 2
    threads(1)
    KC.matmul(a, a)
    assert tinybptt.get_num_threads() == 1

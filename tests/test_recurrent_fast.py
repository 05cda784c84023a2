"""The optimised recurrent sequence kernels against their references.

The sequence kernels' per-step product is a register-tiled loop over W_hh
packed once per sequence (csrc/recurrent_mm.c), with one instance per
instruction set (AVX-512F, AVX2+FMA, portable C) and separate code paths for
few rows (B <= 4), many rows (groups of 6 or 8), ragged last column panels and
exact multiples of the vector width.  The sizes below are chosen to hit each
of those paths, which the small hypothesis sizes of test_recurrent_kernels.py
(H <= 7) do not reach:

1. tb_recurrent_mm_* (packed product) against tb_recurrent_mm_ref_* (plain loop),
   for every instruction set this CPU has, every accumulate/init combination;
2. the C sequence kernels against the NumPy reference at those sizes, again
   under every instruction set, float32 and float64, with and without biases;
3. the per-thread scratch is reused safely: a second, smaller call after a
   larger one gives the same answer as a fresh computation.
"""
import numpy as np
import pytest

from conftest import ISAS

from tinybptt.kernels import numpy as KN

try:
    from tinybptt.kernels._ffi import ffi, lib
    from tinybptt.kernels import c as KC
except ImportError:  # extension not built
    KC = None

pytestmark = pytest.mark.skipif(KC is None, reason="C extension not built")

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def _ptr(a):
    if a is None:
        return ffi.NULL
    return ffi.from_buffer("float[]" if a.dtype == np.float32 else "double[]", a)


def test_default_kernel_is_the_best_the_cpu_has():
    name = ffi.string(lib.tb_isa_name()).decode()
    assert name in ISAS
    better = ISAS[:ISAS.index(name)]
    for b in better:  # nothing faster is available, or it would have been chosen
        assert lib.tb_select_isa(b.encode()) == 1
    assert lib.tb_select_isa(b"no-such-isa") == 1
    assert ffi.string(lib.tb_isa_name()).decode() == name


# ---------------------------------------------------------------- 1. the packed product

MM_SHAPES = [(1, 1, 1), (1, 128, 32), (3, 17, 5), (4, 64, 64), (5, 33, 9), (8, 16, 40), (9, 100, 3),
             (13, 48, 17), (16, 256, 64), (17, 31, 70), (33, 65, 12)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,N,K", MM_SHAPES)
def test_packed_product_matches_plain_loop(isa, M, N, K, dtype):
    rng = np.random.default_rng(M * 1000 + N * 10 + K)
    suf = "f32" if dtype == np.float32 else "f64"
    mm, ref = getattr(lib, "tb_recurrent_mm_" + suf), getattr(lib, "tb_recurrent_mm_ref_" + suf)
    lda = K + 3  # row strides wider than the rows: the kernels must honour them
    A = rng.standard_normal((M, lda)).astype(dtype)
    init = rng.standard_normal(N).astype(dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for trans in (0, 1):
        W = rng.standard_normal((N, K) if trans else (K, N)).astype(dtype)
        ldw = W.shape[1]
        for accumulate in (0, 1):
            for with_init in (False, True):
                C0 = rng.standard_normal((M, N + 2)).astype(dtype)  # ldc = N + 2
                got, want = C0.copy(), C0.copy()
                ip = _ptr(init) if with_init else ffi.NULL
                assert mm(M, N, K, _ptr(A), lda, _ptr(W), ldw, trans, _ptr(got), N + 2, accumulate, ip, 1) == 0
                ref(M, N, K, _ptr(A), lda, _ptr(W), ldw, trans, _ptr(want), N + 2, accumulate, ip)
                # the padding columns beyond N are never touched
                assert np.array_equal(got[:, N:], C0[:, N:])
                # and the reference is what it says: C = [C] + [init] + A @ op(W)
                opw = W.T if trans else W
                expect = (C0[:, :N] if accumulate else 0) + (init if with_init else 0) + A[:, :K] @ opw
                np.testing.assert_allclose(want[:, :N], expect, rtol=rtol, atol=rtol * 10)
                np.testing.assert_allclose(got[:, :N], want[:, :N], rtol=rtol, atol=rtol * 10,
                                           err_msg="trans=%d accumulate=%d init=%s" % (trans, accumulate, with_init))


# ---------------------------------------------------------------- 2. sequence kernels vs reference

SEQ_SIZES = [  # T, B, I, H: few rows / row groups / ragged and exact panels
    (3, 1, 7, 16), (2, 3, 5, 17), (3, 4, 20, 33), (2, 5, 3, 8), (3, 8, 9, 40), (2, 9, 4, 24), (2, 17, 6, 5),
    (2, 16, 16, 64),
]


def _inputs(rng, cell, T, B, I, H, bias, dtype):
    G = GATES[cell]

    def r(*shape):
        return (rng.standard_normal(shape) * 0.5).astype(dtype)

    return dict(x=r(T, B, I), h0=r(B, H), c0=r(B, H) if cell == "lstm" else None,
                w_ih=r(G * H, I), w_hh=r(G * H, H),
                b_ih=r(G * H) if bias in ("both", "ih") else None,
                b_hh=r(G * H) if bias in ("both", "hh") else None)


def _close(name, got, want, dtype):
    if want is None:
        assert got is None, name
        return
    rtol, atol = (3e-4, 3e-5) if dtype == np.float32 else (1e-10, 1e-12)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", CELLS)
def test_sequence_kernels_match_reference(isa, cell, dtype):
    rng = np.random.default_rng(5)
    for k, (T, B, I, H) in enumerate(SEQ_SIZES):
        bias = ["both", "none", "ih", "hh"][k % 4]
        a = _inputs(rng, cell, T, B, I, H, bias, dtype)
        args = (a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
        out_n, c_n, s_n = KN.seq_forward(cell, *args)
        out_c, c_c, s_c = KC.seq_forward(cell, *args)
        what = "%s T,B,I,H=%s bias=%s" % (cell, (T, B, I, H), bias)
        _close("out " + what, out_c, out_n, dtype)
        _close("c_out " + what, c_c, c_n, dtype)
        for ws in ("gates", "tanh_c", "hn"):
            _close(ws + " " + what, getattr(s_c, ws), getattr(s_n, ws), dtype)
        d_out = rng.standard_normal((T, B, H)).astype(dtype)
        d_hn = rng.standard_normal((B, H)).astype(dtype)
        d_cn = rng.standard_normal((B, H)).astype(dtype) if cell == "lstm" else None
        for need_dx in (True, False):
            g_n = KN.seq_backward(cell, s_n, d_out, d_hn, d_cn, need_dx=need_dx, need_trace=True)
            g_c = KC.seq_backward(cell, s_c, d_out, d_hn, d_cn, need_dx=need_dx, need_trace=True)
            for key in ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh", "trace_h", "trace_c"):
                _close("%s %s need_dx=%s" % (key, what, need_dx), g_c[key], g_n[key], dtype)


# ---------------------------------------------------------------- 3. scratch reuse

@pytest.mark.parametrize("cell", CELLS)
def test_scratch_reuse_after_a_larger_call(cell):
    rng = np.random.default_rng(9)
    small = _inputs(rng, cell, 3, 2, 4, 6, "both", np.float64)
    args = lambda a: (a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])  # noqa: E731
    d = rng.standard_normal((3, 2, 6))
    _, _, s1 = KC.seq_forward(cell, *args(small))
    first = KC.seq_backward(cell, s1, d)
    big = _inputs(rng, cell, 7, 11, 13, 40, "both", np.float64)
    _, _, sb = KC.seq_forward(cell, *args(big))
    KC.seq_backward(cell, sb, rng.standard_normal((7, 11, 40)))
    _, _, s2 = KC.seq_forward(cell, *args(small))
    second = KC.seq_backward(cell, s2, d)
    for key, v in first.items():
        if v is None:
            assert second[key] is None
        else:
            assert np.array_equal(v, second[key]), key


# ---------------------------------------------------------------- 4. threads

def test_threaded_product_and_sequence_equal_single_thread():
    """With two threads a big per-step product splits its column panels between them;
    each element is still computed by one thread in the same order, so the results
    are bit-for-bit those of one thread (and skipped when built without OpenMP)."""
    import tinybptt
    if "openmp=yes" not in KC.build_info():
        pytest.skip("built without OpenMP")
    rng = np.random.default_rng(3)
    M, N, K = 16, 530, 256  # 2.2M multiply-adds: above the threading threshold; ragged last panel
    A = rng.standard_normal((M, K)).astype(np.float32)
    W = rng.standard_normal((N, K)).astype(np.float32)
    init = rng.standard_normal(N).astype(np.float32)
    before = tinybptt.get_num_threads()
    results = []
    a = _inputs(rng, "lstm", 3, 8, 16, 256, "both", np.float32)
    args = (a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    d = rng.standard_normal((3, 8, 256)).astype(np.float32)
    try:
        for nt in (1, 2):
            tinybptt.set_num_threads(nt)
            C = np.zeros((M, N), np.float32)
            assert lib.tb_recurrent_mm_f32(M, N, K, _ptr(A), K, _ptr(W), K, 1, _ptr(C), N, 0, _ptr(init), 1) == 0
            out, c_out, s = KC.seq_forward("lstm", *args)
            g = KC.seq_backward("lstm", s, d)
            results.append([C, out, c_out] + [g[k] for k in ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")])
    finally:
        tinybptt.set_num_threads(before)
    for u, v in zip(*results):
        assert np.array_equal(u, v)

"""The weight gradients of the C recurrent kernels against plain references.

The sequence backward ends with one product over all T*B rows per weight
(csrc/recurrent_impl.h, cell_weight_grads): dW = dgates^T @ [X | H_prev], or,
over many rows, [dW_ih | dW_hh]^T = [X | H_prev]^T @ dgates, added back
transposed.  Shapes
here are chosen so that every edge of that path is taken: T*B not a multiple of
any register tile or depth block (several depth blocks too), a gate dimension
G*H below one vector (< 16), I = 1, B = 1, T = 1, I + H above the in-place
limit of the GEMM's B operand (8 row panels of 14) and G*H above one column
block (384 floats).  The expected values come from the NumPy reference backend
run in float64 on the same inputs; the GEMM products the path uses
(op(A) = A^T) are also checked against the plain triple loop tb_gemm_ref.
"""
import numpy as np
import pytest

from kernel_cases import KN, KC, needs_c, rnn_args

pytestmark = needs_c

CELLS = ["rnn_tanh", "lstm", "gru"]
DTYPES = [np.float32, np.float64]
# (T, B, I, H); the kernels take the transposed product from T*B = 512 rows on
# (unless I + H is a multiple of 32 and wider than G*H), the plain one otherwise:
# both are covered
SHAPES = [
    (7, 3, 5, 9),      # T*B = 21: no tile multiple
    (1, 1, 1, 1),      # one step, one row, one input, one unit
    (1, 5, 1, 3),      # T = 1: out is never read; G*H < 16
    (9, 1, 1, 5),      # B = 1, I = 1, G*H < 16 (GRU 15)
    (73, 7, 3, 5),     # T*B = 511: the last plain one
    (128, 4, 1, 6),    # T*B = 512: the first transposed one
    (600, 1, 1, 5),    # B = 1, I = 1, G*H < 16, transposed
    (131, 7, 2, 13),   # T*B = 917: three depth blocks, I + H = 15
    (37, 15, 100, 20), # I + H = 120: the GEMM packs dgates instead of reading it in place
    (103, 5, 3, 100),  # G*H = 400 for the LSTM: two column blocks
    (40, 13, 20, 12),  # I + H = 32 > G*H for the RNN: plain over many rows, the others transposed
]


def _grads(K, cell, a, d_out, need_dx):
    out, _, saved = K.seq_forward(cell, a["x"], a["h"], a["c"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    return K.seq_backward(cell, saved, d_out, need_dx=need_dx, need_trace=False)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("T,B,I,H", SHAPES)
@pytest.mark.parametrize("cell", CELLS)
def test_weight_gradients_match_float64_reference(cell, T, B, I, H, dtype):
    rng = np.random.default_rng(T * 1000 + B * 100 + I * 10 + H)
    # weights ~ 1/sqrt(H): a gradient that neither explodes nor vanishes over T steps
    a = rnn_args(rng, cell, T, B, I, H, dtype=dtype, scale=min(0.5, 1 / np.sqrt(H)))
    d_out = (rng.standard_normal((T, B, H)) * 0.5).astype(dtype)
    a64 = {k: None if v is None else v.astype(np.float64) for k, v in a.items()}
    want = _grads(KN, cell, a64, d_out.astype(np.float64), need_dx=True)
    got = _grads(KC, cell, a, d_out, need_dx=True)
    for k in ("dw_ih", "dw_hh", "db_ih", "db_hh", "dx", "dh0"):
        g, w = got[k], want[k]
        assert g.dtype == dtype and g.shape == w.shape, k
        # float32: each entry is a sum over T*B terms of size ~1: error ~ eps * sqrt(T*B) * scale
        scale = max(1.0, float(np.abs(w).max()))
        tol = 1e-12 * scale if dtype == np.float64 else 2e-5 * np.sqrt(T * B) * scale
        err = np.abs(g - w)
        i = np.unravel_index(np.argmax(err), err.shape)
        assert err[i] <= tol, "%s %s: worst at %s: C %r, reference %r" % (cell, k, i, g[i], w[i])


@pytest.mark.parametrize("cell", CELLS)
def test_weight_gradients_accumulate_nothing_extra_without_dx(cell):
    """need_dx=False takes the same weight-gradient path: same dw as with dx."""
    rng = np.random.default_rng(5)
    a = rnn_args(rng, cell, 23, 4, 3, 11, dtype=np.float32)
    d_out = rng.standard_normal((23, 4, 11)).astype(np.float32)
    with_dx = _grads(KC, cell, a, d_out, need_dx=True)
    without = _grads(KC, cell, a, d_out, need_dx=False)
    assert without["dx"] is None
    for k in ("dw_ih", "dw_hh", "db_ih", "db_hh"):
        np.testing.assert_array_equal(without[k], with_dx[k])


# ------------------------------------------------------------------ the products alone

def _gemm(fn, ffi, ta, tb, M, N, K, A, B, beta, C, dtype):
    ct = "float *" if dtype == np.float32 else "double *"
    p = lambda a: ffi.cast(ct, ffi.from_buffer(a))
    return fn(ta, tb, M, N, K, 1.0, p(A), A.shape[1], p(B), B.shape[1], beta, p(C), C.shape[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("M,N,K", [(66, 256, 3200), (65, 64, 3200), (2, 192, 3200), (1, 12, 7),
                                   (13, 15, 50), (120, 80, 185), (130, 96, 917), (27, 400, 15),
                                   (140, 256, 1600), (141, 64, 3200)])  # B read in place up to 140 rows
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_transposed_a_products_match_plain_loop(M, N, K, beta, dtype):
    """C = [beta C] + A^T @ B, the form of every weight-gradient product, against tb_gemm_ref."""
    from tinybptt.kernels._ffi import ffi, lib
    sfx = "f32" if dtype == np.float32 else "f64"
    rng = np.random.default_rng(M + N + K)
    A = rng.standard_normal((K, M)).astype(dtype)
    B = rng.standard_normal((K, N)).astype(dtype)
    C0 = rng.standard_normal((M, N)).astype(dtype)
    got, want = C0.copy(), C0.copy()
    assert _gemm(getattr(lib, "tb_gemm_" + sfx), ffi, 1, 0, M, N, K, A, B, beta, got, dtype) == 0
    _gemm(getattr(lib, "tb_gemm_ref_" + sfx), ffi, 1, 0, M, N, K, A, B, beta, want, dtype)
    exact = A.astype(np.float64).T @ B.astype(np.float64) + beta * C0.astype(np.float64)
    tol = (1e-11 if dtype == np.float64 else 3e-6) * np.sqrt(K) * max(1.0, np.abs(exact).max())
    assert np.abs(got - exact).max() <= tol
    assert np.abs(want - exact).max() <= tol  # the plain loop itself is right
    assert np.abs(got - want).max() <= tol

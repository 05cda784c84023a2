"""Memory layouts: non-contiguous, negatively strided, broadcast (zero-stride),
transposed and misaligned NumPy inputs give the same results as contiguous
copies, on both backends; ``out`` overlapping an operand does not corrupt the
product.
"""
import numpy as np
import pytest

from tinybptt import nn
from tinybptt.kernels import numpy as KN
from kernel_cases import KC, needs_c, KERNELS, CELLS, rnn_args, seq


def _misaligned(a):
    """A C-contiguous copy of ``a`` whose data pointer is NOT aligned to its item size."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    m = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned and m.flags.c_contiguous
    return m


def _layouts(a):
    """Views of ``a`` (2-D) with the same values but other memory layouts."""
    M, N = a.shape
    big = np.zeros((2 * M + 1, 3 * N + 1), a.dtype)
    big[1::2, 1::3] = a
    rev = np.ascontiguousarray(a[::-1, ::-1])
    return {
        "strided": big[1::2, 1::3],
        "negative": rev[::-1, ::-1],
        "fortran": np.asfortranarray(a),
        "transposed": np.ascontiguousarray(a.T).T,
        "misaligned": _misaligned(a),
    }


@pytest.mark.parametrize("K", KERNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_is_layout_blind(K, dtype):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((37, 19)).astype(dtype)
    b = rng.standard_normal((19, 23)).astype(dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for (na, va) in [("contig", a), *_layouts(a).items()]:
        for (nb, vb) in [("contig", b), *_layouts(b).items()]:
            a0, b0 = va.copy(), vb.copy()
            got = K.matmul(va, vb)
            assert got.dtype == dtype and got.shape == (37, 23)
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg="a %s, b %s" % (na, nb))
            np.testing.assert_array_equal(va, a0)  # inputs untouched
            np.testing.assert_array_equal(vb, b0)
    # op(a) through the transpose flags, on strided views
    got = K.matmul(_layouts(a.T.copy())["negative"], _layouts(b.T.copy())["strided"], trans_a=True, trans_b=True)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    # zero-stride (broadcast) operands
    row = rng.standard_normal(19).astype(dtype)
    got = K.matmul(np.broadcast_to(row, (5, 19)), b)
    np.testing.assert_allclose(got, np.tile(row.astype(np.float64) @ b.astype(np.float64), (5, 1)), rtol=tol, atol=tol)


@pytest.mark.parametrize("K", KERNELS)
@pytest.mark.parametrize("n", [4, 300])
def test_matmul_out_overlapping_an_operand(K, n):
    """matmul(x, w, out=x): the C GEMM used to read rows it had already overwritten."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    for accumulate in (False, True):
        for which in ("a", "b", "a_transposed"):
            xs, ws = x.copy(), w.copy()
            if which == "a":
                want = x @ w + (x if accumulate else 0)
                got = K.matmul(xs, ws, out=xs, accumulate=accumulate)
            elif which == "b":
                want = x @ w + (w if accumulate else 0)
                got = K.matmul(xs, ws, out=ws, accumulate=accumulate)
            else:
                want = x.T @ w + (x if accumulate else 0)
                got = K.matmul(xs, ws, trans_a=True, out=xs, accumulate=accumulate)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9, err_msg="%s accumulate=%s" % (which, accumulate))


@pytest.mark.parametrize("K", KERNELS)
def test_activations_are_layout_blind(K):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 7)) * 3
    for name, want, dname in (("tanh", np.tanh(x), "tanh_backward"), ("sigmoid", 1 / (1 + np.exp(-x)), "sigmoid_backward"),
                              ("relu", np.maximum(x, 0), "relu_backward")):
        for lay, v in _layouts(x).items():
            np.testing.assert_allclose(getattr(K, name)(v), want, rtol=1e-14, atol=1e-15, err_msg=lay)
            y, dy = want, rng.standard_normal(x.shape)
            ref = getattr(KN, dname)(y, dy)
            for lay2, vy in _layouts(y).items():
                got = getattr(K, dname)(vy, _layouts(dy)[lay])
                np.testing.assert_allclose(got, ref, rtol=1e-14, atol=1e-15, err_msg="%s %s" % (lay, lay2))
        np.testing.assert_allclose(getattr(K, name)(np.broadcast_to(x[0], (4, 7))), np.broadcast_to(want[0], (4, 7)),
                                   rtol=1e-14, atol=1e-15)


def _view3(a, how):
    """A view of the 3-D or lower array ``a`` with the same values and another layout."""
    if how == "negative":
        return np.ascontiguousarray(a[::-1])[::-1]
    if how == "strided":
        big = np.zeros((a.shape[0] * 2,) + a.shape[1:], a.dtype)
        big[::2] = a
        return big[::2]
    if how == "fortran":
        return np.asfortranarray(a)
    return _misaligned(a)


@needs_c
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("how", ["negative", "strided", "fortran", "misaligned"])
def test_recurrent_kernels_are_layout_blind(cell, how):
    rng = np.random.default_rng(4)
    a = rnn_args(rng, cell, 4, 3, 2, 5)
    ref_out, ref_c, ref_saved = seq(KN, cell, a)
    d_out = rng.standard_normal(ref_out.shape)
    ref = KN.seq_backward(cell, ref_saved, d_out)
    views = {k: None if v is None else _view3(v, how) for k, v in a.items()}
    for K in (KN, KC):
        out, c_out, saved = seq(K, cell, views)
        np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-13)
        g = K.seq_backward(cell, saved, _view3(d_out, how))
        for k, v in ref.items():
            if v is not None:
                np.testing.assert_allclose(g[k], v, rtol=1e-11, atol=1e-12, err_msg="%s %s" % (K.NAME, k))
        h, c, s = K.step_forward(cell, views["x"][0], views["h"], views["c"], views["w_ih"], views["w_hh"],
                                 views["b_ih"], views["b_hh"])
        np.testing.assert_allclose(h, ref_out[0], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("mode", ["sequence", "cell", "ops"])
def test_layers_take_non_contiguous_inputs(backend, mode):
    rng = np.random.default_rng(5)
    nn.manual_seed(0)
    lstm = nn.LSTM(3, 4, mode=mode)
    x = rng.standard_normal((6, 2, 3))
    h0, c0 = rng.standard_normal((1, 2, 4)), rng.standard_normal((1, 2, 4))
    out, (h, c) = lstm(x, (h0, c0))
    (out * out).sum().backward()
    want = [out.data.copy(), h.data.copy(), c.data.copy()] + [p.grad.copy() for p in lstm.parameters()]
    for p in lstm.parameters():
        p.grad = None
    xv = np.ascontiguousarray(x[::-1])[::-1]                      # negative strides
    h0v = np.asfortranarray(h0)
    c0v = np.zeros((1, 2, 8))
    c0v[:, :, ::2] = c0
    out, (h, c) = lstm(xv, (h0v, c0v[:, :, ::2]))
    (out * out).sum().backward()
    got = [out.data, h.data, c.data] + [p.grad for p in lstm.parameters()]
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)
    # batch_first with a transposed (non-contiguous) input
    bf = nn.GRU(3, 4, batch_first=True, mode=mode)
    o1, _ = bf(np.ascontiguousarray(x.transpose(1, 0, 2)))
    o2, _ = bf(x.transpose(1, 0, 2))
    np.testing.assert_array_equal(o1.data, o2.data)

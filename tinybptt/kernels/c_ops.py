"""The C backend's primitive ops: matmul, bmm, the activations with their backward passes,
and the embedding's backward pass.

Each function has the same signature and semantics as its twin in
``kernels/numpy_ops.py`` (the reference).  Nothing reaches C before its dtype,
rank, shape and contiguity are checked (kernels/validate.py, shared with the
reference); non-contiguous inputs are copied, F-contiguous matmul operands are
passed as transposes instead of copied.  A kernel that cannot get its scratch
memory raises MemoryError naming the op.
"""
import numpy as np

from . import validate as V
from ._ffi import F32, F64, check, ffi, fn, from_buffer, plain, ptr, table

# ---------------------------------------------------------------- matmul

def _as_operand(a, trans):
    """(C-contiguous array, trans flag) describing the same op(a), copying only if needed."""
    if a.flags.aligned:  # a misaligned view (np.frombuffer at an odd offset) is copied: C assumes alignment
        if a.flags.c_contiguous:
            return a, trans
        if a.flags.f_contiguous:  # a is the transpose of a C-contiguous array
            return a.T, not trans
    return np.array(a, order="C"), trans  # a fresh, aligned copy


_ndarray = np.ndarray
_GEMM = table("gemm")


def matmul(a, b, trans_a=False, trans_b=False, out=None, accumulate=False):
    """``op(a) @ op(b)`` for 2-D float arrays; see kernels.numpy.matmul."""
    if out is None and type(a) is _ndarray and type(b) is _ndarray:
        # the common case (an op's forward or backward): checked in a few comparisons;
        # anything unusual takes the validating path below, which names the problem
        dt = a.dtype
        if (dt is F32 or dt is F64) and b.dtype is dt and a.ndim == 2 and b.ndim == 2:
            fa, fb = a.flags, b.flags
            # a C-contiguous operand is used as it is; an F-contiguous one is the transpose
            # of a C-contiguous array (its .T), passed with the transpose flag flipped
            if fa.aligned and fb.aligned and (fa.c_contiguous or fa.f_contiguous) \
                    and (fb.c_contiguous or fb.f_contiguous):
                pa, ta = (a, trans_a) if fa.c_contiguous else (a.T, not trans_a)
                pb, tb = (b, trans_b) if fb.c_contiguous else (b.T, not trans_b)
                sa, sb = pa.shape, pb.shape
                M, K = (sa[1], sa[0]) if ta else sa
                Kb, N = (sb[1], sb[0]) if tb else sb
                if K == Kb:
                    out = np.empty((M, N), dt)
                    if M and N:
                        ct, gemm = _GEMM[dt]
                        check(gemm(ta, tb, M, N, K, 1.0, from_buffer(ct, pa), sa[1],
                                   from_buffer(ct, pb), sb[1], 0.0, from_buffer(ct, out), N), "matmul")
                    return out
    M, N, K, dtype = V.matmul_shapes("matmul", a, b, trans_a, trans_b)
    a, trans_a = _as_operand(a, trans_a)
    b, trans_b = _as_operand(b, trans_b)
    beta = 0.0
    if out is None:
        out = np.empty((M, N), dtype=dtype)
    else:
        V.check_out("matmul", out, (M, N), dtype)
        if M and N and (np.may_share_memory(out, a) or np.may_share_memory(out, b)):
            # out overlaps an operand (matmul(x, w, out=x)): the GEMM would read
            # what it already overwrote, so compute into a fresh array first
            r = matmul(a, b, trans_a, trans_b)
            if accumulate:
                out += r
            else:
                out[...] = r
            return out
        beta = 1.0 if accumulate else 0.0
    if M == 0 or N == 0:
        return out
    check(fn("gemm", dtype)(int(trans_a), int(trans_b), M, N, K, 1.0,
                            ptr(a), a.shape[1], ptr(b), b.shape[1], beta, ptr(out), N), "matmul")
    return out


def bmm(a, b):
    """Batched matmul ``a[s] @ b[s]`` in one C call that loops over s; see kernels.numpy.bmm."""
    S, M, N, K, dtype = V.bmm_shapes("bmm", a, b)
    a, b = V.contiguous(a), V.contiguous(b)
    out = np.empty((S, M, N), dtype=dtype)
    if out.size:
        check(fn("bmm", dtype)(S, M, N, K, ptr(a), ptr(b), ptr(out)), "bmm")
    return out


# ---------------------------------------------------------------- activations

def _c_aligned(f):
    return f.c_contiguous and f.aligned


def _unary(name, funcs, x):
    """y = f(x) elementwise.  The common case (a C-contiguous, aligned float ndarray) costs
    a few comparisons; anything else is validated (and copied if strided) first."""
    if type(x) is not _ndarray or x.dtype not in funcs or not _c_aligned(x.flags):
        V.check_float(name, x)
        x = V.contiguous(x)
    ct, f = funcs[x.dtype]
    y = np.empty(x.shape, x.dtype)
    f(x.size, from_buffer(ct, x), from_buffer(ct, y))
    return y


def _unary_backward(name, funcs, y, dy):
    """dx from the forward's output y and the gradient dy (same shape and dtype)."""
    if not (plain(y) and plain(dy) and y.dtype is dy.dtype and y.shape == dy.shape):
        V.check_activation_backward(name, y, dy)
        y, dy = V.contiguous(y), V.contiguous(dy)
    ct, f = funcs[y.dtype]
    dx = np.empty(dy.shape, dy.dtype)
    f(y.size, from_buffer(ct, y), from_buffer(ct, dy), from_buffer(ct, dx))
    return dx


_TANH, _TANH_B = table("tanh"), table("tanh_backward")
_SIGMOID, _SIGMOID_B = table("sigmoid"), table("sigmoid_backward")
_RELU, _RELU_B = table("relu"), table("relu_backward")


def tanh(x):
    return _unary("tanh", _TANH, x)


def tanh_backward(y, dy):
    return _unary_backward("tanh_backward", _TANH_B, y, dy)


def sigmoid(x):
    return _unary("sigmoid", _SIGMOID, x)


def sigmoid_backward(y, dy):
    return _unary_backward("sigmoid_backward", _SIGMOID_B, y, dy)


def relu(x):
    return _unary("relu", _RELU, x)


def relu_backward(y, dy):
    return _unary_backward("relu_backward", _RELU_B, y, dy)


# ---------------------------------------------------------------- embedding

_EMBEDDING_B = table("embedding_backward")
_I64 = np.dtype(np.int64)
_IDS = ffi.typeof("int64_t[]")


def embedding_backward(ids, grad, num_embeddings):
    """dweight (num_embeddings, E): row v the sum of the rows of grad whose id is v, in the
    C order of ``ids``, bit for bit the reference's sum; see kernels.numpy.embedding_backward."""
    E = V.embedding_backward_args("embedding_backward", ids, grad, num_embeddings)
    ids = V.contiguous(ids.astype(_I64, copy=False))  # (every id is in range: int64 holds it)
    grad = V.contiguous(grad)
    dweight = np.zeros((num_embeddings, E), dtype=grad.dtype)  # the kernel accumulates into it
    if ids.size and E:
        ct, f = _EMBEDDING_B[grad.dtype]
        f(ids.size, E, from_buffer(_IDS, ids), from_buffer(ct, grad), from_buffer(ct, dweight))
    return dweight

"""The C backend: validate in Python, then make one call into the C library.

Each function here has the same signature and semantics as its twin in
``kernels/numpy.py``.  Nothing reaches C before its dtype, rank, shape and
contiguity are checked; non-contiguous inputs are copied, F-contiguous matmul
operands are passed as transposes instead of copied.
"""
import numpy as np

from ..errors import ShapeError, describe
from . import validate as V
from .._tinybptt_c import ffi, lib

NAME = "c"

_CTYPE = {np.dtype(np.float32): ffi.typeof("float[]"), np.dtype(np.float64): ffi.typeof("double[]")}
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_from_buffer = ffi.from_buffer


def ptr(a):
    """A C pointer to the data of C-contiguous float array ``a`` (None -> NULL)."""
    if a is None:
        return ffi.NULL
    # from_buffer is ~7x cheaper than a.ctypes.data and keeps ``a`` alive while in use;
    # a pre-parsed type and no keyword argument (require_writable=False is the default)
    # halve its cost again
    return _from_buffer(_CTYPE[a.dtype], a)


_FUNCS = {}


def fn(name, dtype):
    """The C function ``tb_<name>_<f32|f64>`` (looked up once)."""
    f = _FUNCS.get((name, dtype))
    if f is None:
        f = _FUNCS[(name, dtype)] = getattr(lib, "tb_%s_%s" % (name, _SUFFIX[dtype]))
    return f


def build_info():
    """How the extension was built and which GEMM micro-kernel was dispatched."""
    return ffi.string(lib.tb_build_info()).decode()


def set_num_threads(n):
    lib.tb_set_num_threads(int(n))


def get_num_threads():
    return lib.tb_get_num_threads()


def set_flush_to_zero(on):
    lib.tb_set_flush_to_zero(1 if on else 0)


def get_flush_to_zero():
    return bool(lib.tb_get_flush_to_zero())


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
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


#: Per dtype: (the C array type for from_buffer, the C function) -- one dict lookup per
#: call on the hot paths below, where ``fn(name, dtype)`` would cost a call and a tuple key.
_GEMM = {dt: (_CTYPE[dt], getattr(lib, "tb_gemm_" + _SUFFIX[dt])) for dt in _CTYPE}


def matmul(a, b, trans_a=False, trans_b=False, out=None, accumulate=False):
    """``op(a) @ op(b)`` for 2-D float arrays; see kernels.numpy.matmul."""
    if out is None and type(a) is _ndarray and type(b) is _ndarray:
        # the common case (an op's forward or backward): checked in a few comparisons;
        # anything unusual takes the validating path below, which names the problem
        dt = a.dtype
        if (dt is _F32 or dt is _F64) and b.dtype is dt and a.ndim == 2 and b.ndim == 2:
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
                        gemm(ta, tb, M, N, K, 1.0, _from_buffer(ct, pa), sa[1],
                             _from_buffer(ct, pb), sb[1], 0.0, _from_buffer(ct, out), N)
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
    fn("gemm", dtype)(
        int(trans_a), int(trans_b), M, N, K, 1.0,
        ptr(a), a.shape[1], ptr(b), b.shape[1], beta, ptr(out), N,
    )
    return out


def bmm(a, b):
    """Batched matmul ``a[s] @ b[s]`` in one C call that loops over s; see kernels.numpy.bmm."""
    S, M, N, K, dtype = V.bmm_shapes("bmm", a, b)
    a, b = V.contiguous(a), V.contiguous(b)
    out = np.empty((S, M, N), dtype=dtype)
    if out.size and fn("bmm", dtype)(S, M, N, K, ptr(a), ptr(b), ptr(out)):
        raise MemoryError("bmm: the C kernel could not allocate its scratch memory (inputs %s)" % describe(a, b))
    return out


# ---------------------------------------------------------------- activations

def _plain(a):
    """``a`` is an aligned, C-contiguous float32/float64 ndarray (usable by C as it is)."""
    if type(a) is not _ndarray:
        return False
    dt = a.dtype
    if dt is not _F32 and dt is not _F64:
        return False
    f = a.flags
    return f.c_contiguous and f.aligned


def _c_aligned(f):
    return f.c_contiguous and f.aligned


def _table(name):
    """{dtype: (C array type, C function tb_<name>_<f32|f64>)} for the elementwise kernels."""
    return {dt: (_CTYPE[dt], getattr(lib, "tb_%s_%s" % (name, _SUFFIX[dt]))) for dt in _CTYPE}


def _unary(name, table, x):
    """y = f(x) elementwise.  The common case (a C-contiguous, aligned float ndarray) costs
    a few comparisons; anything else is validated (and copied if strided) first."""
    if type(x) is not _ndarray or x.dtype not in table or not _c_aligned(x.flags):
        V.check_float(name, x)
        x = V.contiguous(x)
    ct, f = table[x.dtype]
    y = np.empty(x.shape, x.dtype)
    f(x.size, _from_buffer(ct, x), _from_buffer(ct, y))
    return y


def _unary_backward(name, table, y, dy):
    """dx from the forward's output y and the gradient dy (same shape and dtype)."""
    if not (_plain(y) and _plain(dy) and y.dtype is dy.dtype and y.shape == dy.shape):
        V.check_float(name, y, dy)
        if y.shape != dy.shape:
            raise ShapeError("%s: y and dy must have the same shape, got %s" % (name, describe(y, dy)))
        y, dy = V.contiguous(y), V.contiguous(dy)
    ct, f = table[y.dtype]
    dx = np.empty(dy.shape, dy.dtype)
    f(y.size, _from_buffer(ct, y), _from_buffer(ct, dy), _from_buffer(ct, dx))
    return dx


_TANH, _TANH_B = _table("tanh"), _table("tanh_backward")
_SIGMOID, _SIGMOID_B = _table("sigmoid"), _table("sigmoid_backward")
_RELU, _RELU_B = _table("relu"), _table("relu_backward")


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
from .c_rnn import seq_forward, seq_backward, step_forward, step_backward  # noqa: E402,F401

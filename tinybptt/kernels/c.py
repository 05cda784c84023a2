"""The C backend: validate in Python, then make one call into the C library.

Each function here has the same signature and semantics as its twin in
``kernels/numpy.py``.  Nothing reaches C before its dtype, rank, shape and
contiguity are checked; non-contiguous inputs are copied, F-contiguous matmul
operands are passed as transposes instead of copied.
"""
import numpy as np

from ..errors import ShapeError, describe
from . import _validate as V
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


def _plain_operand(a, trans):
    """(C-contiguous array, trans) for an aligned C- or F-contiguous 2-D float ndarray; else None."""
    f = a.flags
    if not f.aligned:
        return None
    if f.c_contiguous:
        return a, trans
    if f.f_contiguous:
        return a.T, not trans
    return None


def matmul(a, b, trans_a=False, trans_b=False, out=None, accumulate=False):
    """``op(a) @ op(b)`` for 2-D float arrays; see kernels.numpy.matmul."""
    if out is None and type(a) is _ndarray and type(b) is _ndarray:
        # the common case (an op's forward or backward): checked in a few comparisons;
        # anything unusual takes the validating path below, which names the problem
        dt = a.dtype
        if (dt is _F32 or dt is _F64) and b.dtype is dt and a.ndim == 2 and b.ndim == 2:
            pa, pb = _plain_operand(a, trans_a), _plain_operand(b, trans_b)
            if pa is not None and pb is not None:
                (a, ta), (b, tb) = pa, pb
                M, K = (a.shape[1], a.shape[0]) if ta else a.shape
                Kb, N = (b.shape[1], b.shape[0]) if tb else b.shape
                if K == Kb:
                    out = np.empty((M, N), dt)
                    if M and N:
                        fn("gemm", dt)(int(ta), int(tb), M, N, K, 1.0, _from_buffer(_CTYPE[dt], a), a.shape[1],
                                       _from_buffer(_CTYPE[dt], b), b.shape[1], 0.0,
                                       _from_buffer(_CTYPE[dt], out), N)
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


def _unary(name, x):
    if not _plain(x):
        V.check_float(name, x)
        x = V.contiguous(x)
    dt = x.dtype
    y = np.empty(x.shape, dt)
    ct = _CTYPE[dt]
    fn(name, dt)(x.size, _from_buffer(ct, x), _from_buffer(ct, y))
    return y


def _unary_backward(name, y, dy):
    if not (_plain(y) and _plain(dy) and y.dtype is dy.dtype and y.shape == dy.shape):
        V.check_float(name, y, dy)
        if y.shape != dy.shape:
            raise ShapeError("%s: y and dy must have the same shape, got %s" % (name, describe(y, dy)))
        y, dy = V.contiguous(y), V.contiguous(dy)
    dt = y.dtype
    dx = np.empty(dy.shape, dt)
    ct = _CTYPE[dt]
    fn(name, dt)(y.size, _from_buffer(ct, y), _from_buffer(ct, dy), _from_buffer(ct, dx))
    return dx


def tanh(x):
    return _unary("tanh", x)


def tanh_backward(y, dy):
    return _unary_backward("tanh_backward", y, dy)


def sigmoid(x):
    return _unary("sigmoid", x)


def sigmoid_backward(y, dy):
    return _unary_backward("sigmoid_backward", y, dy)


def relu(x):
    return _unary("relu", x)


def relu_backward(y, dy):
    return _unary_backward("relu_backward", y, dy)
from .c_rnn import seq_forward, seq_backward, step_forward, step_backward  # noqa: E402,F401

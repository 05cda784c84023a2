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


def matmul(a, b, trans_a=False, trans_b=False, out=None, accumulate=False):
    """``op(a) @ op(b)`` for 2-D float arrays; see kernels.numpy.matmul."""
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

def _unary(name, x):
    V.check_float(name, x)
    x = V.contiguous(x)
    y = np.empty_like(x)
    fn(name, x.dtype)(x.size, ptr(x), ptr(y))
    return y


def _unary_backward(name, y, dy):
    V.check_float(name, y, dy)
    if y.shape != dy.shape:
        raise ShapeError("%s: y and dy must have the same shape, got %s" % (name, describe(y, dy)))
    y, dy = V.contiguous(y), V.contiguous(dy)
    dx = np.empty_like(dy)
    fn(name, y.dtype)(y.size, ptr(y), ptr(dy), ptr(dx))
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

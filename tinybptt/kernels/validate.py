"""Input validation shared by both backends, so both raise the same errors.

A kernel receives NumPy arrays.  Before anything reaches C, these helpers make
sure dtypes are float32/float64 and agree, ranks and shapes fit, indices are in
range, and arrays are C-contiguous (copying when they are not).  Messages name
the op, the shapes and the dtypes.
"""
import numbers

import numpy as np

from ..errors import DTypeError, ShapeError, describe, integer_at_least

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: The most threads the kernels accept (the C library's TB_MAX_THREADS).
MAX_THREADS = 256


def check_float(op, *arrays):
    """All non-None arrays are float32 or float64, and all the same dtype; returns that dtype."""
    dtype = None
    for a in arrays:
        if a is None:
            continue
        if not isinstance(a, np.ndarray):
            what = ("a NumPy scalar of dtype %s" % a.dtype if isinstance(a, np.generic)
                    else "a %s" % type(a).__name__)
            raise DTypeError("%s: expected NumPy arrays, got %s; pass np.asarray(value, dtype=np.float64)"
                             % (op, what))
        if a.dtype not in FLOAT_DTYPES:
            raise DTypeError(
                "%s: unsupported dtype %s (got %s); kernels take float32 or float64. "
                "Convert with .astype(np.float64)." % (op, a.dtype, describe(*[x for x in arrays if x is not None]))
            )
        if dtype is None:
            dtype = a.dtype
        elif a.dtype != dtype:
            raise DTypeError(
                "%s: mixed dtypes (%s); cast every input to one dtype first."
                % (op, describe(*[x for x in arrays if x is not None]))
            )
    return dtype


def check_ndim(op, name, a, ndim):
    if a.ndim != ndim:
        raise ShapeError("%s: %s must be %d-D, got shape %s" % (op, name, ndim, tuple(a.shape)))


def check_shape(op, name, a, shape):
    """``a.shape == shape``; ``None`` entries in ``shape`` match anything."""
    if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
        want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
        raise ShapeError("%s: %s must have shape %s, got %s" % (op, name, want, tuple(a.shape)))


def check_activation_backward(op, y, dy):
    """An activation's backward takes its forward's output y and the gradient dy: same float dtype and shape."""
    check_float(op, y, dy)
    if y.shape != dy.shape:
        raise ShapeError("%s: y and dy must have the same shape, got %s" % (op, describe(y, dy)))


def contiguous(a):
    """``a`` itself if a C-contiguous, aligned, plain ndarray, else a C-contiguous copy.

    Copies views with gaps or negative strides (``x[::-1]``, ``x[:, ::2]``,
    ``x.T``), broadcast views with zero strides, and misaligned views
    (``np.frombuffer`` at an odd byte offset), so C always gets one aligned block;
    and ndarray subclasses (``np.matrix``, whose ``*`` is a matrix product and whose
    rows stay 2-D), so the NumPy reference computes what C computes.
    """
    if a is None or (type(a) is np.ndarray and a.flags.c_contiguous and a.flags.aligned):
        return a
    return np.array(a, order="C")  # always a fresh, aligned copy (ascontiguousarray keeps a misaligned one)


def matmul_shapes(op, a, b, trans_a, trans_b):
    """Validate a 2-D matmul and return (M, N, K)."""
    dtype = check_float(op, a, b)
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError("%s: expects 2-D arrays, got %s" % (op, describe(a, b)))
    M, Ka = (a.shape[1], a.shape[0]) if trans_a else a.shape
    Kb, N = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if Ka != Kb:
        raise ShapeError(
            "%s: inner dimensions differ: op(a) is (%d, %d), op(b) is (%d, %d) (trans_a=%s, trans_b=%s; inputs %s)"
            % (op, M, Ka, Kb, N, trans_a, trans_b, describe(a, b))
        )
    return M, N, Ka, dtype


def bmm_shapes(op, a, b):
    """Validate a batched matmul, a (S, M, K) @ b (S, K, N), and return (S, M, N, K, dtype)."""
    dtype = check_float(op, a, b)
    if a.ndim != 3 or b.ndim != 3:
        raise ShapeError("%s: expects 3-D arrays a (S, M, K) and b (S, K, N), got %s" % (op, describe(a, b)))
    (S, M, K), (Sb, Kb, N) = a.shape, b.shape
    if S != Sb:
        raise ShapeError("%s: batch sizes differ: a has %d matrices, b has %d (inputs %s)"
                         % (op, S, Sb, describe(a, b)))
    if K != Kb:
        raise ShapeError("%s: inner dimensions differ: a[s] is (%d, %d), b[s] is (%d, %d) (inputs %s)"
                         % (op, M, K, Kb, N, describe(a, b)))
    return S, M, N, K, dtype


def check_ids(op, ids, num_embeddings):
    """``ids`` (an ndarray of any shape) holds integers, each in [0, num_embeddings): the rows of a
    table of ``num_embeddings`` rows that they index.  Else DTypeError / ShapeError naming ``op``."""
    if ids.dtype.kind not in "iu":  # (bool is not: True would pass as row 1)
        raise DTypeError("%s: ids must be integers, got dtype %s" % (op, ids.dtype))
    if ids.size:
        lo, hi = ids.min(), ids.max()
        if lo < 0 or hi >= num_embeddings:
            raise ShapeError("%s: ids must lie in [0, %d), got values from %d to %d (ids %s)"
                             % (op, num_embeddings, lo, hi, describe(ids)))


def embedding_backward_args(op, ids, grad, num_embeddings):
    """Validate an embedding's backward pass and return ``E``, the embedding size.

    ``ids``: an integer ndarray of any shape, every id in [0, num_embeddings);
    ``grad``: a float32/float64 array of shape ``ids.shape + (E,)``;
    ``num_embeddings``: an integer >= 1 (the rows of the gradient to make).
    """
    if not isinstance(ids, np.ndarray):
        raise DTypeError("%s: ids must be an integer NumPy array, got a %s" % (op, type(ids).__name__))
    integer_at_least(op, "num_embeddings", num_embeddings, 1, error=ShapeError)
    check_ids(op, ids, num_embeddings)
    check_float(op, grad)
    if grad.ndim != ids.ndim + 1 or grad.shape[:-1] != ids.shape:
        raise ShapeError("%s: grad must have the shape of ids plus one axis, %s + (E,), got %s (ids %s)"
                         % (op, ids.shape, describe(grad), describe(ids)))
    return grad.shape[-1]


def check_out(op, out, shape, dtype):
    """``out`` given to a kernel must be a C-contiguous array of exactly ``shape`` and ``dtype``."""
    check_shape(op, "out", out, shape)
    if out.dtype != dtype:
        raise DTypeError("%s: out has dtype %s but the result is %s; pass an out of dtype %s" % (op, out.dtype, dtype, dtype))
    if not (out.flags.c_contiguous and out.flags.writeable and out.flags.aligned):
        raise ShapeError("%s: out must be a writeable, aligned, C-contiguous array, got %s (strides %s%s); "
                         "pass np.empty(%s, dtype=np.%s)" % (op, describe(out), out.strides,
                                                               "" if out.flags.writeable else ", read-only",
                                                               tuple(shape), dtype))


def check_num_threads(op, n):
    """``n`` is a whole number of threads from 1 to MAX_THREADS; returns it as an int."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError("%s: n must be an int (a number of threads), got %s %r" % (op, type(n).__name__, n))
    if not 1 <= n <= MAX_THREADS:
        raise ValueError("%s: n must be between 1 and %d threads, got %d" % (op, MAX_THREADS, n))
    return int(n)

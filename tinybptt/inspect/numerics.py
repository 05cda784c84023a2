"""Floating-point helpers for looking at tiny gradients.

A gradient that shrinks by a constant factor at every time step soon leaves
the *normal* range of its floating-point type (below ``np.finfo(dtype).tiny``:
about 2.2e-308 in float64, 1.2e-38 in float32).  It first becomes *subnormal*
(fewer bits of precision, and slow on many CPUs), then flushes to exactly zero.
These helpers measure such arrays without themselves underflowing: the plain
``sqrt(sum(g**2))`` of a vector of 1e-200s is 0.0 in float64, but its norm is not.
"""
import math

import numpy as np

from ..errors import DTypeError


def smallest_normal(dtype):
    """The smallest positive normal number of ``dtype`` (2.2e-308 for float64)."""
    return float(np.finfo(np.dtype(dtype)).tiny)


def max_abs(a):
    """Largest absolute value of ``a`` (0.0 for an empty array), as a Python float."""
    a = np.asarray(a)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a)))


def _float64(who, a):
    """``a`` as a float64 array for a norm: complex values by their moduli (a plain cast would drop
    the imaginary part), float32 subnormals as the normal float64 numbers they are."""
    a = np.asarray(a)
    if a.dtype.kind == "c":
        return np.abs(a).astype(np.float64, copy=False)
    if a.dtype.kind not in "biuf":
        raise DTypeError("%s: expected numbers, got an array of dtype %s" % (who, a.dtype))
    return a.astype(np.float64, copy=False)


def log10_norm(a):
    """log10 of the Euclidean norm of ``a``, exact even when the norm is subnormal.

    Returns -inf for an all-zero (or empty) array, +inf/NaN when ``a`` holds
    Inf/NaN.  The array is scaled by its largest magnitude before squaring, so
    neither underflow nor overflow can happen in between.
    """
    a = _float64("log10_norm", a)
    if a.size == 0:
        return -math.inf
    m = float(np.max(np.abs(a)))
    if m == 0.0:
        return -math.inf
    if not math.isfinite(m):
        return m if not math.isnan(m) else math.nan
    s = a / m
    return math.log10(m) + 0.5 * math.log10(float(np.dot(s.ravel(), s.ravel())))


def norm(a):
    """Euclidean norm of ``a`` without intermediate underflow or overflow (a Python float).

    It can still be 0.0 or a subnormal number when the true norm is that small;
    use ``log10_norm`` to compare such values.
    """
    a = _float64("norm", a)
    if a.size == 0:
        return 0.0
    m = float(np.max(np.abs(a)))
    if m == 0.0 or not math.isfinite(m):
        return m
    s = a / m
    return m * math.sqrt(float(np.dot(s.ravel(), s.ravel())))


def subnormal_mask(a):
    """Boolean mask of the subnormal entries of the float array ``a`` (non-zero, below the normal range)."""
    a = np.asarray(a)
    if a.dtype.kind != "f":
        return np.zeros(a.shape, dtype=bool)
    absa = np.abs(a)
    return (absa > 0) & (absa < np.finfo(a.dtype).tiny)


def count_subnormal(a):
    """How many entries of ``a`` are subnormal."""
    return int(np.count_nonzero(subnormal_mask(a)))


def power_of_two_scale(m):
    """The integer e such that ``m * 2**e`` lies in [0.5, 1): exact rescaling of a magnitude ``m > 0``."""
    _, e = math.frexp(m)
    return -e


def fmt_sci(x, digits=2):
    """A compact scientific rendering that also copes with 0, inf, nan and log10 values."""
    if x is None:
        return "-"
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    if x == 0:
        return "0"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return "%.*e" % (digits, x)


def fmt_pow10(log10_value, digits=2):
    """Render a number given by its log10 as ``1.23e-456`` (works far outside float range)."""
    if log10_value is None:
        return "-"
    if math.isnan(log10_value):
        return "nan"
    if math.isinf(log10_value):
        return "0" if log10_value < 0 else "inf"
    e = math.floor(log10_value)
    mant = 10 ** (log10_value - e)
    if round(mant, digits) >= 10:
        mant, e = mant / 10, e + 1
    return "%.*fe%+03d" % (digits, mant, e)


# --------------------------------------------------------------------------- BLAS threads

_blas_fns = None


def _find_blas_thread_fns():
    """(get, set) thread-count functions of the OpenBLAS that NumPy loaded, or None."""
    global _blas_fns
    if _blas_fns is not None:
        return _blas_fns or None
    _blas_fns = ()
    try:
        import ctypes
        import glob
        import os

        libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
        for path in glob.glob(os.path.join(libdir, "*openblas*")):
            lib = ctypes.CDLL(path)
            for get, set_ in (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                              ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                              ("openblas_get_num_threads", "openblas_set_num_threads")):
                if hasattr(lib, get) and hasattr(lib, set_):
                    g, s = getattr(lib, get), getattr(lib, set_)
                    g.restype = ctypes.c_int
                    s.argtypes = [ctypes.c_int]
                    _blas_fns = (g, s)
                    return _blas_fns
    except Exception:  # best effort: any failure just leaves the thread count alone
        pass
    return None


class blas_threads:
    """Context manager: run NumPy's OpenBLAS with ``n`` threads inside the block (best effort).

    The Jacobian analysis does hundreds of small SVDs and matrix products; on a busy
    machine OpenBLAS's threads fight each other and make them 50x slower.
    """

    def __init__(self, n=1):
        self.n = n
        self.prev = None

    def __enter__(self):
        fns = _find_blas_thread_fns()
        if fns:
            self.prev = fns[0]()
            fns[1](self.n)
        return self

    def __exit__(self, *exc):
        fns = _find_blas_thread_fns()
        if fns and self.prev is not None:
            fns[1](self.prev)

"""The cffi binding of the C backend, written once.

``kernels/c_ops.py``, ``kernels/c_rnn.py`` and ``kernels/c_runtime.py`` reach
the compiled library (``tinybptt._tinybptt_c``, built from csrc/ by
csrc/build_ffi.py) only through what is defined here: ``lib`` and ``ffi``,
pointers to NumPy arrays, the typed C functions, and the check that turns a
kernel's nonzero return code into a MemoryError.

Speed.  These run once per kernel call, often for microsecond kernels, so they
are written to be cheap: ``ffi.from_buffer`` with a pre-parsed array type (about
7x cheaper than ``a.ctypes.data``, and it keeps the array alive while the
pointer is in use) and one dict lookup for a C function.
"""
import numpy as np

from .._tinybptt_c import ffi, lib

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
#: the C array type that ``from_buffer`` needs, per dtype
CTYPE = {F32: ffi.typeof("float[]"), F64: ffi.typeof("double[]")}
#: the suffix of the C function for each dtype: tb_gemm_f32, tb_gemm_f64
SUFFIX = {F32: "f32", F64: "f64"}
NULL = ffi.NULL
from_buffer = ffi.from_buffer
_ndarray = np.ndarray


def ptr(a):
    """A C pointer to the data of the C-contiguous float array ``a`` (None -> NULL)."""
    if a is None:
        return NULL
    return from_buffer(CTYPE[a.dtype], a)  # (require_writable=False is the default, and a keyword costs)


def plain(a, dtype=None):
    """``a`` is an aligned, C-contiguous float32/float64 ndarray (of ``dtype`` if given):
    usable by C as it is.  A few comparisons, for the fast paths of the wrappers."""
    if type(a) is not _ndarray:
        return False
    dt = a.dtype
    if (dt is not F32 and dt is not F64) or (dtype is not None and dt != dtype):
        return False
    f = a.flags
    return f.c_contiguous and f.aligned


_FUNCS = {}


def fn(name, dtype):
    """The C function ``tb_<name>_<f32|f64>`` for ``dtype`` (looked up once)."""
    f = _FUNCS.get((name, dtype))
    if f is None:
        f = _FUNCS[(name, dtype)] = getattr(lib, "tb_%s_%s" % (name, SUFFIX[dtype]))
    return f


def table(name):
    """{dtype: (C array type, C function tb_<name>_<f32|f64>)}: one dict lookup per call
    on a hot path, where ``fn(name, dtype)`` would cost a call and a tuple key."""
    return {dt: (CTYPE[dt], fn(name, dt)) for dt in CTYPE}


def check(rc, op, *args):
    """Raise MemoryError naming ``op`` (``op % args`` if args are given: formatted only then)
    if a kernel returned nonzero (its scratch memory could not be allocated; it has released
    what it took, and the next call may work)."""
    if rc:
        raise MemoryError("%s: the C kernel could not allocate its scratch memory" % (op % args if args else op))

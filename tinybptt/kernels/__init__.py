"""Kernels: one Python interface, two implementations.

``tinybptt.kernels.numpy``  the reference: plain NumPy, obviously correct, slow
                            where Python loops over time steps.  It is the
                            oracle the C backend is tested against.
``tinybptt.kernels.c``      the same functions, each validating its inputs and
                            then making one call into the compiled C library.

Everything above this layer calls ``kernels.backend.<name>(...)``, where
``backend`` is whichever module is active.  Choose it with
``tinybptt.set_backend("c" | "numpy")`` or the ``TINYBPTT_BACKEND`` environment
variable; the default is ``"c"`` when the extension was built.
"""
import os
import warnings

from ..errors import BackendError
from . import numpy as numpy_backend

try:
    from . import c as c_backend
    C_IMPORT_ERROR = None
except ImportError as exc:  # extension not built (no compiler at install time)
    c_backend = None
    C_IMPORT_ERROR = exc

BACKENDS = {"numpy": numpy_backend, "c": c_backend}

#: The active backend module.  Read it at call time: ``kernels.backend.matmul(a, b)``.
backend = numpy_backend
_warned = False


def available_backends():
    """Names of the backends that can be used on this installation."""
    return [name for name, mod in BACKENDS.items() if mod is not None]


def get_backend():
    """Name of the active kernel backend: ``"c"`` or ``"numpy"``."""
    return backend.NAME


def set_backend(name):
    """Make ``name`` (``"c"`` or ``"numpy"``) the active kernel backend.

    Raises BackendError for an unknown name, or for ``"c"`` when the C
    extension was not built (the message says why).
    """
    global backend
    if name not in BACKENDS:
        raise BackendError("set_backend: unknown backend %r; choose one of %s" % (name, sorted(BACKENDS)))
    mod = BACKENDS[name]
    if mod is None:
        raise BackendError(
            "set_backend('c'): the C extension tinybptt._tinybptt_c is not available (%s). "
            "Reinstall with a working C compiler (pip install -e .), or use set_backend('numpy')." % (C_IMPORT_ERROR,)
        )
    backend = mod


def _choose_default():
    global _warned
    wanted = os.environ.get("TINYBPTT_BACKEND", "").strip().lower()
    if wanted:
        set_backend(wanted)
        return
    if c_backend is not None:
        set_backend("c")
    else:
        set_backend("numpy")
        if not _warned:
            _warned = True
            warnings.warn(
                "tinybptt: the C kernels are not built (%s); running on the NumPy reference backend. "
                "Install a C compiler and reinstall to get the fast kernels." % (C_IMPORT_ERROR,),
                RuntimeWarning,
                stacklevel=3,
            )


_choose_default()

"""tinybptt: see, test and time backpropagation through time.

A from-scratch reverse-mode autodiff engine (``tinybptt.autograd`` and
``tinybptt.backprop``), built-in ops (``tinybptt.ops``), kernels in C with a
NumPy reference (``tinybptt.kernels``), recurrent layers (``tinybptt.nn``), a
gradient checker (``tinybptt.gradcheck``) and tools to inspect gradient flow
(``tinybptt.inspect``).
"""
from . import ops  # noqa: F401  (binds operators and methods onto Tensor)
from .autograd import (Context, Function, Tensor, backward_hook, enable_grad, forward_hook, from_numpy,
                       is_grad_enabled, no_grad, node_scope, tensor)
from .errors import BackendError, DTypeError, GraphError, ShapeError, TinyBPTTError
from .gradcheck import GradcheckError, GradcheckReport, GradcheckWarning, gradcheck
from .kernels import available_backends, get_backend, set_backend
from .ops import concat, exp, linear, log, matmul, relu, sigmoid, split, stack, tanh
from . import bptt, inspect, nn, optim  # noqa: F401,E402  (layers, optimisers, truncated/checkpointed BPTT, gradient-flow inspection)

__version__ = "0.1.0"


def set_num_threads(n):
    """Threads used by the C kernels (needs an OpenMP build; 1 by default).

    ``n`` is an int from 1 to 256; anything else raises TypeError or ValueError.
    """
    from . import kernels
    from .kernels.validate import check_num_threads
    n = check_num_threads("set_num_threads", n)
    if kernels.c_backend is not None:
        kernels.c_backend.set_num_threads(n)


def get_num_threads():
    """Threads the C kernels use."""
    from . import kernels
    return kernels.c_backend.get_num_threads() if kernels.c_backend is not None else 1


def set_flush_to_zero(on):
    """Flush subnormal floats to zero in the C kernels (faster on some CPUs, hides tiny gradients).

    Off by default: showing how gradients shrink into the subnormal range is part of
    what tinybptt is for.  Affects the calling thread.  The C sequence backward
    (mode="sequence") does not depend on it for speed: it carries the gradient
    through time as scaled values times a power of two, so its recurrence never
    sinks into the subnormal range, and its trace keeps the true sizes either way
    (docs/design.md, "Tiny gradients in float32").  The switch still matters for
    the other kernels (forward passes, modes "cell" and "ops").
    """
    from . import kernels
    if kernels.c_backend is not None:
        kernels.c_backend.set_flush_to_zero(on)

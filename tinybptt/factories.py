"""Tensor factories with PyTorch's signatures: ``zeros``, ``ones``, ``randn``.

The shape is given as separate ints or as one tuple, ``zeros(2, 3)`` or
``zeros((2, 3))``; ``dtype`` is float64 unless float32 is asked for; the result
is a leaf Tensor, with ``requires_grad=True`` if asked.

Seeding ``randn``.  ``generator`` chooses where the numbers come from:

* ``None`` (the default): the library's global generator, the one the layer
  initialisers draw from.  ``tinybptt.nn.manual_seed(n)`` reseeds it, so after
  ``manual_seed(0)`` the same sequence of ``randn`` calls gives the same numbers,
  like ``torch.manual_seed`` followed by ``torch.randn``.
* an int: a fresh ``numpy.random.default_rng(seed)``; the same seed always gives
  the same tensor, whatever ran before.
* a ``numpy.random.Generator``: drawn from, and advanced, as NumPy would.

The numbers are drawn in float64 and rounded to float32 when that dtype is asked
for, so one seed gives the same values (to rounding) in both dtypes.  They are
NumPy's normal variates, not PyTorch's: the same seed gives different numbers in
the two libraries.
"""
import numpy as np

from .autograd import DEFAULT_DTYPE, Tensor, float_dtype
from .errors import ShapeError, is_integer_at_least



def _shape(op, shape):
    """The shape as a tuple of ints >= 0, from ``(2, 3)`` or ``((2, 3),)``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for n in shape:
        if not is_integer_at_least(n, 0):
            raise ShapeError("%s: the shape must be ints >= 0, got %r" % (op, shape))
    return tuple(int(n) for n in shape)


def _dtype(op, dtype):
    return np.dtype(DEFAULT_DTYPE) if dtype is None else float_dtype(op, dtype)


def zeros(*shape, dtype=None, requires_grad=False):
    """A tensor of zeros of the given shape: ``zeros(2, 3)`` or ``zeros((2, 3))``."""
    return Tensor(np.zeros(_shape("zeros", shape), _dtype("zeros", dtype)), requires_grad=requires_grad)


def ones(*shape, dtype=None, requires_grad=False):
    """A tensor of ones of the given shape: ``ones(2, 3)`` or ``ones((2, 3))``."""
    return Tensor(np.ones(_shape("ones", shape), _dtype("ones", dtype)), requires_grad=requires_grad)


def _generator(op, generator):
    from .nn import init  # here, not at the top: the package imports this module before nn
    return init.resolve_generator(generator, op)


def randn(*shape, generator=None, dtype=None, requires_grad=False):
    """Standard normal samples N(0, 1) of the given shape, reproducible by seed.

    ``generator``: None (the global generator that ``tinybptt.nn.manual_seed``
    reseeds), an int seed, or a ``numpy.random.Generator``; see the module's
    docstring.  ``randn(2, 3, generator=0)`` is the same tensor every time.
    """
    shape = _shape("randn", shape)
    dt = _dtype("randn", dtype)
    values = _generator("randn", generator).standard_normal(shape)
    return Tensor(values.astype(dt, copy=False), requires_grad=requires_grad)

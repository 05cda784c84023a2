"""Hypothesis strategies and assertions for property-testing gradients.

Use these to test your own ``Function`` the way tinybptt tests its built-in
ops: let hypothesis pick shapes and values, then check the backward pass
against finite differences with :func:`assert_gradients_match`.

Example -- a custom op and its test::

    import numpy as np
    import tinybptt
    from hypothesis import given, settings
    from tinybptt.testing import assert_gradients_match, shapes, tensors

    class Softsign(tinybptt.Function):
        '''y = x / (1 + |x|),  dy/dx = 1 / (1 + |x|)^2'''
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x / (1 + np.abs(x))

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g / (1 + np.abs(x)) ** 2

    @settings(max_examples=30, deadline=None)
    @given(x=tensors(shapes(max_dims=3), avoid=(0.0,)))   # |x| has a kink at 0
    def test_softsign_gradient(x):
        assert_gradients_match(Softsign.apply, [x], names=["x"])

Needs ``hypothesis`` (``pip install tinybptt[test]``); tinybptt itself does not.
"""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .autograd import Tensor
from .gradcheck import GradcheckError, gradcheck

__all__ = ["shapes", "broadcastable_shapes", "float_arrays", "tensors", "assert_gradients_match"]


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    """Array shapes: tuples of ``min_dims..max_dims`` sides, each in ``min_side..max_side``.

    Small by default: gradient checks cost two calls of the function per element.

    >>> shapes(min_dims=2, max_dims=2).example()    # doctest: +SKIP
    (3, 1)
    """
    if min_dims < 0 or max_dims < min_dims:
        raise ValueError("shapes: need 0 <= min_dims <= max_dims, got %d, %d" % (min_dims, max_dims))
    if min_side < 0 or max_side < min_side:
        raise ValueError("shapes: need 0 <= min_side <= max_side, got %d, %d" % (min_side, max_side))
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def broadcastable_shapes(shape, max_extra_dims=1, max_side=4, drop_dims=True):
    """Shapes that broadcast against ``shape`` under NumPy rules.

    Each trailing axis of the result is either ``shape``'s side or 1; with
    ``drop_dims`` some leading axes of ``shape`` may be missing; up to
    ``max_extra_dims`` new leading axes (sides 1..``max_side``) may be added, so
    broadcasting can stretch either operand.  ``shape`` may be a tuple or a
    hypothesis strategy of tuples; with a strategy, the result is a strategy of
    ``(shape, other)`` pairs.

    >>> broadcastable_shapes((2, 3)).example()      # doctest: +SKIP
    (1, 3)
    """
    if not isinstance(shape, tuple) and hasattr(shape, "flatmap"):
        return shape.flatmap(lambda s: st.tuples(st.just(s), broadcastable_shapes(s, max_extra_dims, max_side, drop_dims)))
    shape = tuple(int(s) for s in shape)

    @st.composite
    def build(draw):
        keep = draw(st.integers(0, len(shape))) if drop_dims else len(shape)
        tail = shape[len(shape) - keep:]
        sides = tuple(draw(st.sampled_from((s, 1))) if s != 1 else 1 for s in tail)
        extra = draw(st.lists(st.integers(1, max_side), max_size=max_extra_dims)) if keep == len(shape) else []
        return tuple(extra) + sides

    return build()


def float_arrays(shape, dtype=np.float64, min_value=-2.0, max_value=2.0, avoid=(), margin=0.1,
                 avoid_zero=False, unique=False):
    """Float arrays with well-conditioned values, for gradient checks.

    Parameters
    ----------
    shape : tuple or strategy of tuples
    dtype : float64 (default) or float32
    min_value, max_value : float
        Bounds of the elements ([-2, 2] by default: tanh and sigmoid are not
        saturated there and products stay near 1).  NaN, infinities and subnormal
        numbers are never produced.
    avoid : iterable of float
        Points the elements keep at least ``margin`` away from -- the kinks of a
        non-differentiable function (``avoid=(0.0,)`` for relu or abs).  An element
        closer than ``margin`` to such a point is pushed out to ``point +- margin``
        (which may lie slightly outside the bounds).
    avoid_zero : bool
        Shorthand for adding 0 to ``avoid`` (for division, log, relu).
    unique : bool
        All elements distinct (for max/sort-like ops, whose ties are kinks).

    >>> float_arrays((2, 3), avoid_zero=True).example()   # doctest: +SKIP
    array([[ 1.5, -0.1, ...]])
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError("float_arrays: dtype must be float32 or float64, got %s" % dtype)
    if not min_value < max_value:
        raise ValueError("float_arrays: need min_value < max_value, got %r, %r" % (min_value, max_value))
    width = 32 if dtype == np.float32 else 64
    if width == 32:
        min_value, max_value = float(np.float32(min_value)), float(np.float32(max_value))
    elements = st.floats(min_value, max_value, allow_nan=False, allow_infinity=False,
                         allow_subnormal=False, width=width)
    points = tuple(float(p) for p in avoid) + ((0.0,) if avoid_zero else ())
    if points:
        margin = float(margin)

        def push(v):
            for p in points:
                d = v - p
                if abs(d) < margin:
                    v = p + (margin if d >= 0 else -margin)
            return float(dtype.type(v))  # exactly representable in dtype

        elements = elements.map(push)
    return hnp.arrays(dtype, shape, elements=elements, unique=unique)


def tensors(shape, dtype=np.float64, requires_grad=True, **kwargs):
    """Leaf Tensors whose data come from :func:`float_arrays` (same keyword arguments).

    >>> tensors((3, 4), avoid_zero=True).example()       # doctest: +SKIP
    tensor([[...]], dtype=float64, requires_grad=True)
    """
    return float_arrays(shape, dtype=dtype, **kwargs).map(lambda a: Tensor(a, requires_grad=requires_grad))


def assert_gradients_match(fn, inputs, *, names=None, allow_kinks=True, **gradcheck_kwargs):
    """Assert that ``fn``'s backward agrees with finite differences; for use in tests.

    Runs :func:`tinybptt.gradcheck` on ``fn(*inputs)`` (keyword arguments such as
    ``eps``, ``atol``, ``rtol``, ``fast``, ``time_axis`` are passed on) and raises
    ``GradcheckError`` -- an ``AssertionError`` -- naming the worst element if any
    element fails.  Kinks (non-differentiable points) are tolerated unless
    ``allow_kinks=False``.  Returns the report.

    >>> x = tinybptt.tensor(np.random.randn(3, 4), requires_grad=True)
    >>> assert_gradients_match(lambda x: (x * x).tanh(), [x], names=["x"])   # doctest: +SKIP
    """
    report = gradcheck(fn, inputs, names=names, raise_exception=True, **gradcheck_kwargs)
    if not allow_kinks and report.kinks:
        raise GradcheckError(
            "gradcheck found %d kink(s) (non-differentiable points) and allow_kinks=False:\n%s"
            % (len(report.kinks), report), report)
    return report

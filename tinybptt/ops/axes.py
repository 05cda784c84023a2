"""Checking axis arguments, written once for every op that takes one.

An axis is a Python or NumPy integer (not a bool, not a float -- not even
``1.0``: NumPy refuses a float axis too) in ``[-ndim, ndim)``; negative axes
count from the end.  A wrong *type* is a ``TypeError``, a value out of range a
``ShapeError``, and both messages name the op and the argument.
"""
import numpy as np

from ..errors import ShapeError


def is_int(a):
    """True for a Python or NumPy integer that is not a bool."""
    return isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_))


def check_axis(op, axis, ndim, name="axis"):
    """``axis`` (one int) as an axis >= 0 of an ``ndim``-D tensor, checked."""
    if not is_int(axis):
        raise TypeError("%s: %s must be an int, got %r (%s)" % (op, name, axis, type(axis).__name__))
    if not -ndim <= axis < ndim:
        raise ShapeError("%s: %s %d is out of range for a %d-D tensor; use an %s in [%d, %d]"
                         % (op, name, axis, ndim, name, -ndim, ndim - 1))
    return int(axis) % ndim


def check_axes(op, axis, ndim):
    """``axis`` (None, an int or a tuple/list of ints) as a sorted tuple of distinct axes >= 0, or None."""
    if axis is None:
        return None
    axes = (axis,) if is_int(axis) else tuple(axis) if isinstance(axis, (tuple, list)) else None
    if axes is None or not all(is_int(a) for a in axes):
        raise TypeError("%s: axis must be an int or a tuple of ints, got %r (%s)" % (op, axis, type(axis).__name__))
    out = [check_axis(op, a, ndim) for a in axes]
    if len(set(out)) != len(out):
        raise ShapeError("%s: axis %s names the same axis twice (for a %d-D tensor)" % (op, axis, ndim))
    return tuple(sorted(out))

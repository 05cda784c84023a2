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


def check_axis(op, axis, x, new=False):
    """``axis`` (one int) as an axis >= 0 of the array ``x``, checked.

    ``new=True`` for an axis that the op inserts (``stack``): it may also be ``x.ndim``.
    """
    if not is_int(axis):
        raise TypeError("%s: axis must be an int, got %r (%s)" % (op, axis, type(axis).__name__))
    ndim = x.ndim + bool(new)
    if not -ndim <= axis < ndim:
        raise ShapeError("%s: axis %d is out of range for an input of shape %s %s; use an axis in [%d, %d]"
                         % (op, axis, x.shape, x.dtype, -ndim, ndim - 1))
    return int(axis) % ndim


def check_axes(op, axis, x):
    """``axis`` (None, an int or a tuple/list of ints) as a sorted tuple of distinct axes >= 0 of ``x``, or None."""
    if axis is None:
        return None
    axes = (axis,) if is_int(axis) else tuple(axis) if isinstance(axis, (tuple, list)) else None
    if axes is None or not all(is_int(a) for a in axes):
        raise TypeError("%s: axis must be an int or a tuple of ints, got %r (%s)" % (op, axis, type(axis).__name__))
    out = [check_axis(op, a, x) for a in axes]
    if len(set(out)) != len(out):
        raise ShapeError("%s: axis %s names the same axis twice (input of shape %s)" % (op, axis, x.shape))
    return tuple(sorted(out))

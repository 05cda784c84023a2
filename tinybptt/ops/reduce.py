"""Reductions: sum and mean over axes."""
import numpy as np

from ..autograd import Function
from ..errors import ShapeError

# --------------------------------------------------------------------------- reductions


def _is_int(a):
    return isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_))


def _norm_axis(op, axis, ndim):
    """``axis`` (None, an int or a tuple of ints) as a sorted tuple of axes >= 0, checked."""
    if axis is None:
        return None
    axes = (axis,) if _is_int(axis) else tuple(axis) if isinstance(axis, (tuple, list)) else None
    if axes is None or not all(_is_int(a) for a in axes):
        raise TypeError("%s: axis must be an int or a tuple of ints, got %r (%s)" % (op, axis, type(axis).__name__))
    out = []
    for ax in axes:
        if not -ndim <= ax < ndim:
            raise ShapeError("%s: axis %d is out of range for a %d-D tensor (shape has %d axes)" % (op, ax, ndim, ndim))
        out.append(ax % ndim)
    if len(set(out)) != len(out):
        raise ShapeError("%s: axis %s names the same axis twice (for a %d-D tensor)" % (op, axis, ndim))
    return tuple(sorted(out))


class Sum(Function):
    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        axis = _norm_axis("sum", axis, x.ndim)
        ctx.shape, ctx.axis, ctx.keepdims = x.shape, axis, keepdims
        return np.asarray(x.sum(axis=axis, keepdims=keepdims))

    @staticmethod
    def backward(ctx, g):
        if ctx.axis is None:  # a total: every element gets the one value g, a read-only zero-stride view
            return _spread(g, ctx.shape)
        if not ctx.keepdims:
            g = np.expand_dims(g, ctx.axis)
        return np.broadcast_to(g, ctx.shape)


def _spread(g, shape):
    """``np.broadcast_to(g, shape)`` for a one-element ``g``, without its Python-level machinery."""
    if g.size != 1:
        return np.broadcast_to(g, shape)
    if not g.flags.c_contiguous:
        g = g.copy()
    v = np.ndarray(shape, dtype=g.dtype, buffer=g, strides=(0,) * len(shape))
    v.flags.writeable = False
    return v


class Mean(Function):
    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        axis = _norm_axis("mean", axis, x.ndim)
        ctx.shape, ctx.axis, ctx.keepdims = x.shape, axis, keepdims
        count = x.size if axis is None else int(np.prod([x.shape[a] for a in axis]))
        ctx.count = count
        if count == 0:
            raise ShapeError("mean: cannot average over an empty axis (input shape %s)" % (x.shape,))
        return np.asarray(x.mean(axis=axis, keepdims=keepdims))

    @staticmethod
    def backward(ctx, g):
        if ctx.axis is not None and not ctx.keepdims:
            g = np.expand_dims(g, ctx.axis)
        return np.broadcast_to(g / ctx.count, ctx.shape)

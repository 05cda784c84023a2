"""Reductions: sum and mean over axes."""
import numpy as np

from ..autograd import Function
from ..errors import ShapeError
from .axes import check_axes

# --------------------------------------------------------------------------- reductions


class Sum(Function):
    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        axis = check_axes("sum", axis, x)
        ctx.shape, ctx.axis, ctx.keepdims = x.shape, axis, keepdims
        return np.asarray(np.add.reduce(x, axis=axis, keepdims=keepdims))  # x.sum() without its Python wrapper

    @staticmethod
    def backward(ctx, g):
        if ctx.axis is None:  # a total: every element gets the one value g, a read-only zero-stride view
            return _spread(g, ctx.shape)
        if not ctx.keepdims:
            g = np.expand_dims(g, ctx.axis)
        return np.broadcast_to(g, ctx.shape)


def _spread(g, shape):
    """``np.broadcast_to(g, shape)`` for a one-element ``g``, without its Python-level machinery:
    a zero-stride view of the bytes of ``g`` (immutable, so the view is read-only, as broadcast_to's is)."""
    if g.size != 1:
        return np.broadcast_to(g, shape)
    return np.ndarray(shape, g.dtype, g.tobytes(), 0, (0,) * len(shape))  # (keywords cost as much as the rest)


class Mean(Function):
    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        axis = check_axes("mean", axis, x)
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

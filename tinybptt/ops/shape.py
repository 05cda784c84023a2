"""Shape ops: reshape, transpose, indexing, concat, stack, split."""
import numpy as np

from ..autograd import Function
from ..errors import ShapeError, describe
from .axes import check_axis, is_int

# --------------------------------------------------------------------------- shape ops


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape=None):
        ctx.shape = x.shape
        _check_shape(x, shape)
        try:
            return x.reshape(shape)
        except ValueError:
            raise ShapeError("reshape: cannot reshape %s (size %d) to %s" % (x.shape, x.size, shape)) from None

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


def _check_shape(x, shape):
    """A target shape holds ints >= 0 and at most one -1 (the size to infer); NumPy's looser rules are refused."""
    if not all(is_int(n) for n in shape):
        raise TypeError("reshape: shape must be ints, got %r for a tensor of shape %s" % (shape, x.shape))
    if any(n < -1 for n in shape) or sum(n == -1 for n in shape) > 1:
        raise ShapeError("reshape: shape %s may hold sizes >= 0 and one -1 (the size to infer), "
                         "got %s for a tensor of shape %s" % (shape, ", ".join(map(str, shape)), x.shape))


class Transpose(Function):
    @staticmethod
    def forward(ctx, x, axes=None):
        if axes is not None:
            nd = x.ndim
            if not all(is_int(a) for a in axes):
                raise TypeError("transpose: axes must be ints, got %s for a tensor of shape %s" % (axes, x.shape))
            if (len(axes) != nd or not all(-nd <= a < nd for a in axes)
                    or sorted(a % nd for a in axes) != list(range(nd))):
                raise ShapeError("transpose: axes %s are not a permutation of a %d-D tensor's axes (shape %s)"
                                 % (axes, nd, x.shape))
            axes = tuple(a % nd for a in axes)  # backward inverts with argsort: needs axes >= 0
        ctx.axes = axes
        return np.transpose(x, axes)

    @staticmethod
    def backward(ctx, g):
        if ctx.axes is None:
            return np.transpose(g)
        return np.transpose(g, np.argsort(ctx.axes))


def _is_basic_index(idx):
    parts = idx if isinstance(idx, tuple) else (idx,)
    return all(isinstance(p, (int, np.integer, slice)) or p is None or p is Ellipsis for p in parts)


class GetItem(Function):
    name = "getitem"

    @staticmethod
    def forward(ctx, x, idx=None):
        ctx.shape, ctx.dtype, ctx.idx = x.shape, x.dtype, idx
        try:
            return np.asarray(x[idx])
        except IndexError as exc:
            raise ShapeError("getitem: index %r does not fit a tensor of shape %s (%s)" % (idx, x.shape, exc)) from None

    @staticmethod
    def backward(ctx, g):
        out = np.zeros(ctx.shape, dtype=ctx.dtype)
        if _is_basic_index(ctx.idx):
            out[ctx.idx] = g  # a view: every element is hit at most once
        else:
            np.add.at(out, ctx.idx, g)  # fancy indexing may repeat elements
        return out


class Concat(Function):
    @staticmethod
    def forward(ctx, *xs, axis=0):
        axis = check_axis("concat", axis, xs[0])
        try:
            out = np.concatenate(xs, axis=axis)
        except (ValueError, np.exceptions.AxisError) as exc:
            raise ShapeError("concat: cannot concatenate %s along axis %d (%s)" % (describe(*xs), axis, exc)) from None
        ctx.axis = axis
        bounds, n = [0], 0
        for x in xs:
            n += x.shape[axis]
            bounds.append(n)
        ctx.bounds = bounds
        return out

    @staticmethod
    def backward(ctx, g):
        return tuple(np.split(g, ctx.bounds[1:-1], axis=ctx.axis))


class Stack(Function):
    @staticmethod
    def forward(ctx, *xs, axis=0):
        axis = check_axis("stack", axis, xs[0], new=True)  # the new axis may also go last
        ctx.axis = axis
        if len(xs) == 1 and axis == 0 and isinstance(xs[0], np.ndarray):  # one layer's h_n: a copy with a new axis
            return xs[0][None].copy()
        try:
            out = np.stack(xs, axis=axis)
        except (ValueError, np.exceptions.AxisError) as exc:
            raise ShapeError("stack: cannot stack %s along axis %d (%s)" % (describe(*xs), axis, exc)) from None
        return out

    @staticmethod
    def backward(ctx, g):
        n = g.shape[ctx.axis]
        if ctx.axis == 0:
            return tuple(g[k] for k in range(n))  # views
        return tuple(np.take(g, k, axis=ctx.axis) for k in range(n))


class Split(Function):
    """Split along ``axis`` into equal sections (an int) or at the given indices (a list of ints).

    Sections and indices must be integers: a float such as ``2.0`` is refused even
    where NumPy would take it, as ``axis=1.0`` is, since a float count is usually a
    computed size that has gone wrong (write ``int(n)`` to mean it).
    """

    @staticmethod
    def forward(ctx, x, sections=None, axis=0):
        ax = check_axis("split", axis, x)
        _check_sections(x, sections)
        ctx.axis = ax
        if is_int(sections):
            n = x.shape[ax]
            if n % sections:
                raise ShapeError("split: cannot split shape %s into %d equal sections along axis %d (%d %% %d != 0)"
                                 % (x.shape, sections, axis, n, sections))
            w = n // sections  # equal sections: plain slices (views), as np.split makes
            lead = (slice(None),) * ax
            return tuple(x[lead + (slice(k * w, (k + 1) * w),)] for k in range(sections))
        return tuple(np.split(x, [int(i) for i in sections], axis=ax))

    @staticmethod
    def backward(ctx, *gs):
        return np.concatenate(gs, axis=ctx.axis)


def _check_sections(x, sections):
    """``sections`` is a positive int (equal parts) or a list/tuple/1-D array of int indices."""
    if isinstance(sections, np.ndarray) and sections.ndim == 1 and sections.dtype.kind in "iu":
        return
    if is_int(sections):
        if sections <= 0:
            raise ShapeError("split: sections must be a positive number of equal parts (or a list of indices), "
                             "got %d for shape %s" % (sections, x.shape))
    elif not isinstance(sections, (list, tuple)) or not all(is_int(i) for i in sections):  # 1.5, "2", None, [1.5]
        raise TypeError("split: sections must be a positive int or a list of int indices, got %r (%s) for shape %s"
                        % (sections, type(sections).__name__, x.shape))

"""Elementwise binary ops (+ - * / **), negation and dtype casts.

Each op is a forward and a backward on one screen, with its derivative in the
docstring.  Binary ops follow NumPy broadcasting, so their backward must
*un-broadcast*: sum the gradient over the axes that broadcasting stretched,
giving each input a gradient of its own shape (``unbroadcast``).  Every
backward computes only the gradients ``ctx.needs_input_grad`` asks for.
"""
import numpy as np

from ..autograd import Function
from ..errors import ShapeError, describe


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: undo NumPy broadcasting in the backward pass."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(k for k, n in enumerate(shape) if n == 1 and grad.shape[k] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


def _shapes(a, b):
    """``(np.shape(a), np.shape(b))``; an array's own ``.shape`` is read directly (``np.shape``
    is a Python-level function, several times slower, and binary ops are the most frequent nodes)."""
    return (a.shape if type(a) is np.ndarray else np.shape(a)), (b.shape if type(b) is np.ndarray else np.shape(b))


def _broadcasting(op, fn, a, b):
    """``fn(a, b)``, or a ShapeError naming ``op`` when the shapes do not broadcast.

    The shapes are checked only on failure: a broadcast check up front would cost
    more than the op itself on the small arrays of an unrolled graph.
    """
    try:
        return fn(a, b)
    except ValueError:
        raise ShapeError("%s: shapes %s and %s do not broadcast together (inputs %s)"
                         % (op, np.shape(a), np.shape(b), describe(a, b))) from None


# --------------------------------------------------------------------------- elementwise binary


class Add(Function):
    """``a + b``.   d/da = 1,  d/db = 1."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = _shapes(a, b)
        return _broadcasting("add", np.add, a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(g, sa) if need_a else None), (unbroadcast(g, sb) if need_b else None)


class Sub(Function):
    """``a - b``.   d/da = 1,  d/db = -1."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = _shapes(a, b)
        return _broadcasting("sub", np.subtract, a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(g, sa) if need_a else None), (unbroadcast(-g, sb) if need_b else None)


class Mul(Function):
    """``a * b``.   d/da = b,  d/db = a."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = _shapes(a, b)
        y = _broadcasting("mul", np.multiply, a, b)
        need_a, need_b = ctx.needs_input_grad
        ctx.save_for_backward(a if need_b else None, b if need_a else None)  # only what backward will use
        return y

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(g * b, sa) if need_a else None), (unbroadcast(g * a, sb) if need_b else None)


class Div(Function):
    """``a / b``.   d/da = 1/b,  d/db = -a/b**2, computed as -(a/b)/b.

    ``(a/b)/b`` rather than ``a/(b*b)``: with |b| ~ 1e-200, ``b*b`` underflows to
    0 (giving inf where a/b/b may be finite), and with |b| ~ 1e200 it overflows to
    inf (giving 0).
    """

    @staticmethod
    def forward(ctx, a, b):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):  # IEEE results
            ctx.shapes = _shapes(a, b)
            y = _broadcasting("div", np.divide, a, b)
        ctx.save_for_backward(b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        b, y = ctx.saved_tensors
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            da = unbroadcast(g / b, sa) if need_a else None
            db = unbroadcast(-(g * y) / b, sb) if need_b else None
        return da, db


class Pow(Function):
    """``a ** b``.   d/da = b * a**(b-1),  d/db = a**b * log(a).

    Where the formulas meet 0 * inf or log(0), the gradients are PyTorch's
    (the limits along the exponent): d/da = 0 where b == 0 (``x ** 0`` is the
    constant 1, also at x = 0), and d/db = 0 where a == 0 and b >= 0.  Elsewhere
    IEEE arithmetic decides: d/da of ``sqrt`` at 0 is inf.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = _shapes(a, b)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):  # IEEE results
            y = _broadcasting("pow", np.power, a, b)
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        a, b, y = ctx.saved_tensors
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        da = db = None
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            if need_a:
                da = unbroadcast(np.where(b == 0, 0, g * b * a ** (b - 1)), sa)
            if need_b:
                db = unbroadcast(np.where((a == 0) & (b >= 0), 0, g * y * np.log(a)), sb)
        return da, db


# --------------------------------------------------------------------------- unary


class Neg(Function):
    """``-a``.   d/da = -1."""

    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Cast(Function):
    """``a`` converted to ``dtype``; the gradient is converted back to ``a``'s dtype."""

    @staticmethod
    def forward(ctx, a, dtype=None):
        ctx.src = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.src)

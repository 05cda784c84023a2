"""Elementwise binary ops (+ - * / **), negation and dtype casts.

Binary ops follow NumPy broadcasting, so their backward must *un-broadcast*: sum the
gradient over the axes that broadcasting stretched, giving each input a gradient of
its own shape (``unbroadcast``).
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


def _shape(x):
    return x.shape if type(x) is np.ndarray else np.shape(x)


def _broadcast_error(op, a, b):
    return ShapeError(
        "%s: shapes %s and %s do not broadcast together (inputs %s)" % (op, _shape(a), _shape(b), describe(a, b))
    )


# --------------------------------------------------------------------------- elementwise binary


# (The shapes of the operands are read inline, ``x.shape if type(x) is ndarray``, and the
# gradients un-broadcast only when the shapes differ: these ops run once per node of an
# unrolled graph, and a function call per operand is a measurable share of their cost.)


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape if type(a) is np.ndarray else np.shape(a),
                      b.shape if type(b) is np.ndarray else np.shape(b))
        try:
            return a + b
        except ValueError:  # checked only on failure: a broadcast check up front costs more than the op
            raise _broadcast_error("add", a, b) from None

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        gs = g.shape
        return (g if gs == sa else unbroadcast(g, sa)), (g if gs == sb else unbroadcast(g, sb))


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape if type(a) is np.ndarray else np.shape(a),
                      b.shape if type(b) is np.ndarray else np.shape(b))
        try:
            return a - b
        except ValueError:  # checked only on failure: a broadcast check up front costs more than the op
            raise _broadcast_error("sub", a, b) from None

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(g, sa) if need_a else None), (unbroadcast(-g, sb) if need_b else None)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        need_a, need_b = ctx.needs_input_grad
        ctx.saved_tensors = (b if need_a else None, a if need_b else None)
        ctx.shapes = (a.shape if type(a) is np.ndarray else np.shape(a),
                      b.shape if type(b) is np.ndarray else np.shape(b))
        try:
            return a * b
        except ValueError:  # checked only on failure: a broadcast check up front costs more than the op
            raise _broadcast_error("mul", a, b) from None

    @staticmethod
    def backward(ctx, g):
        b, a = ctx.saved_tensors
        sa, sb = ctx.shapes
        x, y = ctx.inputs
        if x is y:  # x * x: both gradients go to one tensor; g*x + g*x == 2*(g*x) exactly
            r = unbroadcast(g * a, sa)  # a new array: doubled in place, no second temporary
            if type(r) is np.ndarray:
                np.multiply(r, 2, out=r)
                return r, None
            return r * 2, None
        ga = gb = None
        if b is not None:
            ga = g * b
            if ga.shape != sa:
                ga = unbroadcast(ga, sa)
        if a is not None:
            gb = g * a
            if gb.shape != sb:
                gb = unbroadcast(gb, sb)
        return ga, gb


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        ctx.shapes = (_shape(a), _shape(b))
        try:
            return a / b
        except ValueError:  # checked only on failure: a broadcast check up front costs more than the op
            raise _broadcast_error("div", a, b) from None

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(g / b, sa) if need_a else None,
                unbroadcast(-g * a / (b * b), sb) if need_b else None)


class Pow(Function):
    @staticmethod
    def forward(ctx, a, b):
        try:
            y = a ** b
        except ValueError:
            raise _broadcast_error("pow", a, b) from None
        ctx.save_for_backward(a, b, y)
        ctx.shapes = (_shape(a), _shape(b))
        return y

    @staticmethod
    def backward(ctx, g):
        a, b, y = ctx.saved_tensors
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        da = None
        if need_a:  # d(a^b)/da = b a^(b-1): infinite for a = 0, b < 1 (e.g. sqrt at 0), as IEEE says
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                da = unbroadcast(g * b * a ** (b - 1), sa)
        db = None
        if need_b:  # d(a^b)/db = a^b log a, defined for a > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                db = unbroadcast(g * y * np.log(a), sb)
        return da, db


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Cast(Function):
    @staticmethod
    def forward(ctx, a, dtype=None):
        ctx.src = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.src)

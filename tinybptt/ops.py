"""The built-in ops: one small Function per op, forward beside backward.

Each ``forward`` computes with NumPy (or a kernel from ``tinybptt.kernels``)
and saves only what its ``backward`` needs; each ``backward`` returns one
gradient per forward argument.  Binary elementwise ops follow NumPy
broadcasting, so their backward must *un-broadcast*: sum the gradient over the
axes that broadcasting stretched, giving each input a gradient of its own shape.
"""
import math

import numpy as np

from . import kernels
from .autograd import Function, Tensor, _as_array
from .errors import DTypeError, ShapeError, describe


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


# --------------------------------------------------------------------------- matmul


class MatMul(Function):
    """``a @ b`` with ``a`` of shape (..., K) and ``b`` of shape (K, N).

    Leading axes of ``a`` are flattened into one, so a (T, B, I) @ (I, H)
    projection of a whole sequence is a single GEMM.
    """

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim < 1 or b.ndim != 2 or a.shape[-1] != b.shape[0]:
            raise ShapeError(
                "matmul: expected a of shape (..., K) and b of shape (K, N), got %s" % describe(a, b)
            )
        need_a, need_b = ctx.needs_input_grad
        if a.ndim == 2:  # the common case: no reshapes
            ctx.save_for_backward(a if need_b else None, b if need_a else None)
            ctx.lead = None
            return kernels.backend.matmul(a, b)
        lead, K, N = a.shape[:-1], b.shape[0], b.shape[1]
        a2 = a.reshape(math.prod(lead), K)  # not (-1, K): NumPy cannot infer -1 when K == 0
        ctx.save_for_backward(a2 if need_b else None, b if need_a else None)
        ctx.lead = lead
        return kernels.backend.matmul(a2, b).reshape(lead + (N,))

    @staticmethod
    def backward(ctx, g):
        a2, b = ctx.saved_tensors
        da, db, _ = _product_grads(a2, b, ctx.lead, g)
        return da, db


def _product_grads(a2, b, lead, g):
    """Gradients of ``a @ b`` (a flattened to ``a2`` (M, K); ``lead`` its leading axes or
    None): ``(g b^T, a^T g, g2)``, None where ``b`` or ``a2`` was not saved; g2 is g as (M, N)."""
    g2 = g if lead is None else g.reshape(-1, g.shape[-1])
    da = db = None
    if b is not None:  # dL/da = g @ b^T
        da = kernels.backend.matmul(g2, b, trans_b=True)
        if lead is not None:
            da = da.reshape(lead + (b.shape[0],))
    if a2 is not None:  # dL/db = a^T @ g
        db = kernels.backend.matmul(a2, g2, trans_a=True)
    return da, db, g2


class Linear(Function):
    """``x @ w + b`` as one node: ``x`` (..., K), ``w`` (K, N), ``b`` (N,) or None.

    PyTorch's ``addmm``/``F.linear`` (there with the weight transposed): the
    bias is added in place to the fresh product, so an affine map costs one
    node, one GEMM and one pass over the output instead of a matmul node, an
    add node and a second output array.  Backward: dx = g w^T, dw = x^T g
    and db = the column sums of g.
    """

    @staticmethod
    def forward(ctx, x, w, b=None):
        if x.ndim < 1 or w.ndim != 2 or x.shape[-1] != w.shape[0]:
            raise ShapeError("linear: expected x of shape (..., K) and w of shape (K, N), got %s" % describe(x, w))
        if x.dtype != w.dtype or (b is not None and b.dtype != w.dtype):
            raise DTypeError("linear: mixed dtypes (%s); cast every input to one dtype first"
                             % describe(*(a for a in (x, w, b) if a is not None)))
        if b is not None and b.shape != (w.shape[1],):
            raise ShapeError("linear: b must have shape (N,) = (%d,) for w of shape %s, got %s"
                             % (w.shape[1], w.shape, describe(b)))
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        lead = None
        x2 = x
        if x.ndim != 2:
            lead = x.shape[:-1]
            x2 = x.reshape(math.prod(lead), w.shape[0])  # not (-1, K): -1 cannot be inferred when K == 0
        ctx.saved_tensors = (x2 if need_w else None, w if need_x else None)
        ctx.lead = lead
        y = kernels.backend.matmul(x2, w)
        if b is not None:
            y += b  # y is fresh: the bias goes in place, broadcast over the rows
        return y if lead is None else y.reshape(lead + (w.shape[1],))

    @staticmethod
    def backward(ctx, g):
        x2, w = ctx.saved_tensors
        dx, dw, g2 = _product_grads(x2, w, ctx.lead, g)
        db = g2.sum(axis=0) if len(ctx.needs_input_grad) > 2 and ctx.needs_input_grad[2] else None
        return dx, dw, db


# --------------------------------------------------------------------------- elementwise unary
# tanh, sigmoid, relu and exp keep their OUTPUT for backward.


class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        y = kernels.backend.tanh(x)
        ctx.saved_tensors = (y,)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels.backend.tanh_backward(y, g)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        y = kernels.backend.sigmoid(x)
        ctx.saved_tensors = (y,)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels.backend.sigmoid_backward(y, g)


class Relu(Function):
    @staticmethod
    def forward(ctx, x):
        y = kernels.backend.relu(x)
        ctx.saved_tensors = (y,)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels.backend.relu_backward(y, g)


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        with np.errstate(over="ignore", under="ignore"):  # exp(1000) = inf, exp(-1000) = 0: right answers
            y = np.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # IEEE results, no warnings
            return g * y


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        with np.errstate(divide="ignore", invalid="ignore"):  # log(0) = -inf, log(-1) = nan
            return np.log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        with np.errstate(divide="ignore", invalid="ignore"):
            return g / x


# --------------------------------------------------------------------------- reductions


def _norm_axis(op, axis, ndim):
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
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


# --------------------------------------------------------------------------- shape ops


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape=None):
        ctx.shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ShapeError("reshape: cannot reshape %s (size %d) to %s" % (x.shape, x.size, shape)) from None

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Transpose(Function):
    @staticmethod
    def forward(ctx, x, axes=None):
        if axes is not None:
            nd = x.ndim
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
        try:
            out = np.concatenate(xs, axis=axis)
        except (ValueError, np.exceptions.AxisError) as exc:
            raise ShapeError("concat: cannot concatenate %s along axis %d (%s)" % (describe(*xs), axis, exc)) from None
        ax = axis % out.ndim
        ctx.axis = ax
        bounds, n = [0], 0
        for x in xs:
            n += x.shape[ax]
            bounds.append(n)
        ctx.bounds = bounds
        return out

    @staticmethod
    def backward(ctx, g):
        return tuple(np.split(g, ctx.bounds[1:-1], axis=ctx.axis))


class Stack(Function):
    @staticmethod
    def forward(ctx, *xs, axis=0):
        ctx.axis = axis
        if len(xs) == 1 and axis == 0 and isinstance(xs[0], np.ndarray):  # one layer's h_n: a copy with a new axis
            return xs[0][None].copy()
        try:
            out = np.stack(xs, axis=axis)
        except (ValueError, np.exceptions.AxisError) as exc:
            raise ShapeError("stack: cannot stack %s along axis %d (%s)" % (describe(*xs), axis, exc)) from None
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, g):
        n = g.shape[ctx.axis]
        if ctx.axis == 0:
            return tuple(g[k] for k in range(n))  # views
        return tuple(np.take(g, k, axis=ctx.axis) for k in range(n))


class Split(Function):
    """Split along ``axis`` into equal sections (an int) or at the given indices."""

    @staticmethod
    def forward(ctx, x, sections=None, axis=0):
        if type(sections) is int and sections > 0 and type(axis) is int and -x.ndim <= axis < x.ndim:
            ax = axis % x.ndim
            n = x.shape[ax]
            if n % sections == 0:  # equal sections: plain slices (views), as np.split makes
                ctx.axis = ax
                w = n // sections
                lead = (slice(None),) * ax
                return tuple(x[lead + (slice(k * w, (k + 1) * w),)] for k in range(sections))
        try:
            parts = np.split(x, sections, axis=axis)
        except (ValueError, np.exceptions.AxisError) as exc:
            raise ShapeError("split: cannot split shape %s into %r along axis %d (%s)" % (x.shape, sections, axis, exc)) from None
        ctx.axis = axis
        return tuple(parts)

    @staticmethod
    def backward(ctx, *gs):
        return np.concatenate(gs, axis=ctx.axis)


# --------------------------------------------------------------------------- Tensor methods and functions


def _operand(self, other):
    """Python numbers take the tensor's dtype, so float32 stays float32."""
    if isinstance(other, Tensor):
        return other
    if isinstance(other, (int, float, np.number)):
        return np.asarray(other, dtype=self.data.dtype)
    return _as_array(other)


def _binary(fn, reflected=False):
    apply = fn.apply
    if reflected:
        def method(self, other):
            return apply(other if isinstance(other, Tensor) else _operand(self, other), self)
    else:
        def method(self, other):
            return apply(self, other if isinstance(other, Tensor) else _operand(self, other))
    return method


def _tensors(op, xs):
    if len(xs) == 1 and isinstance(xs[0], (list, tuple)):
        xs = tuple(xs[0])
    if not xs:
        raise ShapeError("%s: needs at least one tensor" % op)
    return xs


def concat(tensors, axis=0):
    """Join tensors along an existing axis (like ``np.concatenate``)."""
    return Concat.apply(*_tensors("concat", (tensors,)), axis=axis)


def stack(tensors, axis=0):
    """Join tensors along a new axis (like ``np.stack``)."""
    return Stack.apply(*_tensors("stack", (tensors,)), axis=axis)


def split(x, sections, axis=0):
    """Split ``x`` into a tuple of tensors (like ``np.split``)."""
    out = Split.apply(x, sections=sections, axis=axis)
    return out if isinstance(out, tuple) else (out,)


def matmul(a, b):
    return MatMul.apply(a, b)


def linear(x, w, b=None):
    """``x @ w + b`` in one node (``w`` of shape (K, N): the transpose of a PyTorch weight)."""
    return Linear.apply(x, w) if b is None else Linear.apply(x, w, b)


def tanh(x):
    return Tanh.apply(x)


def sigmoid(x):
    return Sigmoid.apply(x)


def relu(x):
    return Relu.apply(x)


def exp(x):
    return Exp.apply(x)


def log(x):
    return Log.apply(x)


def _reshape(self, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Reshape.apply(self, shape=shape)


def _transpose(self, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return Transpose.apply(self, axes=axes or None)


def _getitem(self, idx):
    if isinstance(idx, Tensor):
        idx = idx.data
    elif isinstance(idx, tuple):
        idx = tuple(i.data if isinstance(i, Tensor) else i for i in idx)
    if isinstance(idx, np.ndarray) and idx.dtype.kind == "f":
        raise ShapeError("getitem: index arrays must be integers or booleans, got %s" % idx.dtype)
    return GetItem.apply(self, idx=idx)


Tensor.__add__ = _binary(Add)
Tensor.__radd__ = _binary(Add, reflected=True)
Tensor.__sub__ = _binary(Sub)
Tensor.__rsub__ = _binary(Sub, reflected=True)
Tensor.__mul__ = _binary(Mul)
Tensor.__rmul__ = _binary(Mul, reflected=True)
Tensor.__truediv__ = _binary(Div)
Tensor.__rtruediv__ = _binary(Div, reflected=True)
Tensor.__pow__ = _binary(Pow)
Tensor.__rpow__ = _binary(Pow, reflected=True)
Tensor.__matmul__ = _binary(MatMul)
Tensor.__rmatmul__ = _binary(MatMul, reflected=True)
Tensor.__neg__ = lambda self: Neg.apply(self)
Tensor.__getitem__ = _getitem
Tensor.tanh = tanh
Tensor.sigmoid = sigmoid
Tensor.relu = relu
Tensor.exp = exp
Tensor.log = log
Tensor.sum = lambda self, axis=None, keepdims=False: Sum.apply(self, axis=axis, keepdims=keepdims)
Tensor.mean = lambda self, axis=None, keepdims=False: Mean.apply(self, axis=axis, keepdims=keepdims)
Tensor.reshape = _reshape
Tensor.transpose = _transpose
Tensor.T = property(lambda self: Transpose.apply(self, axes=None))

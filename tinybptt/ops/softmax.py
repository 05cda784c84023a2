"""Softmax and log-softmax over one axis, as ops with their backward written out.

Both are computed in the stable form: subtract the maximum along the axis
before exponentiating, so logits of +-1000 give finite values and gradients.

The backward passes are Jacobian-vector products that never form the Jacobian.
For ``y = softmax(x)`` along an axis, ``dy_i/dx_j = y_i (delta_ij - y_j)``, so for
an incoming gradient ``g``::

    dx_j = sum_i g_i y_i (delta_ij - y_j) = y_j (g_j - sum_i g_i y_i)

For ``y = log_softmax(x)``, ``dy_i/dx_j = delta_ij - softmax(x)_j``, so::

    dx_j = g_j - softmax(x)_j sum_i g_i = g_j - exp(y_j) sum_i g_i

Non-finite logits: ``-inf`` is an entry of probability 0 (gradient 0 through
softmax), which is how attention masks work (``masked_fill(scores, mask,
-inf)``).  A row whose softmax is undefined -- it holds a NaN or ``+inf``, or
only ``-inf`` (a fully masked row) -- comes out all NaN, values and gradients,
as in PyTorch.  None of this raises a NumPy warning.
"""
import numpy as np

from ..autograd import Function, Tensor, _as_array
from . import axes


class Softmax(Function):
    """``y = exp(x - max) / sum(exp(x - max))`` along ``axis``; backward ``y * (g - sum(g * y))``."""

    name = "softmax"

    @staticmethod
    def forward(ctx, x, axis=-1):
        ctx.axis = axis
        if x.ndim and x.shape[axis] == 0:  # nothing to normalise
            ctx.save_for_backward(x)
            return x.copy()
        # IEEE arithmetic does the right thing silently: exp underflows to 0 far below
        # the maximum; a row holding NaN or +inf (max - max is NaN) or only -inf
        # (-inf - -inf is NaN) becomes NaN throughout
        with np.errstate(all="ignore"):
            e = np.exp(x - np.max(x, axis=axis, keepdims=True))
            y = e / np.sum(e, axis=axis, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        with np.errstate(all="ignore"):  # NaN rows stay NaN, without a warning
            return y * (g - np.sum(g * y, axis=ctx.axis, keepdims=True))


class LogSoftmax(Function):
    """``y = x - max - log(sum(exp(x - max)))`` along ``axis``; backward ``g - exp(y) * sum(g)``."""

    name = "log_softmax"

    @staticmethod
    def forward(ctx, x, axis=-1):
        ctx.axis = axis
        if x.ndim and x.shape[axis] == 0:
            ctx.save_for_backward(x)
            return x.copy()
        with np.errstate(all="ignore"):  # see Softmax.forward
            z = x - np.max(x, axis=axis, keepdims=True)
            y = z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        with np.errstate(all="ignore"):  # exp(-inf) * inf: a NaN gradient, without a warning
            return g - np.exp(y) * np.sum(g, axis=ctx.axis, keepdims=True)


def check_axis(op, x, axis):
    """``axis`` checked as every op checks one (``ops/axes.py``); a 0-D tensor has the one axis -1/0."""
    axes.check_axis(op, axis, x.data if x.ndim else x.data.reshape(1))
    return int(axis)


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(_as_array(x))


def softmax(x, axis=-1):
    """Softmax along ``axis`` (PyTorch's ``dim``), computed stably: Tensor in, Tensor out.

    Entries of ``-inf`` get probability 0; a row of only ``-inf`` is NaN, as in PyTorch.
    """
    x = _tensor(x)
    return Softmax.apply(x, axis=check_axis("softmax", x, axis))


def log_softmax(x, axis=-1):
    """Log of the softmax along ``axis``, computed stably (no ``log(0)`` for very negative logits)."""
    x = _tensor(x)
    return LogSoftmax.apply(x, axis=check_axis("log_softmax", x, axis))

"""Masking: ``where(cond, a, b)`` and ``masked_fill(x, mask, value)``.

Masks are boolean NumPy arrays (or anything ``np.asarray`` makes boolean); they
select, they are not differentiated.  A mask broadcasts against the tensors it
selects from, following NumPy's rules.

The backward pass routes the gradient through the selection: an element taken
from ``a`` sends its gradient to ``a`` and none to ``b``, and an element
overwritten by ``masked_fill`` sends none to ``x``.  Where broadcasting
stretched an operand, its gradient is summed back to its own shape.

Attention masks its scores with ``masked_fill(scores, mask, -inf)`` before the
softmax: a masked entry gets probability 0 and gradient 0.  A row with every
entry masked has no probabilities to give; its softmax is NaN, as in PyTorch.
"""
import numpy as np

from ..autograd import Function, Tensor
from ..errors import DTypeError, ShapeError, describe
from .elementwise import unbroadcast
from .operands import operand_array


def as_mask(op, mask):
    """``mask`` as a boolean ndarray; anything that is not boolean is a DTypeError."""
    if isinstance(mask, Tensor):
        raise DTypeError("%s: the mask must be a boolean array, got a Tensor of %s (tensors hold floats); "
                         "pass a NumPy bool array, e.g. t.data > 0" % (op, describe(mask.data)))
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise DTypeError("%s: the mask must be a boolean array, got %s; e.g. mask != 0 makes one"
                         % (op, describe(m)))
    return m


def _broadcast_shape(op, *arrays):
    try:
        return np.broadcast_shapes(*(np.shape(a) for a in arrays))
    except ValueError:
        raise ShapeError("%s: shapes do not broadcast together: %s" % (op, describe(*arrays))) from None


class Where(Function):
    """``out = a where cond else b``; gradients ``g`` masked by ``cond`` (and its negation)."""

    @staticmethod
    def forward(ctx, cond, a, b):
        _broadcast_shape("where", cond, a, b)  # names the shapes if they do not fit
        ctx.cond, ctx.shapes = cond, (np.shape(a), np.shape(b))
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad[1:]
        zero = np.zeros((), g.dtype)
        ga = unbroadcast(np.where(ctx.cond, g, zero), sa) if need_a else None
        gb = unbroadcast(np.where(ctx.cond, zero, g), sb) if need_b else None
        return None, ga, gb


class MaskedFill(Function):
    """``out = value where mask else x`` (output of ``x``'s shape); gradient ``g`` where not ``mask``."""

    name = "masked_fill"

    @staticmethod
    def forward(ctx, x, mask=None, value=0.0):
        if _broadcast_shape("masked_fill", x, mask) != x.shape:
            raise ShapeError("masked_fill: the mask (shape %s) must broadcast to the input's shape %s "
                             "without growing it (input %s)" % (mask.shape, x.shape, describe(x)))
        ctx.mask = mask
        return np.where(mask, np.asarray(value, x.dtype), x)

    @staticmethod
    def backward(ctx, g):
        return np.where(ctx.mask, np.zeros((), g.dtype), g)


def _operand(v, dtype):
    """A Tensor stays; a number or array becomes an array of ``dtype`` (the tensors' dtype)."""
    return v if isinstance(v, Tensor) else operand_array("where", v, dtype)


def where(cond, a, b):
    """Elementwise ``a`` where ``cond`` is True, else ``b`` (like ``torch.where`` / ``np.where``).

    ``cond`` is a boolean array; ``a`` and ``b`` are Tensors or numbers (at least one
    should be a Tensor to get gradients); all three broadcast together.  Returns a
    Tensor of the broadcast shape whose gradient flows to ``a`` where ``cond`` holds
    and to ``b`` elsewhere.
    """
    cond = as_mask("where", cond)
    tensors = [v for v in (a, b) if isinstance(v, Tensor)]
    if len(tensors) == 2 and a.dtype != b.dtype:
        raise DTypeError("where: mixed dtypes (a %s, b %s); cast one with .astype() first"
                         % (describe(a.data), describe(b.data)))
    dtype = tensors[0].dtype if tensors else np.dtype(np.float64)
    return Where.apply(cond, _operand(a, dtype), _operand(b, dtype))


def masked_fill(x, mask, value):
    """``x`` with the elements where ``mask`` is True replaced by ``value`` (PyTorch's ``masked_fill``).

    ``mask`` is a boolean array broadcastable to ``x``'s shape (e.g. (L, S) against
    scores of shape (N, H, L, S)); ``value`` is a number, ``float("-inf")`` to mask
    attention scores.  Filled elements get no gradient.
    """
    if not isinstance(x, Tensor):
        x = Tensor(operand_array("masked_fill", x))
    mask = as_mask("masked_fill", mask)
    if isinstance(value, Tensor):
        if value.size != 1:
            raise ShapeError("masked_fill: value must be a number, got a Tensor of %s" % describe(value.data))
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DTypeError("masked_fill: value must be a number, got %r" % (value,))
    return MaskedFill.apply(x, mask=mask, value=float(value))

"""Matrix products: ``@`` (MatMul) and ``linear`` (x @ w + b as one node)."""
import math

import numpy as np

from .. import kernels
from ..autograd import Function
from ..errors import DTypeError, ShapeError, describe
from .elementwise import unbroadcast

# --------------------------------------------------------------------------- matmul


class MatMul(Function):
    """``a @ b`` with NumPy's (and PyTorch's) rules for every rank.

    * 1-D operands: ``a`` (K,) is treated as a row (1, K) and ``b`` (K,) as a
      column (K, 1); the added axis is removed from the result (two 1-D
      operands give their dot product, a 0-D tensor).
    * ``b`` 2-D (K, N), ``a`` (..., K): the leading axes of ``a`` are flattened
      into one, so a (T, B, I) @ (I, H) projection of a whole sequence is a
      single GEMM.
    * otherwise a batch of matrix products, (..., M, K) @ (..., K, N): the batch
      axes (all but the last two) broadcast against each other, and the whole
      batch is one call of the kernels' ``bmm``.  The backward pass computes the
      gradients for the broadcast batch and sums them back over the batch axes
      that broadcasting stretched (``unbroadcast``).

    Backward, per matrix: dL/da = g b^T and dL/db = a^T g.  Zero-size axes
    (K = 0, an empty batch) give zero or empty gradients, as in PyTorch.
    """

    @staticmethod
    def forward(ctx, a, b):
        _check_operands(a, b)
        need_a, need_b = ctx.needs_input_grad
        ctx.shapes = (a.shape, b.shape)
        if a.ndim == 2 and b.ndim == 2:  # the common case: no reshapes
            ctx.save_for_backward(a if need_b else None, b if need_a else None)
            ctx.kind = "2d"
            return kernels.backend.matmul(a, b)
        a1 = a.reshape(1, a.shape[0]) if a.ndim == 1 else a  # a row
        b1 = b.reshape(b.shape[0], 1) if b.ndim == 1 else b  # a column
        ctx.promoted = (a1.shape, b1.shape)
        if b1.ndim == 2:  # (..., K) @ (K, N): one GEMM on a flattened to (M, K)
            ctx.kind = "flat"
            lead = ctx.lead = a1.shape[:-1]
            a2 = a1.reshape(math.prod(lead), b1.shape[0])  # not (-1, K): NumPy cannot infer -1 when K == 0
            ctx.save_for_backward(a2 if need_b else None, b1 if need_a else None)
            out = kernels.backend.matmul(a2, b1)
        else:  # a batch of products, one bmm call
            ctx.kind = "batched"
            ctx.save_for_backward(a1 if need_b else None, b1 if need_a else None)
            out = _batched(a1, b1)
        return out.reshape(_result_shape(a.shape, b.shape))

    @staticmethod
    def backward(ctx, g):
        a1, b1 = ctx.saved_tensors
        sa, sb = ctx.shapes
        if ctx.kind == "2d":
            da, db, _ = _product_grads(a1, b1, None, g)
            return da, db
        sa1, sb1 = ctx.promoted
        g = g.reshape(_result_shape(sa1, sb1))  # the row/column axes of 1-D operands restored
        if ctx.kind == "batched":
            da, db = _batched_grads(a1, b1, g, sa1, sb1)
        else:
            da, db, _ = _product_grads(a1, b1, ctx.lead, g)
        return (None if da is None else da.reshape(sa)), (None if db is None else db.reshape(sb))


def _check_operands(a, b):
    """The shapes and dtypes of ``a @ b`` fit, else a ShapeError/DTypeError naming both."""
    if a.dtype != b.dtype:
        raise DTypeError("matmul: mixed dtypes (%s); cast one operand with .astype() first" % describe(a, b))
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError("matmul: both operands need at least one dimension (use * for scalars), got %s"
                         % describe(a, b))
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ShapeError("matmul: the last axis of a must match the %s axis of b (K), got %s"
                         % ("second-to-last" if b.ndim > 1 else "only", describe(a, b)))
    if a.ndim > 2 or b.ndim > 2:
        _batch_shape(a.shape[:-2], b.shape[:-2], a, b)


def _batch_shape(sa, sb, a, b):
    try:
        return np.broadcast_shapes(sa, sb)
    except ValueError:
        raise ShapeError("matmul: batch axes %s and %s do not broadcast together (operands %s)"
                         % (sa, sb, describe(a, b))) from None


def _result_shape(sa, sb):
    """Shape of ``a @ b`` for operand shapes ``sa`` and ``sb`` (NumPy's rules, checked already)."""
    if len(sa) == 1 and len(sb) == 1:
        return ()
    if len(sb) == 1:
        return sa[:-1]
    if len(sa) == 1:
        return sb[:-2] + sb[-1:]
    return np.broadcast_shapes(sa[:-2], sb[:-2]) + (sa[-2], sb[-1])


def _as_batch(x, batch, transposed=False):
    """``x`` (..., R, C) broadcast to ``batch + (R, C)`` as one C-contiguous (S, R, C) array
    (S = the batch's size), or as (S, C, R) holding each matrix transposed; copies at most once."""
    if transposed:
        x = np.swapaxes(x, -1, -2)
    full = np.broadcast_to(x, batch + x.shape[-2:])
    return np.ascontiguousarray(full.reshape((math.prod(batch),) + x.shape[-2:]))


def _batched(a, b):
    """``a @ b`` for a (..., M, K), b (..., K, N) with broadcast batch axes: one ``bmm`` call."""
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    out = kernels.backend.bmm(_as_batch(a, batch), _as_batch(b, batch))
    return out.reshape(batch + out.shape[1:])


def _batched_grads(a, b, g, sa, sb):
    """Gradients of the batched ``a @ b`` (operands of shapes ``sa``, ``sb``; None for one that
    was not saved), each summed back to its operand's shape over the batch axes broadcasting
    stretched."""
    batch = g.shape[:-2]
    g3 = _as_batch(g, batch)
    da = db = None
    if b is not None:  # dL/da = g @ b^T, matrix by matrix
        da = kernels.backend.bmm(g3, _as_batch(b, batch, transposed=True))
        da = unbroadcast(da.reshape(batch + da.shape[1:]), sa)
    if a is not None:  # dL/db = a^T @ g
        db = kernels.backend.bmm(_as_batch(a, batch, transposed=True), g3)
        db = unbroadcast(db.reshape(batch + db.shape[1:]), sb)
    return da, db


def _product_grads(a2, b, lead, g):
    """Gradients of ``a @ b`` (a flattened to ``a2`` (M, K); ``lead`` its leading axes or
    None): ``(g b^T, a^T g, g2)``, None where ``b`` or ``a2`` was not saved; g2 is g as (M, N)."""
    g2 = g if lead is None else g.reshape(math.prod(lead), g.shape[-1])  # not -1: N may be 0
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

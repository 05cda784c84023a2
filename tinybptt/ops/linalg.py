"""Matrix products: ``@`` (MatMul) and ``linear`` (x @ w + b as one node)."""
import math

from .. import kernels
from ..autograd import Function
from ..errors import DTypeError, ShapeError, describe

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

"""Losses and normalisers: ``mse_loss``, ``cross_entropy``, ``nll_loss``, ``softmax``, ``log_softmax``;
``linear``, the affine map of ``nn.Linear`` with the weight as PyTorch stores it; and ``embedding``,
the lookup of ``nn.Embedding`` (written with its op, in ``ops/embedding.py``).

``log_softmax`` and ``softmax`` are Functions computed in the stable form
(subtract the row maximum before exponentiating), so logits of +-1000 give
finite values and gradients; ``cross_entropy`` is ``nll_loss(log_softmax(x))``.

Non-finite logits: ``-inf`` is a class of probability 0 (log-probability
``-inf``, gradient 0), so masking with ``-inf`` works.  A row whose softmax is
undefined -- it holds a NaN or a ``+inf``, or only ``-inf`` -- comes out all
NaN, values and gradients, as in PyTorch, so ``tinybptt.inspect.detect_anomaly``
can name it.  None of this raises a NumPy warning.
"""
import numpy as np

from ..autograd import Function, Tensor
from ..errors import ShapeError, describe
from ..ops.embedding import embedding  # noqa: F401  (F.embedding: written with its op, in ops/embedding.py)
from ..ops.linalg import Linear as _LinearOp
from ..ops.operands import integer_array, operand_array

_REDUCTIONS = ("mean", "sum", "none")


def _tensor(x, who, like=None):
    if isinstance(x, Tensor):
        return x
    return Tensor(operand_array(who, x, like.dtype if like is not None else None))


# softmax and log_softmax are ops (tinybptt/ops/softmax.py); the losses use them from here too.
from ..ops.softmax import LogSoftmax, Softmax, log_softmax, softmax  # noqa: E402,F401


def _reduce(loss, reduction, who, shape=None):
    if reduction not in _REDUCTIONS:
        raise ValueError("%s: reduction must be one of %s, got %r" % (who, _REDUCTIONS, reduction))
    if reduction == "mean":
        if loss.size == 0:
            raise ShapeError("%s: reduction='mean' over no elements (input shape %s); a mean of nothing is "
                             "undefined -- use reduction='sum' (which gives 0) or skip empty batches"
                             % (who, tuple(loss.shape if shape is None else shape)))
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _targets(target, lead_shape, C, who):
    t = integer_array(who, target.data if isinstance(target, Tensor) else target, "target class indices")
    if t.shape != tuple(lead_shape):
        raise ShapeError("%s: target must have shape %s (the logits' shape without the class axis), got %s"
                         % (who, tuple(lead_shape), t.shape))
    if t.size and (t.min() < 0 or t.max() >= C):
        raise ShapeError("%s: target class indices must lie in [0, %d), got values from %d to %d"
                         % (who, C, t.min(), t.max()))
    return t


class NLLLoss(Function):
    """``-log_probs[k, target[k]]`` for each row k, summed, averaged or one per row, as one node.

    ``log_probs`` (..., C) is read as n rows of C classes, ``target`` (n integer
    classes, already checked) picks one entry of each row.  Backward: only the
    picked entries get a gradient, ``-g`` (``-g / n`` for the mean over n rows; the
    row's own ``-g[k]`` for reduction "none"), every other entry 0.  Each row has
    one target, so the picked entries are distinct and the backward writes them
    with one assignment.  The plain composition -- reshape, fancy index, negate,
    reduce -- makes four nodes, and the fancy index's backward is a scatter-add
    (``np.add.at``), which must allow for repeated indices; this is the loss of
    every classification step, as PyTorch's ``nll_loss`` is one node too.
    """

    name = "nll_loss"

    @staticmethod
    def forward(ctx, log_probs, target, reduction="mean"):
        rows, classes = np.arange(target.size), target.reshape(-1)
        picked = -log_probs.reshape(target.size, log_probs.shape[-1])[rows, classes]
        ctx.shape, ctx.rows, ctx.classes, ctx.reduction = log_probs.shape, rows, classes, reduction
        if reduction == "none":
            return picked.reshape(target.shape)
        return np.asarray(picked.mean() if reduction == "mean" else picked.sum())

    @staticmethod
    def backward(ctx, g):
        if not ctx.needs_input_grad[0]:
            return None, None
        n = ctx.rows.size
        grad = np.zeros((n, ctx.shape[-1]), g.dtype)
        grad[ctx.rows, ctx.classes] = -g / n if ctx.reduction == "mean" else -g.reshape(-1)
        return grad.reshape(ctx.shape), None


def _class_rows(x, target, reduction, who, what):
    """``x`` (..., C) as a Tensor and ``target`` checked against it (integer classes of shape
    ``x.shape[:-1]``), with ``reduction``: the arguments ``nll_loss`` and ``cross_entropy`` share.
    ``what`` names ``x`` in the errors ("log_probs", "logits")."""
    x = _tensor(x, who)
    if x.ndim < 1:
        raise ShapeError("%s: %s must have a class axis, got %s" % (who, what, describe(x.data)))
    t = _targets(target, x.shape[:-1], x.shape[-1], who)
    if reduction not in _REDUCTIONS or (reduction == "mean" and t.size == 0):
        _reduce(x, reduction, who)  # raises the clear error
    return x, t


def nll_loss(log_probs, target, reduction="mean"):
    """Negative log-likelihood of integer ``target`` (shape ``log_probs.shape[:-1]``) under ``log_probs`` (..., C)."""
    log_probs, t = _class_rows(log_probs, target, reduction, "nll_loss", "log_probs")
    return NLLLoss.apply(log_probs, t, reduction=reduction)


def cross_entropy(logits, target, reduction="mean"):
    """Cross-entropy of integer class ``target`` given unnormalised ``logits`` (..., C).

    ``target`` has the logits' shape without the last axis (e.g. logits (T, B, C),
    target (T, B)).  Computed as ``nll_loss(log_softmax(logits))``: stable for
    logits of any magnitude.  ``reduction``: "mean" (default), "sum" or "none".
    """
    logits, t = _class_rows(logits, target, reduction, "cross_entropy", "logits")
    return NLLLoss.apply(log_softmax(logits, axis=-1), t, reduction=reduction)  # (target checked above)


class MSELoss(Function):
    """``(input - target)^2``, summed, averaged or elementwise, as one node.

    Backward, as PyTorch computes it: ``d/d input = norm * (input - target) * g``
    with ``norm = 2 / n`` for the mean over n elements (2 otherwise), and
    ``d/d target`` its negative.  One node instead of the three of
    ``(input - target) ** 2`` then ``mean`` (subtract, multiply, reduce): the loss of
    every training step, so the two fewer nodes are saved at every step.
    """

    name = "mse_loss"

    @staticmethod
    def forward(ctx, input, target, reduction="mean"):
        d = input - target
        ctx.save_for_backward(d)
        ctx.norm = 2.0 / d.size if reduction == "mean" else 2.0
        sq = d * d
        if reduction == "none":
            return sq
        # The sum as np.add.reduce and the mean as that sum over n: the numbers of sq.sum() and sq.mean()
        # (the same pairwise sum; NumPy's mean divides it in float64 and rounds, which for one division
        # gives the same float32 as dividing in float32), without the Python-level wrappers of sum() and
        # mean(), whose checks cost more than the arithmetic here (the loss of an adding-problem training
        # step, T=100, B=32, H=64, one pinned core: the read-out and loss 18-24% faster).
        total = np.add.reduce(sq, axis=None)
        return np.asarray(total / d.size if reduction == "mean" else total)

    @staticmethod
    def backward(ctx, g):
        (d,) = ctx.saved_tensors
        gx = (d * ctx.norm) * g
        return (gx if ctx.needs_input_grad[0] else None), (-gx if ctx.needs_input_grad[1] else None)


def mse_loss(input, target, reduction="mean"):
    """Mean (or summed) squared error between ``input`` and ``target`` of the same shape."""
    input = _tensor(input, "mse_loss")
    target = _tensor(target, "mse_loss", like=input)
    if input.shape != target.shape:
        raise ShapeError("mse_loss: input and target must have the same shape, got %s"
                         % describe(input.data, target.data))
    if reduction not in _REDUCTIONS or (reduction == "mean" and input.size == 0):
        _reduce(input, reduction, "mse_loss")  # raises the clear error
    return MSELoss.apply(input, target, reduction=reduction)


class WeightLinear(Function):
    """``input @ weight.T + bias`` with ``weight`` (out_features, in_features), as PyTorch stores it.

    The plain way is ``ops.linear(input, weight.T, bias)``: a transpose node, then
    the linear node.  This is that linear node (``ops.linalg.Linear``, forward and
    backward) run on the transposed weight, a view, and its weight gradient
    transposed back: one node fewer on a path every read-out takes (in an
    adding-problem training step, T=100, B=32, H=64, one pinned core, the
    read-out and loss took 7-13 us less, 6-13% of their time, over two runs
    of each cell).
    """

    name = "linear"

    @staticmethod
    def forward(ctx, input, weight, bias=None):
        return _LinearOp.forward(ctx, input, weight.T, bias)

    @staticmethod
    def backward(ctx, g):
        dx, dw_t, db = _LinearOp.backward(ctx, g)
        return dx, (None if dw_t is None else np.ascontiguousarray(dw_t.T)), db


def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` over the last axis of ``input`` (..., in_features), PyTorch's
    ``F.linear``: ``weight`` (out_features, in_features), ``bias`` (out_features,) or None."""
    input, weight = _tensor(input, "linear"), _tensor(weight, "linear")
    if weight.ndim != 2 or input.ndim < 1 or input.shape[-1] != weight.shape[1]:
        raise ShapeError("linear: expected input (..., in_features) and weight (out_features, in_features), got %s"
                         % describe(input.data, weight.data))
    if bias is None:
        return WeightLinear.apply(input, weight)
    return WeightLinear.apply(input, weight, _tensor(bias, "linear"))

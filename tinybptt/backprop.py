"""The backward pass: walking the graph from a loss back to its leaves.

``autograd.py`` records the graph as the forward runs: every op call leaves a
node (a ``Context``) that knows its inputs, and every Tensor knows the node that
made it.  This module walks that graph backwards; ``Tensor.backward`` calls
``backward`` here.  The walk has four parts.

The order.  A node may run its backward only once every consumer of its
outputs has run theirs, because only then is the gradient of its outputs
complete.  No search is needed for that order: an op's inputs exist before
the op runs, so a node is always created after the nodes that made its inputs,
and newest-first creation order (largest ``id`` first) is a valid order.
``topological_order`` therefore only collects the nodes the root can reach --
with a loop and an explicit stack, since recursion would exhaust Python's stack
on a 100 000-step unroll -- and sorts them by id.

Gathering.  ``_backward_pass`` keeps, for each node still waiting, one slot per
output (``pending[node][k]``).  When a consumer's backward returns the gradient
of an input tensor ``t``, it is added into the slot of output ``t._index`` of
``t``'s node.  A leaf has no node: its gradient is added into ``t.grad`` (a
non-leaf marked with ``retain_grad()`` also keeps its sum there).  A
node whose outputs received nothing is skipped; one that produced several
outputs (a recurrent layer's outputs and final cell state) is called once, with
all of them.

The checks before a node's backward (``_call_backward``).  A node already
walked without ``retain_graph`` has been freed: its saved values are gone, so
the walk stops with a ``GraphError`` naming it.  A tensor the node saved must
not have been edited in place since the forward (``saved.check``).  An output
that received no gradient gets zeros of its shape (unless the Function says it
accepts None and no backward hook is installed).  The backward hooks see the
node and its gradients; then the Function's backward must return a gradient
(or None) for every input.  After it, each gradient must have its input's shape
(``_checked_grad``; a NumPy scalar or another float dtype is converted).  Unless
``retain_graph`` is set, the node is then freed.

The speed device.  Adding gradients the plain way, ``total + g``
(``_accumulate``), makes a new array for every contribution, and a weight used
at each of T unrolled steps gets T of them.  ``_InPlaceSums`` adds in place
instead, but only into sums this walk allocated itself and has not yet handed
to a node's backward -- never into an array someone else may still hold.
"""
import operator

import numpy as np

from . import saved as saved_values
from .errors import GraphError, ShapeError
from .modes import thread
# The walk needs Tensor (to tell tensor inputs from other arguments), and Tensor.backward needs the
# walk.  The cycle is broken by order: this module imports Tensor at its top, and autograd.py imports
# the walk only at its end, after Tensor exists.  autograd.py always runs first: the package's
# __init__ imports it (through ops) before anything else.
from .autograd import Tensor


def topological_order(root):
    """Nodes reachable from ``root``, each after every node that consumes its outputs.

    An op needs its inputs before it runs, so every node is created after the
    nodes that made its inputs: the reverse of creation order (largest ``id``
    first) is such an order.  So: collect the reachable nodes (a loop with an
    explicit stack -- recursion would overflow Python's stack on a 100 000-step
    unroll), then sort them by id, latest first.
    """
    if root._ctx is None:
        return []
    seen = {root._ctx}
    stack = [root._ctx]
    while stack:
        inputs = stack.pop().inputs
        if inputs:
            for t in inputs:
                if isinstance(t, Tensor):
                    c = t._ctx
                    if c is not None and c not in seen:
                        seen.add(c)
                        stack.append(c)
    return sorted(seen, key=_creation_id, reverse=True)


_creation_id = operator.attrgetter("id")


def backward(root, grad=None, retain_graph=False):
    """Backpropagate from ``root``; see ``Tensor.backward``."""
    grad = _root_grad(root, grad)
    if root._ctx is None:  # backward on a leaf: its gradient is grad itself
        root.grad = _accumulate(root.grad, grad)
        return
    _backward_pass(root, grad, topological_order(root), retain_graph)
    if root._retain:
        root.grad = _accumulate(root.grad, grad)


def _root_grad(root, grad):
    """The gradient that starts the pass: ``grad`` checked, or 1 for a one-element root."""
    if not root.requires_grad:
        raise GraphError(
            "backward: this tensor does not require grad (op=%s, shape %s); "
            "did you create it under no_grad() or from inputs without requires_grad=True?"
            % (root.op, tuple(root.shape))
        )
    if grad is None:
        if root.data.size != 1:
            raise ShapeError(
                "backward: grad can be omitted only for a one-element output; this one has shape %s. "
                "Pass grad= of that shape, or reduce to a scalar loss first (e.g. .sum())." % (tuple(root.shape),)
            )
        one = np.empty(root.data.shape, root.data.dtype)  # (np.ones is a Python-level wrapper of these two)
        one.fill(1)
        return one
    from .ops.operands import operand_array  # (imported here: the ops are built on this engine)
    grad = operand_array("backward", grad.data if isinstance(grad, Tensor) else grad, root.dtype, what="grad")
    if grad.shape != root.shape:
        raise ShapeError("backward: grad has shape %s but the tensor has shape %s" % (grad.shape, root.shape))
    return grad


def _backward_pass(root, grad, order, retain_graph):
    """The heart of backpropagation: walk the nodes in order, call, accumulate.

    ``pending[node]`` gathers the gradients of a node's outputs as its consumers
    hand them back.  The topological order puts every consumer of a node before
    the node itself, so when the loop reaches a node its gradients are complete.
    Accumulating is ``total + g``; ``sums`` does that in place where it safely
    can (a speed device, see ``_InPlaceSums``).
    """
    sums = _InPlaceSums()
    pending = {root._ctx: _empty_slots(root._ctx)}
    pending[root._ctx][root._index] = grad
    for node in order:
        grads_out = pending.pop(node, None)
        if grads_out is None:  # no gradient reached this node (e.g. only an unused output)
            continue
        sums.hand_over(grads_out)
        grads_in = _call_backward(node, grads_out)
        for t, g, need in zip(node.inputs, grads_in, node.needs_input_grad):
            if not need or g is None:
                continue
            data = t.data
            if type(g) is not np.ndarray or g.shape != data.shape or g.dtype != data.dtype:
                g = _checked_grad(node, t, g)  # converted, or a ShapeError
            if t._ctx is None:  # a leaf: the sum is its .grad
                t.grad = sums.add(t.grad, g, keep=True)
                continue
            if t._retain:
                t.grad = g.copy() if t.grad is None else _accumulate(t.grad, g)
            slots = pending.get(t._ctx)
            if slots is None:  # the first gradient for that node: it is the sum so far
                slots = pending[t._ctx] = _empty_slots(t._ctx)
                slots[t._index] = g
            else:
                slots[t._index] = sums.add(slots[t._index], g)
        if not retain_graph:
            node.free()


def _empty_slots(node):
    return [None] * len(node.out_meta)


def _accumulate(total, g):
    """``total + g`` as a new array (``g`` itself when nothing was there yet)."""
    if total is None:
        return g
    s = total + g
    return s if isinstance(s, np.ndarray) else np.asarray(s)  # 0-D + 0-D gives a NumPy scalar


class _InPlaceSums:
    """Speed device: accumulate gradients in place into sums this backward pass made.

    The plain rule, ``total = total + g`` (``_accumulate``), allocates a new array
    per contribution.  A weight used at each of T steps of an unrolled graph gets
    T contributions, so the plain rule allocates T arrays of the weight's size.
    ``np.add(total, g, out=total)`` allocates nothing, but is safe only into an
    array no one else holds, so this object remembers (by id) the sums it made.
    A sum handed to a node's backward is forgotten: that node may keep it or pass
    it on.  A leaf's first gradient is copied (``g`` may be shared, e.g. the
    same array an ``add`` passes to both its inputs) and is then this pass's own.

    Measured with and without it (forward + backward of LSTM, GRU and RNN layers,
    float32, C backend, CPU time, one pinned core): 1.13-1.16x faster in
    mode="ops" at T=1000, B=8, I=H=64; 0.99-1.05x (noise) in mode="ops" at
    T=50/100 and in mode="sequence", whose one node per layer receives one
    contribution per weight.
    """

    def __init__(self):
        self.mine = {}  # id -> sum this pass allocated and nobody else holds

    def add(self, total, g, keep=False):
        """``total + g``; ``keep``: the result is stored for the user (a leaf's .grad), so never ``g`` itself."""
        if total is None:
            if not keep:
                return g
            total = g.copy()
            self.mine[id(total)] = total  # the copy's id: under g's, a later array reusing g's id would pass as ours
            return total
        if id(total) in self.mine:
            np.add(total, g, out=total)
            return total
        s = _accumulate(total, g)
        self.mine[id(s)] = s
        return s

    def hand_over(self, grads):
        """``grads`` go to a node's backward now: no longer this pass's to modify."""
        if self.mine:
            for g in grads:
                self.mine.pop(id(g), None)


def _call_backward(node, grads_out):
    """``node.fn.backward(node, *grads_out)`` with the checks and hooks around it.

    Outputs that received no gradient get zeros (unless the Function says it
    accepts None); backward hooks see the node first; the result is a tuple with
    one entry per input.
    """
    if node.freed:
        raise GraphError(
            "backward: node %s was already backpropagated and its saved values freed. "
            "If you are carrying a hidden state from one sequence chunk to the next, detach it "
            "between chunks (h = h.detach(), or tinybptt.nn.utils.detach_state(state)); use "
            "retain_graph=True only if you really mean to backprop through the same graph twice."
            % node.describe()
        )
    if node.saved_versions:
        saved_values.check(node)
    hooks = thread.modes.backward_hooks
    if len(grads_out) > 1 and (hooks or not node.fn.accepts_none_grads):  # (one output: it has its gradient)
        grads_out = [np.zeros(shape, dtype) if g is None and shape is not None else g
                     for g, (shape, dtype) in zip(grads_out, node.out_meta)]
    if hooks:
        grads_out = tuple(grads_out)
        for hook in list(hooks):
            hook(node, grads_out)
    grads_in = node.fn.backward(node, *grads_out)  # node.fn: a hook may have wrapped it (anomaly mode does)
    if type(grads_in) is not tuple:
        grads_in = (grads_in,)
    if len(grads_in) < len(node.inputs):
        raise GraphError(
            "backward of %s returned %d gradients for %d inputs" % (node.describe(), len(grads_in), len(node.inputs))
        )
    return grads_in


def _checked_grad(node, t, g):
    """``g``, the gradient ``node`` computed for its input ``t``, as an array of t's shape and dtype."""
    if type(g) is not np.ndarray:  # 0-D arithmetic in a backward returns NumPy scalars
        g = np.asarray(g)
    data = t.data
    if g.shape != data.shape:
        raise ShapeError(
            "backward of %s produced a gradient of shape %s for an input of shape %s"
            % (node.describe(), g.shape, data.shape)
        )
    return g if g.dtype == data.dtype else g.astype(data.dtype)

"""Anomaly mode: name the first node whose forward or backward produced NaN or Inf.

::

    with tinybptt.inspect.detect_anomaly():
        out, h = rnn(x, h0)
        loss = (out ** 2).sum()
        loss.backward()
    # AnomalyError: backward of tanh [rnn.l0, t=37, h] #812 produced NaN in the gradient
    #   of input 0 (shape (1, 64) float64) from finite gradients; inputs: (1, 64) float64

By default the first anomaly raises ``AnomalyError`` (a ``GraphError``, so a
``RuntimeError``) right where it happens, so the traceback points at the
offending op call in the forward pass, or at ``backward()``.  With
``detect_anomaly(raise_error=False)`` nothing is raised: every anomalous node
is recorded in the returned ``AnomalyLog`` (``log.first`` is the one that
matters: later ones usually just propagate it).

A recurrent layer in ``mode="sequence"`` is a single node for all time steps;
anomaly mode then reads the time step off the node's (T, B, .) arrays, so the
report still says when: ``lstm_sequence [lstm.l0, t=37]``.

"First" means: in the forward pass, the first op (in execution order) whose
outputs are not finite; in the backward pass, the first node (in backward
order) whose backward turned finite output gradients into non-finite input
gradients.  A node whose *inputs* already held NaN/Inf is still reported (its
``inputs_finite`` is False) when nothing earlier was caught, e.g. when the data
itself contains NaN.

Forward checking uses ``tinybptt.autograd.forward_hook``; backward checking wraps
each node's backward as the backward pass reaches it.  Both cost a scan of every
array, so use anomaly mode to debug, not to train.
"""
import contextlib
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ..autograd import Tensor, backward_hook, forward_hook
from ..errors import GraphError, describe


class AnomalyError(GraphError):
    """Raised in anomaly mode at the first NaN/Inf; ``.anomaly`` is the ``Anomaly`` record."""

    def __init__(self, anomaly):
        super().__init__(anomaly.message())
        self.anomaly = anomaly


@dataclass
class Anomaly:
    """Where a NaN or Inf first appeared."""

    phase: str  # "forward" or "backward"
    op: str
    label: Optional[str]
    step: Optional[int]
    node_id: int
    input_shapes: List[tuple]
    input_dtypes: List[str]
    bad: str  # "nan", "inf" or "nan+inf"
    which: str  # e.g. "output 0" or "gradient of input 1"
    inputs_finite: bool
    node_repr: str = ""
    extra: dict = field(default_factory=dict)
    role: Optional[str] = None  # the node's role in its cell, e.g. "f" for an LSTM's forget gate

    def message(self):
        tags = [str(x) for x in (self.label, None if self.step is None else "t=%s" % self.step, self.role)
                if x is not None]
        where = "%s%s #%d" % (self.op, " [%s]" % ", ".join(tags) if tags else "", self.node_id)
        shapes = ", ".join("%s %s" % (s, d) for s, d in zip(self.input_shapes, self.input_dtypes)) or "none"
        src = "from finite inputs" if self.inputs_finite else "(its inputs were already non-finite)"
        if self.phase == "forward":
            head = "forward of %s produced %s in %s %s" % (where, self.bad.upper(), self.which, src)
        else:
            src = "from finite output gradients" if self.inputs_finite else "(its output gradients were already non-finite)"
            head = "backward of %s produced %s in the %s %s" % (where, self.bad.upper(), self.which, src)
        return "%s; input shapes: %s. Look at what feeds this op at this step (log/div of 0? overflow? " \
               "an exploding recurrent state?)." % (head, shapes)

    def to_dict(self):
        return {"phase": self.phase, "op": self.op, "label": self.label, "step": self.step, "node_id": self.node_id,
                "input_shapes": [list(s) for s in self.input_shapes], "input_dtypes": self.input_dtypes,
                "bad": self.bad, "which": self.which, "inputs_finite": self.inputs_finite, "role": self.role}


class AnomalyLog:
    """What ``detect_anomaly(raise_error=False)`` found: ``anomalies`` in the order met, ``first``."""

    def __init__(self):
        self.anomalies = []

    @property
    def first(self):
        return self.anomalies[0] if self.anomalies else None

    def __bool__(self):
        return bool(self.anomalies)

    def __len__(self):
        return len(self.anomalies)

    def __repr__(self):
        return "<AnomalyLog: %d anomalies%s>" % (len(self.anomalies),
                                                   "; first: " + self.first.message() if self.first else "")


def _bad_kind(arrays):
    nan = inf = False
    for a in arrays:
        if a is None or not isinstance(a, np.ndarray) or a.dtype.kind not in "fc":
            continue
        if not np.all(np.isfinite(a)):
            nan = nan or bool(np.isnan(a).any())
            inf = inf or bool(np.isinf(a).any())
    if nan and inf:
        return "nan+inf"
    return "nan" if nan else ("inf" if inf else None)


def _first_bad(arrays):
    for k, a in enumerate(arrays):
        if isinstance(a, np.ndarray) and a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            return k
    return None


def _sequence_step(ctx, a, first):
    """The time step of a non-finite value in a whole-sequence node's (T, B, .) array.

    A recurrent layer in ``mode="sequence"`` is one node for all T steps, so the
    node alone cannot say when things went wrong; its time-major arrays can.  The
    forward pass runs forward in time (``first=True``: the earliest bad step), the
    backward pass backward (the latest one).  None for any other node.
    """
    if ctx.step is not None or not ctx.op.endswith("_sequence") or not isinstance(a, np.ndarray) or a.ndim != 3:
        return None
    bad = np.flatnonzero(~np.isfinite(a).reshape(a.shape[0], -1).all(axis=1))
    if bad.size == 0:
        return None
    return int(bad[0] if first else bad[-1])


_wrapped = {}  # original Function class -> checking subclass


def _checking_class(fn, check):
    """A subclass of ``fn`` with the same op name whose backward checks its result, then restores ``ctx.fn``."""
    cls = _wrapped.get(fn)
    if cls is None:
        def backward(ctx, *grads):
            ctx.fn = fn
            res = fn.backward(ctx, *grads)
            hook = getattr(ctx, "_anomaly_check", None)
            if hook is not None:
                hook(ctx, grads, res)
            return res

        cls = type(fn.__name__, (fn,), {"backward": staticmethod(backward), "name": fn.op_name(),
                                        "__module__": fn.__module__})
        _wrapped[fn] = cls
    return cls


@contextlib.contextmanager
def detect_anomaly(forward=True, backward=True, raise_error=True):
    """Inside this block, catch the first node whose forward or backward makes NaN/Inf.

    Parameters
    ----------
    forward, backward : bool
        Which passes to check.
    raise_error : bool
        Raise ``AnomalyError`` at the first anomaly (default), or record all of them
        in the ``AnomalyLog`` yielded by the context manager.
    """
    log = AnomalyLog()

    def report(a):
        log.anomalies.append(a)
        if raise_error and len(log.anomalies) == 1:
            raise AnomalyError(a)

    def fwd(ctx, inputs, outputs):
        k = _first_bad(outputs)
        if k is None:
            return
        arrays = [a for a in inputs if isinstance(a, np.ndarray)]
        step, which = ctx.step, "output %d" % k
        t = _sequence_step(ctx, outputs[k], first=True)
        if t is not None:  # the message's [label, t=...] tag then says when
            step = t
        report(Anomaly("forward", ctx.op, ctx.label, step, ctx.id, [tuple(a.shape) for a in arrays],
                       [str(a.dtype) for a in arrays], _bad_kind([outputs[k]]), which,
                       _bad_kind(arrays) is None, repr(ctx), role=ctx.role))

    def check_backward(ctx, grads_out, grads_in):
        if not isinstance(grads_in, tuple):
            grads_in = (grads_in,)
        ctx._anomaly_check = None
        k = _first_bad([np.asarray(g) if g is not None else None for g in grads_in])
        if k is None:
            return
        ins = [t for t in (ctx.inputs or ()) if isinstance(t, Tensor)]
        step, which = ctx.step, "gradient of input %d" % k
        t = _sequence_step(ctx, grads_in[k], first=False) if k == 0 else None  # input 0: the sequence x
        if t is not None:
            step = t
        report(Anomaly("backward", ctx.op, ctx.label, step, ctx.id, [tuple(t.shape) for t in ins],
                       [str(t.dtype) for t in ins], _bad_kind([np.asarray(grads_in[k])]), which,
                       _bad_kind(list(grads_out)) is None, repr(ctx), role=ctx.role))

    def bwd(node, grads_out):
        # install the checking wrapper for this node only; it restores node.fn when it runs
        node.fn = _checking_class(node.fn, check_backward)
        node._anomaly_check = check_backward

    with contextlib.ExitStack() as stack:
        if forward:
            stack.enter_context(forward_hook(fwd))
        if backward:
            stack.enter_context(backward_hook(bwd))
        yield log


def check_finite(name, array, step=None):
    """Raise ``AnomalyError``-style ``GraphError`` if ``array`` holds NaN/Inf (a helper for user code)."""
    a = array.data if isinstance(array, Tensor) else np.asarray(array)
    bad = _bad_kind([a])
    if bad:
        raise GraphError("%s%s holds %s (%s)" % (name, "" if step is None else " at t=%s" % step, bad.upper(),
                                                 describe(a)))

"""Telling a gradient that underflowed to zero from one that is zero exactly.

Backward rules are linear in the incoming gradient, so running a node's
backward on ``g * 2**e`` gives exactly ``2**e`` times the true result, without
the underflow.  While the real backward pass runs, ``UnderflowProbe.replay``
runs each node's backward once more (on a copy of its context) with ``g``
scaled up so that its largest entry is about ``2**(emax/2)``.  An input entry
whose rescaled contribution is non-zero but whose true size (rescaled / 2**e)
is below the smallest normal number is one that underflowed; if the real
gradient there is 0, it was *flushed*.
"""
import copy
import math

import numpy as np

from ..autograd import Tensor
from . import numerics


def grad_key(t):
    """The key of tensor ``t``'s gradient: ``(id(node), output index)``, or ``("leaf", id(t))``."""
    return ("leaf", id(t)) if t._ctx is None else (id(t._ctx), t._index)


def replayable(node):
    """May the node's backward be run a second time?  Not if it has side effects.

    A Function opts out with the class attribute ``inspect_replay = False``
    (the fused recurrent nodes, whose backward fills the layer's gradient trace).
    """
    return getattr(node.fn, "inspect_replay", True)


class UnderflowProbe:
    """Replays backward rules at a rescaled gradient; remembers which entries underflowed.

    ``tiny[key]``      bool mask of the entries of a gradient whose true contribution
                       (from some consumer) is below the normal range;
    ``flushers[key]``  the ids of the consumer nodes where such contributions were made.
    """

    def __init__(self):
        self.tiny = {}
        self.flushers = {}

    def replay(self, node, grads_out):
        """Run ``node``'s backward at ``grads_out * 2**e`` and note the contributions that underflow."""
        m = max((numerics.max_abs(g) for g in grads_out if g is not None), default=0.0)
        if m == 0.0 or not math.isfinite(m) or not replayable(node):
            return
        dt = next(g.dtype for g in grads_out if g is not None)
        e = numerics.power_of_two_scale(m) + ((np.finfo(dt).maxexp // 2) if dt.kind == "f" else 0)
        scaled = tuple(None if g is None else np.ldexp(g, e).astype(g.dtype, copy=False) for g in grads_out)
        try:
            with np.errstate(all="ignore"):
                grads_in = node.fn.backward(copy.copy(node), *scaled)
        except Exception:  # a backward that cannot be replayed is simply not checked
            return
        if not isinstance(grads_in, tuple):
            grads_in = (grads_in,)
        for t, c, need in zip(node.inputs, grads_in, node.needs_input_grad):
            if need and c is not None and isinstance(t, Tensor):
                self._note(node, t, np.asarray(c), e)

    def _note(self, node, t, c, e):
        thresh = math.ldexp(float(np.finfo(t.dtype).tiny), e)
        with np.errstate(all="ignore"):
            a = np.abs(c.astype(np.float64))
            mask = (a > 0) & (a < thresh)
        if mask.shape != t.shape:
            try:
                mask = np.broadcast_to(mask, t.shape)
            except ValueError:
                return
        k = grad_key(t)
        self.tiny[k] = mask if k not in self.tiny else (self.tiny[k] | mask)
        if mask.any():
            self.flushers.setdefault(k, set()).add(node.id)

    def flushed(self, keyed_grads):
        """How many entries of the gradients ``[(key, g), ...]`` are 0 only because they underflowed."""
        n = 0
        for k, g in keyed_grads:
            mask = self.tiny.get(k)
            if mask is not None and g is not None:
                n += int(np.count_nonzero(mask & (np.asarray(g) == 0)))
        return n

    def where(self, keys):
        """Ids of the nodes whose backward made contributions to ``keys`` underflow."""
        return sorted(set().union(*[self.flushers.get(k, set()) for k in keys]))

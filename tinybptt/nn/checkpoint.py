"""Gradient checkpointing of a multi-layer recurrent unroll (``checkpoint=k`` on a layer).

A plain ``mode="sequence"`` forward keeps every step's workspace (gates, cell
states) of every layer until backward: O(T) activation memory.  The
checkpointed forward keeps only the state of every layer at every k-th step and
throws the workspace away; the backward pass walks the k-step segments from the
last to the first, recomputes each segment's forward from its stored states
(keeping the workspace this time), and backpropagates through it, carrying
dL/dh and dL/dc across the segment boundary.  Memory O(T/k + k), at the price
of one extra forward pass.
"""
import numpy as np

from .. import kernels
from ..autograd import Function
from ..kernels.recurrent import carry_at_true_size
from .recurrent_fn import named_function
from .trace import store_segment
from .utils import nbytes_of

_WEIGHTS = ("dw_ih", "dw_hh", "db_ih", "db_hh")


class CheckpointStats:
    """Memory held by a checkpointed forward (``layer.checkpoint_stats`` after forward/backward).

    ``stored_bytes``        the states kept between forward and backward (every k-th state
                            of every layer): O(T/k).
    ``peak_segment_bytes``  the largest recomputed k-step segment (kernel workspace of all
                            layers plus the per-layer segment inputs) during backward: O(k).
    ``peak_bytes``          their sum: the activation memory the backward pass needed.
    ``full_bytes``          what a plain ``mode="sequence"`` forward would have kept (the
                            kernel workspace of every layer over all T steps), measured
                            the same way during the forward pass.
    """

    def __init__(self, T, k):
        self.T, self.k = T, k
        self.stored_bytes = 0
        self.peak_segment_bytes = 0
        self.full_bytes = 0

    @property
    def peak_bytes(self):
        return self.stored_bytes + self.peak_segment_bytes

    def __repr__(self):
        return ("CheckpointStats(T=%d, k=%d, stored_bytes=%d, peak_segment_bytes=%d, peak_bytes=%d, full_bytes=%d)"
                % (self.T, self.k, self.stored_bytes, self.peak_segment_bytes, self.peak_bytes, self.full_bytes))


def _segment_forward(backend, cell, inp, states, weights):
    """Run one segment through every layer from ``states`` [(h, c) per layer].

    Returns the top layer's output and each layer's kernel workspace (``saved``).
    """
    saves = []
    for (h, c), (w_ih, w_hh, b_ih, b_hh) in zip(states, weights):
        inp, _c_out, saved = backend.seq_forward(cell, inp, h, c, w_ih, w_hh, b_ih, b_hh)
        saves.append(saved)
    return inp, saves


class CheckpointedFunction(Function):
    """A multi-layer unroll that keeps only every k-th state and recomputes segments in backward.

    Inputs: x, then per layer (h0, c0, w_ih, w_hh, b_ih, b_hh).  Outputs: the top
    layer's out (T, B, H), h_n (L, B, H) and, for the LSTM, c_n (L, B, H).
    """

    inspect_replay = False  # its backward fills the trace slots: an inspection must not run it twice

    @staticmethod
    def forward(ctx, x, *args, cell=None, k=None, traces=None, stats=None):
        backend = kernels.backend
        layers = [args[j:j + 6] for j in range(0, len(args), 6)]
        weights = [lay[2:] for lay in layers]
        exclude = (x,) + tuple(w for ws in weights for w in ws)
        states = [(h0, c0) for (h0, c0, *_w) in layers]
        bounds = []  # bounds[s] = per-layer (h, c) at the start of segment s
        outs = []
        for s in range(0, x.shape[0], k):
            bounds.append([(h.copy(), None if c is None else c.copy()) for h, c in states])
            out, saves = _segment_forward(backend, cell, x[s:s + k], states, weights)
            if stats is not None:
                stats.full_bytes += nbytes_of(saves, exclude=exclude)
            states = [(sv.out[-1], None if sv.c_out is None else sv.c_out[-1]) for sv in saves]
            del saves  # the point of checkpointing: the workspace goes now
            outs.append(out)
        out = np.concatenate(outs) if len(outs) > 1 else outs[0]
        h_n = np.stack([h for h, _ in states])
        c_n = np.stack([c for _, c in states]) if cell == "lstm" else None
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(x, weights, bounds)  # h0/c0 live in bounds[0]
            ctx.backend, ctx.cell, ctx.k, ctx.traces, ctx.stats = backend, cell, k, traces, stats
            if stats is not None:
                stats.stored_bytes = nbytes_of(bounds)
        return (out, h_n, c_n) if cell == "lstm" else (out, h_n)

    @staticmethod
    def backward(ctx, d_out, d_hn, d_cn=None):
        x, weights, bounds = ctx.saved_tensors
        L, T = len(weights), x.shape[0]
        need_dx = ctx.needs_input_grad[0]
        run = _Backward(ctx, x, weights, d_out, d_hn, d_cn)
        exclude = (x,) + tuple(w for lay in weights for w in lay)
        dx = np.empty_like(x) if need_dx else None
        starts = list(range(0, T, ctx.k))
        for si in reversed(range(len(starts))):
            s, e = starts[si], min(starts[si] + ctx.k, T)
            _out, saves = _segment_forward(ctx.backend, ctx.cell, x[s:e], bounds[si], weights)
            if ctx.stats is not None:
                ctx.stats.peak_segment_bytes = max(ctx.stats.peak_segment_bytes, nbytes_of(saves, exclude=exclude))
            d_seg = run.segment(saves, s, e, need_dx)
            if need_dx:
                dx[s:e] = d_seg
        result = [dx]
        for l in range(L):
            gl = run.grads[l]
            result += [*true_carry(run, l), *gl]
        run.deposit_traces(ctx.traces)
        return tuple(result)

    @staticmethod
    def trace_slots(ctx):
        """The ``TraceSlot`` of every layer (none if the layer does not record a trace)."""
        return list(getattr(ctx, "traces", None) or ())


def backprop_segment(back, backend, cell, tapes, d_seg, s, e, need_dx):
    """Backpropagate steps s..e-1 through every layer, top layer first: one ``seq_backward`` per layer.

    Used by checkpointing here and by binomial checkpointing (``nn/revolve.py``).  ``back``
    carries the state between segments: ``grads[l]``, layer l's four weight-gradient
    accumulators (dw_ih, dw_hh, db_ih, db_hh; None where there is no bias); ``carry_h[l]``,
    ``carry_c[l]``, the gradients arriving from step e (left holding those at step s),
    as scaled values whose rows' true sizes are times ``2**carry_exp[l]`` (one exponent per
    sequence of the batch, or 0: the C kernels keep a vanishing gradient's scale from
    segment to segment; ``true_carry`` scales them back);
    ``trace_h``/``trace_c``, the per-step trace arrays (or None).  ``tapes[l]`` is layer
    l's forward record of the segment, freed as it is used; ``d_seg`` is dL/d(top output)
    on the segment (or None).  Returns dL/d(layer 0 input) on the segment.
    """
    for l in reversed(range(len(tapes))):
        g = backend.seq_backward(cell, tapes[l], d_seg, back.carry_h[l], back.carry_c[l],
                                 need_dx=(l > 0 or need_dx), need_trace=back.trace_h is not None,
                                 carry_exp=back.carry_exp[l])
        for acc, key in zip(back.grads[l], _WEIGHTS):
            if acc is not None:
                acc += g[key]
        back.carry_h[l], back.carry_c[l], back.carry_exp[l] = g["dh0"], g.get("dc0"), g["carry_exp"]
        if back.trace_h is not None:
            store_segment(back.trace_h, l, s, e, g["trace_h"])
            if back.trace_c is not None:
                store_segment(back.trace_c, l, s, e, g["trace_c"])
        d_seg = g["dx"]
        tapes[l] = None  # free as we go
    return d_seg


def true_carry(back, l):
    """Layer l's carried gradients (dL/dh, dL/dc) at true size, in the layer's dtype."""
    return carry_at_true_size(back.carry_exp[l], back.carry_h[l], back.carry_c[l])


class _Backward:
    """The state the backward pass carries from segment to segment (last to first).

    ``grads[l]``: weight gradients of layer l (dw_ih, dw_hh, db_ih, db_hh), summed over segments; ``carry_h[l]``,
    ``carry_c[l]``: dL/dh and dL/dc at the start of the segment just done (at the
    end: the gradients of h0 and c0); ``trace_h``/``trace_c``: per-step trace arrays.
    """

    def __init__(self, ctx, x, weights, d_out, d_hn, d_cn):
        self.backend, self.cell, self.d_out = ctx.backend, ctx.cell, d_out
        self.grads = [[None if w is None else np.zeros_like(w) for w in layer] for layer in weights]
        L, T = len(weights), x.shape[0]
        self.carry_h = [d_hn[l] for l in range(L)]
        self.carry_c = [None if d_cn is None else d_cn[l] for l in range(L)]
        self.carry_exp = [0] * L
        traced = bool(ctx.traces)
        self.trace_h = [np.empty((T,) + d_out.shape[1:], d_out.dtype) for _ in range(L)] if traced else None
        self.trace_c = [np.empty_like(t) for t in self.trace_h] if traced and self.cell == "lstm" else None

    def segment(self, saves, s, e, need_dx):
        """Backpropagate through steps s..e-1 of every layer, top layer first; returns dL/dx there."""
        return backprop_segment(self, self.backend, self.cell, saves, self.d_out[s:e], s, e, need_dx)

    def deposit_traces(self, slots):
        if slots:
            for l, slot in enumerate(slots):
                slot.add(self.trace_h[l], None if self.trace_c is None else self.trace_c[l])


def checkpointed_function(cell):
    """The checkpointed multi-layer Function for ``cell`` (op name ``"<cell>_checkpointed"``)."""
    return named_function(CheckpointedFunction, cell, "checkpointed")

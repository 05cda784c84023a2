"""Memory-optimal checkpointing for backpropagation through time: the binomial schedule.

Backpropagating through T steps needs, for every step, the state it started from
(and the activations it computed).  Keeping all of them costs memory linear in T.
Keeping only ``s`` of them ("slots") and recomputing the rest from the nearest
stored one trades memory for time.  Among all ways to do that with s slots, the
*binomial* schedule (Griewank's ``revolve``, Griewank & Walther 2000; the same
dynamic program appears in Gruslys et al. 2016, "Memory-Efficient
Backpropagation Through Time") needs the fewest recomputed steps.

The unit of work here is a *segment*: ``segment`` consecutive time steps that
one call of the fused sequence kernel runs (``kernels.backend.seq_forward``).
The schedule works on the n = ceil(T / segment) segments; a slot holds one
state between two segments (h, and c for an LSTM, of every layer).

The schedule's actions (``Action(op, index)``), for segments and states
numbered from 0 (state i is the state before segment i)::

    store i      copy the current state i into a slot
    restore i    make the stored state i the current state
    free i       release the slot holding state i
    advance i    run segment i from the current state, keep only the new state
    tape i       run segment i from the current state, keep its activations
    backward i   backpropagate through segment i with its tape, then drop it

Cost model: ``advance`` and ``tape`` each cost one segment evaluation; the
minimal total is ``revolve_cost(n, s)``.  Full BPTT is n evaluations (every
segment taped once); keeping every state (s >= n) costs 2n - 1.

The recursion.  To reverse segments lo..hi-1 whose start state lo is stored,
using at most ``s`` slots (lo's included):

* one segment, or one slot: for i = hi-1 down to lo, restore lo, advance to i,
  tape i, backward i  (no slot to spare: recompute from lo every time);
* otherwise advance y segments, store state lo+y, reverse lo+y..hi-1 with
  s-1 slots (the right part), free that slot, restore lo and reverse
  lo..lo+y-1 with all s slots (the left part).

Counting how many times each segment is advanced gives the closed form.  With
``r`` advances per segment at most, s slots reverse at most
``beta(s, r) = C(s + r, s)`` segments (Pascal's rule ``beta(s, r) = beta(s, r-1)
+ beta(s-1, r)`` is the split: a left part where every segment is advanced one
time less, after the sweep over it, and a right part with one slot less).  For
n segments take the smallest r with ``beta(s, r) >= n``; then the minimal cost is

    revolve_cost(n, s) = n + r*n - C(s + r, s + 1)

(n tapes plus ``r*n - beta(s+1, r-1)`` advances).  A split y attains it exactly
when both parts are "full" at their level:
``beta(s, r-2) <= y <= beta(s, r-1)`` and ``beta(s-1, r-1) <= n-y <= beta(s-1, r)``;
``revolve_split`` takes the largest such y.  tests/test_revolve.py checks the
closed form and the schedule against a brute-force dynamic program.

The executor, ``revolve_sequence(layer, x, state, budget, segment)``, runs a
whole recurrent layer under this schedule.  Its forward pass is the schedule's
first sweep (advances and stores up to the last segment, which it tapes: the
layer's outputs are computed exactly once); the backward pass runs the rest.
Peak activation memory: ``budget`` stored states plus one segment's tape.
"""
import collections
from math import comb

import numpy as np

from .. import kernels
from ..autograd import Function, is_grad_enabled, node_scope
from ..errors import integer_at_least, is_integer_at_least
from ..kernels.cells import STATES
from .checkpoint import backprop_segment, true_carry
from .trace import TraceSlot

__all__ = ["Action", "revolve_cost", "revolve_split", "revolve_schedule", "revolve_sequence", "revolve_layer",
           "RevolveStats", "revolve_function", "default_segment"]

#: One instruction of the schedule: ``op`` is one of the six names above, ``index`` a segment or state.
Action = collections.namedtuple("Action", ["op", "index"])


# =========================================================================== the schedule


def _beta(s, r):
    """Most segments s slots can reverse when no segment is advanced more than r times."""
    return comb(s + r, s) if r >= 0 else 0


def _repetitions(n, s):
    """The smallest r with ``beta(s, r) >= n``: how often the busiest segment is advanced."""
    r = 0
    while _beta(s, r) < n:
        r += 1
    return r


def _check_budget(who, n, slots):
    integer_at_least(who, "the number of segments", n, 1)
    integer_at_least(who, "budget", slots, 1)


def revolve_cost(n, slots):
    """Fewest segment evaluations (advances + tapes) that reverse ``n`` segments with ``slots`` slots.

    ``slots`` counts the stored states, the initial one included.  Full BPTT
    (everything taped) would be ``n``; the difference is the recomputation.
    """
    _check_budget("revolve_cost", n, slots)
    r = _repetitions(n, slots)
    return n + r * n - comb(slots + r, slots + 1)


def revolve_split(n, slots):
    """Where an optimal schedule stores its next state: y segments after the current one (1 <= y < n).

    Needs n >= 2 and slots >= 2.  See the module docstring for the rule.
    """
    r = _repetitions(n, slots)
    return max(1, min(_beta(slots, r - 1), n - _beta(slots - 1, r - 1)))


def revolve_schedule(n, slots):
    """The binomial schedule for ``n`` segments and ``slots`` stored states: a generator of ``Action``.

    It starts with ``store 0`` and ends with ``free 0``; in between every
    segment is taped and backpropagated exactly once, last segment first, and no
    more than ``slots`` states are stored at any time.  Its number of advances
    plus tapes is ``revolve_cost(n, slots)``.
    """
    _check_budget("revolve_schedule", n, slots)
    return _schedule(n, slots)


def _schedule(n, slots):
    yield Action("store", 0)
    yield from _reverse(0, n, min(slots, n))  # more slots than segments buys nothing
    yield Action("free", 0)


def _reverse(lo, hi, slots):
    """Reverse segments lo..hi-1; the current state is lo, stored, and counts in ``slots``.

    The right parts are peeled off in a loop (a recursion on them would be as
    deep as the number of slots); only left parts recurse, at most r levels deep.
    """
    spine = []
    while hi - lo > 1 and slots > 1:
        y = revolve_split(hi - lo, slots)
        for i in range(lo, lo + y):
            yield Action("advance", i)
        yield Action("store", lo + y)
        spine.append((lo, lo + y, slots))
        lo, slots = lo + y, slots - 1
    for i in reversed(range(lo, hi)):  # one segment, or one slot: always recompute from lo
        if i < hi - 1:
            yield Action("restore", lo)
        for j in range(lo, i):
            yield Action("advance", j)
        yield Action("tape", i)
        yield Action("backward", i)
    for left_lo, left_hi, left_slots in reversed(spine):
        yield Action("free", left_hi)
        yield Action("restore", left_lo)
        yield from _reverse(left_lo, left_hi, left_slots)


# =========================================================================== the executor


class RevolveStats:
    """What one revolve forward + backward did (``stats`` argument, or ``layer.checkpoint_stats``).

    ``budget``, ``segment``, ``n_segments``; ``evaluations``: segment evaluations
    (advances + tapes, forward and backward passes together; ``revolve_cost``);
    ``steps_computed``: time steps computed, the same in steps (full BPTT: T);
    ``max_stored``: most states stored at once (never above ``budget``);
    ``stored_bytes``: their largest total size; ``tape_bytes``: the largest
    segment tape (kernel workspace of every layer); ``peak_bytes``: their sum, an
    upper bound of the activation memory (outputs, input and weights not counted).
    """

    def __init__(self, T, budget, segment):
        self.T, self.budget, self.segment = T, budget, segment
        self.n_segments = -(-T // segment)
        self.evaluations = self.steps_computed = 0
        self.max_stored = self.stored_bytes = self.tape_bytes = 0

    @property
    def peak_bytes(self):
        return self.stored_bytes + self.tape_bytes

    def __repr__(self):
        return ("RevolveStats(T=%d, budget=%d, segment=%d, n_segments=%d, evaluations=%d, steps_computed=%d, "
                "max_stored=%d, stored_bytes=%d, tape_bytes=%d)"
                % (self.T, self.budget, self.segment, self.n_segments, self.evaluations, self.steps_computed,
                   self.max_stored, self.stored_bytes, self.tape_bytes))


def _workspace_bytes(saved):
    """Bytes of the arrays a sequence kernel allocated for ``saved`` (its outputs and workspace).

    The rest of ``saved`` -- the input chunk (a view of x), the weights and the
    initial state -- exists anyway."""
    return sum(a.nbytes for a in (saved.out, saved.c_out, saved.gates, saved.tanh_c, saved.hn) if a is not None)


class _Run:
    """One layer stack on one input, segment by segment: the schedule's actions carried out.

    ``state`` is the current state (per layer ``(h, c)``), ``slots`` the stored
    ones by index, ``tape`` the taped segment (per layer the kernel's saved).
    """

    def __init__(self, backend, cell, x, weights, segment, stats):
        self.backend, self.cell, self.x, self.weights = backend, cell, x, weights
        self.segment, self.stats = segment, stats
        self.state, self.slots, self.tape = None, {}, None

    def bounds(self, i):
        s = i * self.segment
        return s, min(s + self.segment, self.x.shape[0])

    def run(self, i, keep):
        """Run segment i from the current state; returns the top layer's out chunk."""
        s, e = self.bounds(i)
        inp, new, tape = self.x[s:e], [], []
        for (h, c), w in zip(self.state, self.weights):
            out, c_out, saved = self.backend.seq_forward(self.cell, inp, h, c, *w)
            new.append((out[-1].copy(), None if c_out is None else c_out[-1].copy()))
            tape.append(saved if keep else None)
            inp = out
        self.state = new
        if keep:
            self.tape = tape
        st = self.stats
        st.evaluations += 1
        st.steps_computed += e - s
        if keep:
            st.tape_bytes = max(st.tape_bytes, sum(_workspace_bytes(saved) for saved in tape))
        return inp

    def store(self, i):
        self.slots[i] = [(h.copy(), None if c is None else c.copy()) for h, c in self.state]
        st = self.stats
        st.max_stored = max(st.max_stored, len(self.slots))
        st.stored_bytes = max(st.stored_bytes, sum(h.nbytes + (0 if c is None else c.nbytes)
                                                   for slot in self.slots.values() for h, c in slot))

    def do(self, act):
        """Carry out a store, restore, free or advance (tape and backward are the caller's)."""
        op, i = act
        if op == "store":
            self.store(i)
        elif op == "restore":
            self.state = self.slots[i]
        elif op == "free":
            del self.slots[i]
        elif op == "advance":
            self.run(i, keep=False)
        else:
            raise AssertionError("revolve: unexpected action %r" % (act,))


class _RevolveFunction(Function):
    """A multi-layer unroll under the binomial schedule: ``budget`` stored states, one segment taped.

    Inputs: x (T, B, I), then per layer (h0, c0, w_ih, w_hh, b_ih, b_hh).
    Outputs: the top layer's out (T, B, H) -- None when ``return_sequence`` is
    False --, h_n (L, B, H) and, for the LSTM, c_n (L, B, H).
    """

    accepts_none_grads = True  # no (T, B, H) zeros for an unused out

    @staticmethod
    def forward(ctx, x, *args, cell=None, budget=None, segment=None, return_sequence=True, traces=None,
                stats=None):
        L, T = len(args) // 6, x.shape[0]
        layers = [args[6 * l:6 * l + 6] for l in range(L)]
        weights = [lay[2:] for lay in layers]
        if stats is None:
            stats = RevolveStats(T, budget, segment)
        run = _Run(kernels.backend, cell, x, weights, segment, stats)
        run.state = [(h0, c0) for (h0, c0, *_w) in layers]
        out = None
        for act in revolve_schedule(stats.n_segments, budget):  # the first sweep
            if act.op in ("advance", "tape"):
                chunk = run.run(act.index, keep=act.op == "tape")
                if return_sequence:
                    if out is None:
                        out = np.empty((T,) + chunk.shape[1:], chunk.dtype)
                    s, e = run.bounds(act.index)
                    out[s:e] = chunk
                if act.op == "tape":
                    break
            else:
                run.do(act)
        h_n = np.stack([h for h, _ in run.state])
        c_n = np.stack([c for _, c in run.state]) if cell == "lstm" else None
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(x, weights, dict(run.slots), run.tape)
            ctx.cell, ctx.budget, ctx.stats, ctx.traces = cell, budget, stats, traces
            ctx.backend = run.backend
        return (out, h_n, c_n) if cell == "lstm" else (out, h_n)

    @staticmethod
    def backward(ctx, d_out, d_hn, d_cn=None):
        x, weights, slots, tape = ctx.saved_tensors
        cell, stats, traces = ctx.cell, ctx.stats, ctx.traces
        run = _Run(ctx.backend, cell, x, weights, stats.segment, stats)
        run.slots, run.tape = dict(slots), list(tape)  # copies: a second backward (retain_graph) starts afresh
        back = _Backprop(run, ctx.needs_input_grad[0], d_out, d_hn, d_cn, traces)
        actions = revolve_schedule(stats.n_segments, ctx.budget)
        for act in actions:  # skip the first sweep: the forward pass did it
            if act.op == "tape":
                break
        for act in actions:
            if act.op == "tape":
                run.run(act.index, keep=True)
            elif act.op == "backward":
                back.segment(act.index)
            else:
                run.do(act)
        return back.result()


class _Backprop:
    """Backward through taped segments, last first, carrying dL/dh and dL/dc between them."""

    def __init__(self, run, need_dx, d_out, d_hn, d_cn, traces):
        self.run, self.need_dx, self.d_out, self.traces = run, need_dx, d_out, traces
        L, T, B = len(run.weights), run.x.shape[0], run.x.shape[1]
        dtype = run.x.dtype
        self.grads = [[np.zeros_like(a) if a is not None else None for a in w] for w in run.weights]
        H = run.weights[0][1].shape[1]
        self.carry_h = [None if d_hn is None else d_hn[l] for l in range(L)]
        self.carry_c = [None if d_cn is None else d_cn[l] for l in range(L)]
        self.carry_exp = [0] * L  # the scale of the carried gradients (checkpoint.backprop_segment)
        self.dx = np.empty_like(run.x) if need_dx else None
        self.trace_h = [np.zeros((T, B, H), dtype) for _ in range(L)] if traces else None
        self.trace_c = [np.zeros((T, B, H), dtype) for _ in range(L)] if traces and run.cell == "lstm" else None

    def segment(self, i):
        run = self.run
        s, e = run.bounds(i)
        d_seg = None if self.d_out is None else self.d_out[s:e]
        d_seg = backprop_segment(self, run.backend, run.cell, run.tape, d_seg, s, e, self.need_dx)
        run.tape = None
        if self.dx is not None:
            self.dx[s:e] = d_seg

    def result(self):
        if self.traces:
            for l, slot in enumerate(self.traces):
                slot.add(self.trace_h[l], None if self.trace_c is None else self.trace_c[l])
        result = [self.dx]
        for l, (dw_ih, dw_hh, db_ih, db_hh) in enumerate(self.grads):
            result += [*true_carry(self, l), dw_ih, dw_hh, db_ih, db_hh]
        return tuple(result)


# =========================================================================== the function-level API

_FUNCTIONS = {}


def revolve_function(cell):
    """The revolve Function for ``cell`` (op name ``"<cell>_revolve"``, e.g. ``lstm_revolve``)."""
    fn = _FUNCTIONS.get(cell)
    if fn is None:
        name = cell + "_revolve"
        fn = _FUNCTIONS[cell] = type("".join(p.capitalize() for p in name.split("_")), (_RevolveFunction,),
                                     {"name": name})
    return fn


#: Numbers a segment's tape keeps per time step and batch row, in units of H (RecurrentSaved):
#: out, plus c_out, tanh_c and 4 gates (LSTM) or hn and 3 gates (GRU).
_TAPE_PER_STEP = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 7, "gru": 5}


def default_segment(cell, budget):
    """The segment length whose tape holds about as many numbers as ``budget`` stored states.

    A stored state is h (and c) of every layer; a taped step keeps the
    activations listed in ``_TAPE_PER_STEP``.  Spending the memory half on slots,
    half on the tape is a simple rule, not an optimum: longer segments mean fewer
    kernel calls, more slots mean less recomputation.
    """
    _check_budget("default_segment", 1, budget)
    return max(1, budget * len(STATES[cell]) // _TAPE_PER_STEP[cell])


def revolve_sequence(layer, x, state=None, budget=None, segment=None, return_sequence=True):
    """Run recurrent ``layer`` (nn.RNN/LSTM/GRU) on ``x`` storing at most ``budget`` states.

    The same call and result as ``layer(x, state)``: ``out, h_n`` (LSTM
    ``out, (h_n, c_n)``).  The forward pass keeps ``budget`` states (the initial
    one included) and the last segment's activations; the backward pass
    recomputes the rest with the binomial schedule, the fewest segment
    evaluations any schedule with that many stored states can do
    (``revolve_cost``).

    Agreement with full BPTT: every step runs the same kernel arithmetic, so
    outputs, dL/dx, dL/dh0 and dL/dc0 are full BPTT's bit for bit on the NumPy
    backend; on the C backend a shorter call may take another GEMM blocking
    (rounding differences only).  The weight and bias gradients are sums over
    time; here they are summed segment by segment, so they agree with full BPTT
    to the rounding of a sum taken in another order (bit for bit when
    ``segment >= T``).

    ``segment`` time steps run in one fused kernel call (default
    ``default_segment(cell, budget)``).  ``return_sequence=False`` returns
    ``None`` instead of ``out`` and never allocates the (T, B, H) outputs: the
    memory of a long unroll whose loss reads only the final state is then
    O(budget + segment), independent of T (apart from the input and dL/dx).
    ``layer.checkpoint_stats`` is the run's ``RevolveStats``.
    """
    if not (hasattr(layer, "layer_weights") and hasattr(layer, "cell_type") and hasattr(layer, "num_layers")):
        raise TypeError("revolve_sequence: expected an nn.RNN, nn.LSTM or nn.GRU layer, got %s"
                        % type(layer).__name__)
    if budget is None:
        raise ValueError("revolve_sequence: budget (the number of states to store, at least 1) is required")
    _check_budget("revolve_sequence", 1, budget)
    if segment is not None and not is_integer_at_least(segment, 1):
        raise ValueError("revolve_sequence: segment must be a positive number of time steps, got %r" % (segment,))
    return layer.forward_revolve(x, state, budget, segment, return_sequence)


def revolve_layer(layer, x, h0s, c0s, budget, segment=None, return_sequence=True):
    """The layer's side of ``revolve_sequence``, for use inside a layer's forward.

    ``x`` a (T, B, I) Tensor, ``h0s``/``c0s`` per-layer (B, H) Tensors (c0s
    entries None except LSTM), as the layer's own validation returns them.
    Returns Tensors ``(out (T, B, H) or None, h_n (L, B, H), c_n (L, B, H) or
    None, trace slots (one per layer) or None)``; sets ``layer.checkpoint_stats``.
    """
    cell, L = layer.cell_type, layer.num_layers
    budget = integer_at_least(layer._who, "budget", budget, 1)
    segment = default_segment(cell, budget) if segment is None else integer_at_least(layer._who, "segment", segment, 1)
    args = []
    for l in range(L):
        args += [h0s[l], c0s[l], *layer.layer_weights(l)]
    T = x.shape[0]
    track = layer.record_grad_trace and is_grad_enabled()
    slots = [TraceSlot() for _ in range(L)] if track else None
    stats = RevolveStats(T, budget, segment)
    layer.checkpoint_stats = stats
    with node_scope(label=layer.label):
        res = revolve_function(cell).apply(x, *args, cell=cell, budget=budget, segment=segment,
                                           return_sequence=return_sequence, traces=slots, stats=stats)
    out, h_n, c_n = res if cell == "lstm" else res + (None,)
    return out, h_n, c_n, slots

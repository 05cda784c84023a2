"""Recurrent layers RNN, LSTM, GRU, each in three graph granularities (the one-step cells
are in ``nn/rnn_cells.py``, what both share in ``nn/recurrent_base.py``).

Formulas, gate order, parameter names, shapes and initialisation are PyTorch's
(see ``torch.nn.LSTM``), and so is the calling convention::

    out, h_n = rnn(x, h0)                    # RNN, GRU
    out, (h_n, c_n) = lstm(x, (h0, c0))      # LSTM
    h = cell(x, h);  h, c = lstm_cell(x, (h, c))

with x (T, B, I) -- (B, T, I) when ``batch_first`` -- or (T, I) unbatched, and
h0/h_n (num_layers, B, H).  The initial state is optional (zeros).  Time steps
are numbered t = 0..T-1: ``out[t]`` is h_t, and the initial state is h_{-1}.

Every cell and layer takes ``generator=`` for its initial weights: None (the
global generator that ``nn.manual_seed`` reseeds), an int seed, or a
``numpy.random.Generator`` (one per thread for reproducible models built in
threads; ``nn/init.py``).

``mode`` chooses what the autograd graph of one forward call looks like; all
three compute the same numbers (to rounding) and the same gradients:

``"ops"``       every step is built from primitive ops (matmul, add, split,
                sigmoid, tanh, mul, ...; ``nn/cells_ops.py``).  Every
                intermediate is a node, tagged ``node_scope(label="lstm.l0",
                step=t)``.  Slow; made for looking.
``"cell"``      one fused node per time step (``lstm_cell`` etc.): forward and
                backward are one ``step_forward``/``step_backward`` kernel call.
``"sequence"``  (default) one node per layer for the whole unroll
                (``lstm_sequence`` etc.): one ``seq_forward``/``seq_backward``
                kernel call.  Fastest.  (The fused Functions: ``nn/recurrent_fn.py``.)

``checkpoint=k`` (layers only) stores only every k-th state of all layers and
recomputes each k-step segment during the backward pass (node
``lstm_checkpointed``, ``nn/checkpoint.py``): activation memory O(T/k + k)
instead of O(T).  ``checkpoint="auto", checkpoint_budget=s`` stores at most s
states and recomputes the rest with the binomial schedule (Griewank's revolve,
``nn/revolve.py``), the fewest recomputations any schedule with s stored states can
do: a million-step unroll fits in a few megabytes.

After ``loss.backward()``, ``layer.grad_trace.h[l, t]`` is the total gradient of
the loss with respect to layer l's hidden state at step t (through every later
step); ``.c`` likewise for the LSTM cell state; ``.norms()`` their L2 norms
(``nn/trace.py``).
"""
import contextlib
import gc

import numpy as np

from ..autograd import Tensor, is_grad_enabled, node_scope
from ..errors import GraphError, ShapeError, describe, integer_at_least, is_integer_at_least
from ..ops import concat, stack
from . import init
from .cells_ops import role, unroll_step
from .checkpoint import CheckpointStats, checkpointed_function
from .recurrent_base import RecurrentBase, as_tensor, cell_name, check_dtype, check_sizes, state_parts
from .recurrent_fn import sequence_function, step_function
from .revolve import revolve_layer
from .trace import LayerTraces, RetainedStates, StepSlots, TraceSlot, gather_trace

MODES = ("sequence", "cell", "ops")


@contextlib.contextmanager
def _cyclic_gc_paused(pause):
    """Pause Python's cyclic garbage collector inside the block when ``pause``.

    Building T steps of nodes makes no reference cycles, yet the collector keeps
    scanning the growing graph: during a long unroll its collections cost about a
    fifth of the time.
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# =========================================================================== layers

_WEIGHT_NAMES = {}  # layer index l -> the four parameter names of layer l


class _LayerBase(RecurrentBase):
    label = None  # "rnn", "lstm", "gru": nodes of layer l are labelled "<label>.l<l>"

    def __init__(self, cell_type, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float64, mode="sequence", checkpoint=None,
                 checkpoint_budget=None, generator=None):
        super().__init__()
        who = type(self).__name__
        rng = init.resolve_generator(generator, who)
        check_sizes(who, input_size, hidden_size)
        integer_at_least(who, "num_layers", num_layers, 1)
        if mode not in MODES:
            raise ValueError("%s: mode must be one of %s, got %r" % (who, MODES, mode))
        if dropout:
            raise ValueError("%s: dropout between layers is not supported (got dropout=%r); use 0" % (who, dropout))
        if bidirectional:
            raise ValueError("%s: bidirectional layers are not supported; run two layers, one on the "
                             "time-reversed input" % who)
        self.cell_type = cell_type
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dtype = check_dtype(dtype, who)
        self.mode = mode
        self.checkpoint, self.checkpoint_budget = self._check_checkpoint(checkpoint, checkpoint_budget)
        for l in range(self.num_layers):
            self._make_weights("_l%d" % l, self.input_size if l == 0 else self.hidden_size, rng)
        self._layer_labels = tuple("%s.l%d" % (self.label, l) for l in range(self.num_layers))
        self._traces = None  # LayerTraces of the last forward call, read by grad_trace
        self.checkpoint_stats = None
        #: Record ``grad_trace`` during backward (costs one (T, B, H) array per layer,
        #: and in ops/cell mode a retained gradient per step).  Set False to skip it.
        self.record_grad_trace = True

    def _check_checkpoint(self, k, budget=None):
        """``(checkpoint, checkpoint_budget)`` checked: None, k >= 1, or "auto" with a budget >= 1."""
        if k == "auto":
            if not is_integer_at_least(budget, 1):
                raise ValueError("%s: checkpoint='auto' needs checkpoint_budget=s, the number of states to "
                                 "store (a positive integer), got %r" % (self._who, budget))
            return "auto", int(budget)
        if budget is not None:
            raise ValueError("%s: checkpoint_budget goes with checkpoint='auto' (got checkpoint=%r)"
                             % (self._who, k))
        if k is None:
            return None, None
        if not is_integer_at_least(k, 1):
            raise ValueError("%s: checkpoint must be None, 'auto' or a positive number of steps, got %r"
                             % (self._who, k))
        return int(k), None

    def layer_weights(self, l):
        """``(weight_ih_l{l}, weight_hh_l{l}, bias_ih_l{l}, bias_hh_l{l})`` (biases None without bias)."""
        g = self._parameters
        names = _WEIGHT_NAMES.get(l)
        if names is None:
            names = _WEIGHT_NAMES[l] = tuple(n % l for n in ("weight_ih_l%d", "weight_hh_l%d", "bias_ih_l%d",
                                                             "bias_hh_l%d"))
        return g[names[0]], g[names[1]], g[names[2]], g[names[3]]

    # ------------------------------------------------------------------ validation
    def _input(self, x):
        if not (isinstance(x, Tensor) and x.data.dtype == self.dtype):
            x = as_tensor(x, self.dtype, self._who, "input")
        shape = x.data.shape
        if len(shape) not in (2, 3) or shape[-1] != self.input_size:
            layout = "(B, T, %d)" % self.input_size if self.batch_first else "(T, B, %d)" % self.input_size
            raise ShapeError("%s: input must have shape %s (or (T, %d) unbatched), got %s"
                             % (self._who, layout, self.input_size, describe(x.data)))
        batched = len(shape) == 3
        if not batched:
            x = x.reshape(shape[0], 1, self.input_size)
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        shape = x.data.shape
        if shape[0] == 0 or shape[1] == 0:
            raise ShapeError("%s: input has no %s (shape %s)" % (self._who, "time steps" if shape[0] == 0 else "batch",
                                                              describe(x.data)))
        return x, batched

    def _zero_state(self, B):
        """A (B, H) zero initial state: a read-only leaf Tensor, made once per (B, dtype) and reused.

        The kernels only read it and, not requiring grad, it never receives a gradient."""
        cache = self.__dict__.get("_zeros_cache")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_zeros_cache", cache)
        key = (B, self.dtype, self.hidden_size)
        t = cache.get(key)
        if t is None:
            z = np.zeros((B, self.hidden_size), dtype=self.dtype)
            z.flags.writeable = False
            if len(cache) > 8:
                cache.clear()
            t = cache[key] = Tensor(z)
        return t

    def _initial_state(self, state, B, batched):
        """Per-layer lists of h0 and c0 Tensors (c0 None except LSTM)."""
        L = self.num_layers
        lstm = self.cell_type == "lstm"
        if state is None:
            z = self._zero_state(B)
            return [z] * L, ([z] * L if lstm else [None] * L)
        who, H = self._who, self.hidden_size
        want = (L, B, H) if batched else (L, H)
        parts = state_parts(who, state, lstm, self.dtype, "the initial state", ("h0", "c0"), want)
        for p, name in zip(parts, ("h0", "c0")):
            if p.shape != want:
                raise ShapeError("%s: %s must have shape (num_layers, B, H) = %s for this input, got %s"
                                 % (who, name, want, describe(p.data)) if batched else
                                 "%s: %s must have shape (num_layers, H) = %s for an unbatched input, got %s"
                                 % (who, name, want, describe(p.data)))
        per_layer = []
        for p in parts:
            if not batched:
                p = p.reshape(L, 1, H)
            if p.requires_grad and is_grad_enabled():
                per_layer.append([p[l] for l in range(L)])
            else:
                per_layer.append([Tensor(np.ascontiguousarray(p.data[l])) for l in range(L)])
        return per_layer[0], (per_layer[1] if lstm else [None] * L)

    # ------------------------------------------------------------------ forward
    def forward(self, x, state=None):
        """``out, h_n = layer(x, h0)``; LSTM: ``out, (h_n, c_n) = layer(x, (h0, c0))``."""
        return self._forward(x, state, self.checkpoint, self.checkpoint_budget)

    def forward_with(self, x, state=None, checkpoint=None, checkpoint_budget=None):
        """``forward`` with another checkpointing choice for this call only.

        ``checkpoint``/``checkpoint_budget`` mean what they mean in the constructor
        (None: full BPTT; k: every k-th state; "auto" with a budget: revolve).
        """
        return self._forward(x, state, *self._check_checkpoint(checkpoint, checkpoint_budget))

    def forward_revolve(self, x, state=None, budget=None, segment=None, return_sequence=True):
        """The forward under binomial checkpointing with ``budget`` stored states (``nn/revolve.py``).

        ``return_sequence=False`` gives ``None`` for ``out`` and never allocates the
        (T, B, H) outputs.  See ``nn.revolve.revolve_sequence``.
        """
        x, batched = self._input(x)
        T, B = x.shape[0], x.shape[1]
        h0s, c0s = self._initial_state(state, B, batched)
        out, h_n, c_n, slots = revolve_layer(self, x, h0s, c0s, budget, segment, return_sequence)
        self._traces = LayerTraces(slots, T, B) if slots is not None else None
        return self._output(out, h_n, c_n, batched)

    def _forward(self, x, state, checkpoint, budget):
        """Check the arguments, run the layers, return the results in the caller's layout."""
        x, batched = self._input(x)
        T, B = x.shape[0], x.shape[1]
        h0s, c0s = self._initial_state(state, B, batched)
        track = self.record_grad_trace and is_grad_enabled()
        self._traces = None
        if checkpoint == "auto":
            out, h_n, c_n, sources = revolve_layer(self, x, h0s, c0s, budget)
        elif checkpoint is not None:
            out, h_n, c_n, sources = self._forward_checkpointed(x, h0s, c0s, checkpoint, track)
        else:
            out, h_n, c_n, sources = self._forward_layers(x, h0s, c0s, track)
        if track:
            self._traces = LayerTraces(sources, T, B)
        return self._output(out, h_n, c_n, batched)

    def _forward_layers(self, x, h0s, c0s, track):
        """Layer after layer, each one's output the next one's input: ``(out, h_n, c_n, trace sources)``."""
        fused = self.mode == "sequence"
        run = self._run_sequence if fused else self._run_steps
        inp, h_last, c_last, sources = x, [], [], []
        for l in range(self.num_layers):
            inp, h, c, source = run(l, inp, h0s[l], c0s[l], track)
            h_last.append(h)
            c_last.append(c)
            sources.append(source)
        if fused and len(h_last) == 1:  # one fused layer: its (1, B, H) final states are h_n and c_n
            return inp, h_last[0], c_last[0], sources
        join = concat if fused else stack  # (1, B, H) states of fused layers, (B, H) of unrolled ones
        with node_scope(label=self.label):
            h_n = join(h_last)
            c_n = join(c_last) if self.cell_type == "lstm" else None
        return inp, h_n, c_n, sources

    def _run_sequence(self, l, inp, h, c, track):
        """Layer l as one fused node: ``(out, h_n, c_n, its TraceSlot)``, h_n and c_n (1, B, H) (c_n None
        except LSTM)."""
        cell, label = self.cell_type, self._layer_labels[l]
        slot = TraceSlot() if track else None
        with node_scope(label=label):
            res = sequence_function(cell).apply(inp, h, c, *self.layer_weights(l), cell=cell, trace=slot)
        out, h_n, c_n = res if cell == "lstm" else res + (None,)
        return out, h_n, c_n, slot

    def _run_steps(self, l, inp, h, c, track):
        """Layer l unrolled one node group per step (mode "ops" or "cell"): ``(out, h_n, c_n, trace source)``."""
        label = self._layer_labels[l]
        step, source = self._step_ops(l, track) if self.mode == "ops" else self._step_cell(l, track)
        hs = []
        with _cyclic_gc_paused(inp.shape[0] >= 64):
            for t in range(inp.shape[0]):
                with node_scope(label=label, step=t):
                    with role("x"):
                        x_t = inp[t]
                    h, c = step(x_t, h, c)
                hs.append(h)
        with node_scope(label=label, role="h"):
            out = stack(hs)
        return out, h, c, source

    def _step_ops(self, l, track):
        """Mode "ops": ``step(x_t, h, c) -> (h, c)`` from primitive ops, and the trace source.

        The trace reads the retained ``.grad`` of every h_t and c_t, so the layer keeps
        them (and the last unrolled graph) until its next forward call."""
        with node_scope(label=self._layer_labels[l]):
            ops = unroll_step(self.cell_type, *self.layer_weights(l))
        if not track:
            return ops, None
        kept = RetainedStates()

        def step(x_t, h, c):
            h, c = ops(x_t, h, c)
            kept.keep(h, c)
            return h, c
        return step, kept

    def _step_cell(self, l, track):
        """Mode "cell": ``step(x_t, h, c) -> (h, c)`` as one fused node, and the trace source.

        Each node deposits dL/dh_t and dL/dc_t in its own slot during backward, so the
        layer need not keep h_t (and with it the whole graph) alive."""
        cell, fn, weights = self.cell_type, step_function(self.cell_type), self.layer_weights(l)
        slots = StepSlots() if track else None

        def step(x_t, h, c):
            res = fn.apply(x_t, h, c, *weights, cell=cell, trace=None if slots is None else slots.new_slot())
            return res if cell == "lstm" else (res, None)
        return step, slots

    def _forward_checkpointed(self, x, h0s, c0s, k, track):
        """All layers as one checkpointed node: ``(out, h_n, c_n, a TraceSlot per layer)``."""
        cell, L = self.cell_type, self.num_layers
        args = []
        for l in range(L):
            args += [h0s[l], c0s[l], *self.layer_weights(l)]
        slots = [TraceSlot() for _ in range(L)] if track else None
        self.checkpoint_stats = stats = CheckpointStats(x.shape[0], k)
        with node_scope(label=self.label):
            res = checkpointed_function(cell).apply(x, *args, cell=cell, k=k, traces=slots, stats=stats)
        out, h_n, c_n = res if cell == "lstm" else (res[0], res[1], None)
        return out, h_n, c_n, slots

    def _output(self, out, h_n, c_n, batched):
        """The results in the caller's layout (unbatched or batch-first) and PyTorch's tuple form."""
        if not batched:
            H, L = self.hidden_size, self.num_layers
            out = None if out is None else out.reshape(out.shape[0], H)
            h_n = h_n.reshape(L, H)
            c_n = None if c_n is None else c_n.reshape(L, H)
        elif self.batch_first and out is not None:
            out = out.transpose(1, 0, 2)
        return (out, (h_n, c_n)) if self.cell_type == "lstm" else (out, h_n)

    # ------------------------------------------------------------------ gradient traces
    @property
    def grad_trace(self):
        """``GradTrace`` of the last backward pass through this layer's last forward call.

        ``.h`` (num_layers, T, B, H) total gradients w.r.t. every hidden state;
        ``.c`` likewise for the LSTM cell state; ``.norms()`` (num_layers, T).
        Raises GraphError if no backward pass has reached the layer since its last
        forward (or the forward ran under no_grad).
        """
        if self._traces is None and not self.record_grad_trace:
            raise GraphError("%s.grad_trace: not recorded because layer.record_grad_trace is False; set it to True "
                             "before the forward pass" % self._who)
        if self._traces is None:
            raise GraphError("%s.grad_trace: no forward pass with gradients recorded yet (forward under no_grad() "
                             "records nothing); run out = layer(x), then loss.backward()" % self._who)
        return gather_trace(self._who, self._traces, self.hidden_size, self.dtype, self.cell_type == "lstm")

    def extra_repr(self):
        s = "%d, %d" % (self.input_size, self.hidden_size)
        if self.num_layers != 1:
            s += ", num_layers=%d" % self.num_layers
        if self.cell_type == "rnn_relu":
            s += ", nonlinearity='relu'"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dtype != np.float64:
            s += ", dtype=%s" % self.dtype
        if self.mode != "sequence":
            s += ", mode=%r" % self.mode
        if self.checkpoint == "auto":
            s += ", checkpoint='auto', checkpoint_budget=%d" % self.checkpoint_budget
        elif self.checkpoint is not None:
            s += ", checkpoint=%d" % self.checkpoint
        return s


class RNN(_LayerBase):
    """Multi-layer Elman RNN, ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dtype=np.float64, mode='sequence', checkpoint=None)``;
    ``out, h_n = rnn(x, h0)``.
    """

    label = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float64, mode="sequence", checkpoint=None,
                 checkpoint_budget=None, generator=None):
        super().__init__(cell_name(nonlinearity, "RNN"), input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype, mode, checkpoint, checkpoint_budget, generator)
        self.nonlinearity = nonlinearity


class LSTM(_LayerBase):
    """Multi-layer LSTM (gate order i, f, g, o as in PyTorch).

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dtype=np.float64, mode='sequence', checkpoint=None, forget_bias=None)``;
    ``out, (h_n, c_n) = lstm(x, (h0, c0))``.  ``forget_bias=v`` starts every
    layer's forget gate with total bias v (``bias_ih`` f block = v, ``bias_hh``
    f block = 0; see ``init.lstm_forget_bias_``).
    """

    label = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=np.float64, mode="sequence", checkpoint=None, forget_bias=None,
                 checkpoint_budget=None, generator=None):
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, mode, checkpoint, checkpoint_budget, generator)
        if forget_bias is not None:
            init.lstm_forget_bias_(self, forget_bias)


class GRU(_LayerBase):
    """Multi-layer GRU (gate order r, z, n as in PyTorch); ``out, h_n = gru(x, h0)``."""

    label = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=np.float64, mode="sequence", checkpoint=None,
                 checkpoint_budget=None, generator=None):
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, mode, checkpoint, checkpoint_budget, generator)

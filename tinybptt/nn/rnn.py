"""Recurrent cells and layers: RNN, LSTM, GRU, each in three graph granularities.

Formulas, gate order, parameter names, shapes and initialisation are PyTorch's
(see ``torch.nn.LSTM``), and so is the calling convention::

    out, h_n = rnn(x, h0)                    # RNN, GRU
    out, (h_n, c_n) = lstm(x, (h0, c0))      # LSTM
    h = cell(x, h);  h, c = lstm_cell(x, (h, c))

with x (T, B, I) -- (B, T, I) when ``batch_first`` -- or (T, I) unbatched, and
h0/h_n (num_layers, B, H).  The initial state is optional (zeros).

``mode`` chooses what the autograd graph of one forward call looks like; all
three compute the same numbers (to rounding) and the same gradients:

``"ops"``       every step is built from primitive ops (matmul, add, split,
                sigmoid, tanh, mul, ...).  Every intermediate is a node, tagged
                ``node_scope(label="lstm.l0", step=t)``.  Slow; made for looking.
``"cell"``      one fused node per time step (``lstm_cell`` etc.): forward and
                backward are one ``step_forward``/``step_backward`` kernel call.
``"sequence"``  (default) one node per layer for the whole unroll
                (``lstm_sequence`` etc.): one ``seq_forward``/``seq_backward``
                kernel call.  Fastest.

``checkpoint=k`` (layers only) stores only every k-th state of all layers and
recomputes each k-step segment during the backward pass (node
``lstm_checkpointed``): activation memory O(T/k + k) instead of O(T).

After ``loss.backward()``, ``layer.grad_trace.h[l, t]`` is the total gradient of
the loss with respect to layer l's hidden state at step t (through every later
step); ``.c`` likewise for the LSTM cell state; ``.norms()`` their L2 norms.
"""
import gc

import numpy as np

from .. import kernels
from ..autograd import Function, Tensor, is_grad_enabled, node_scope
from ..errors import DTypeError, GraphError, ShapeError, describe
from ..ops import GetItem, concat, linear, relu, sigmoid, split, stack, tanh
from . import init
from .module import Module, Parameter

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
MODES = ("sequence", "cell", "ops")
CELL_MODES = ("cell", "ops")


def _kind(cell):
    """"rnn_tanh" -> "rnn", "lstm" -> "lstm": the short name used in node labels."""
    return "rnn" if cell.startswith("rnn") else cell


_LABELS = {}


def _layer_label(kind, l):
    """``"lstm.l0"``: the node label of layer l (made once)."""
    key = (kind, l)
    label = _LABELS.get(key)
    if label is None:
        label = _LABELS[key] = "%s.l%d" % (kind, l)
    return label


# =========================================================================== the "ops" step


def ops_step(cell, x, h, c, w_ih_t, w_hh_t, b_ih, b_hh):
    """One step of ``cell`` from primitive ops; returns ``(h_new, c_new or None)``.

    x (B, I), h and c (B, H) Tensors; ``w_ih_t`` (I, G*H) and ``w_hh_t`` (H, G*H)
    are the *transposed* weights; biases (G*H,) or None.  PyTorch's formulas:

    RNN   h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)
    LSTM  i, f, g, o = split(x W_ih^T + b_ih + h W_hh^T + b_hh)
          c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(c')
    GRU   r = sigmoid(x_r + h_r);  z = sigmoid(x_z + h_z);  n = tanh(x_n + r * h_n)
          h' = (1 - z) * n + z * h      (x_* = x W_i*^T + b_i*, h_* = h W_h*^T + b_h*)

    The GRU's last line runs as ``n + z * (h - n)``: the same h', three ops where
    the textbook form takes four.
    """
    gi = linear(x, w_ih_t, b_ih)  # x W_ih^T + b_ih, one node
    gh = linear(h, w_hh_t, b_hh)
    if cell == "gru":
        x_r, x_z, x_n = split(gi, 3, axis=1)
        h_r, h_z, h_n = split(gh, 3, axis=1)
        r = sigmoid(x_r + h_r)
        z = sigmoid(x_z + h_z)
        n = tanh(x_n + r * h_n)
        return n + z * (h - n), None  # = (1 - z) * n + z * h
    return _gate_ops(cell, gi + gh, c)


def _gate_ops(cell, a, c):
    """RNN and LSTM from the pre-activation ``a`` (B, G*H) on: ``(h_new, c_new or None)``."""
    if cell == "lstm":
        a_i, a_f, a_g, a_o = split(a, 4, axis=1)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)
        c_new = f * c + i * g
        return o * tanh(c_new), c_new
    return (tanh(a) if cell == "rnn_tanh" else relu(a)), None


def _ops_step_joint(cell, x, h, c, w_cat_t, b):
    """``ops_step`` for RNN and LSTM with one gate product per step, as a layer runs it.

    ``x W_ih^T + h W_hh^T`` is ``[x, h] @ [W_ih^T; W_hh^T]``: the layer stacks the
    transposed weights once per forward (``w_cat_t`` (I+H, G*H), a concat node) and
    sums the biases once (``b``, or None), so a step is concat, linear (product plus
    bias) and the gate ops -- two nodes where two products and three adds were five.
    Same formulas, same intermediates (h, c and the gates), every node tagged with its step.
    """
    return _gate_ops(cell, linear(concat([x, h], axis=1), w_cat_t, b), c)


# =========================================================================== fused Functions


def _grads_tuple(g, dx_key, dh_key, dc_key):
    return (g[dx_key], g[dh_key], g.get(dc_key), g["dw_ih"], g["dw_hh"], g.get("db_ih"), g.get("db_hh"))


class _StepFunction(Function):
    """One time step as one node: ``step_forward`` / ``step_backward`` of the active kernel backend.

    Inputs (x, h, c, w_ih, w_hh, b_ih, b_hh) -- c and the biases may be None.
    Outputs h_new, plus c_new for the LSTM.
    """

    fresh_grads = True  # step_backward allocates every gradient it returns

    @staticmethod
    def forward(ctx, x, h, c, w_ih, w_hh, b_ih, b_hh, cell=None, trace=None):
        backend = kernels.backend
        h_new, c_new, saved = backend.step_forward(cell, x, h, c, w_ih, w_hh, b_ih, b_hh)
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(saved)
            ctx.backend, ctx.cell, ctx.trace = backend, cell, trace
        return (h_new, c_new) if cell == "lstm" else h_new

    @staticmethod
    def backward(ctx, d_h, d_c=None):
        (saved,) = ctx.saved_tensors
        if ctx.trace is not None:
            # d_h is the total gradient on h_new (the engine gathered every consumer's share
            # before calling this backward); the total gradient on c_new also flows through
            # h_new = o * tanh(c_new), inside this node
            d_c_total = None
            if ctx.cell == "lstm":
                H = d_h.shape[1]
                o = saved.gates[:, 3 * H:]
                d_c_total = d_c + d_h * o * (1 - saved.tanh_c * saved.tanh_c)
            ctx.trace.add(d_h, d_c_total)
        g = ctx.backend.step_backward(ctx.cell, saved, d_h, d_c, need_dx=ctx.needs_input_grad[0])
        return _grads_tuple(g, "dx", "dh", "dc")


class TraceSlot:
    """Where a fused sequence node deposits its gradient trace during backward."""

    __slots__ = ("h", "c")

    def __init__(self):
        self.h = None
        self.c = None

    def add(self, h, c):
        if h is not None:
            self.h = h if self.h is None else self.h + h
        if c is not None:
            self.c = c if self.c is None else self.c + c


class _SequenceFunction(Function):
    """A whole layer unroll as one node: ``seq_forward`` / ``seq_backward``.

    Inputs (x (T,B,I), h0, c0, w_ih, w_hh, b_ih, b_hh); outputs ``out`` (T, B, H)
    and, for the LSTM, ``c_out`` (T, B, H).  The layer takes h_n and c_n as
    slices ``out[-1]``, ``c_out[-1]``: only the last row of c_out may receive a
    gradient (the kernel's interface has no per-step dL/dc input).
    """

    accepts_none_grads = True  # an unused c_out needs no (T, B, H) array of zeros
    fresh_grads = True  # seq_backward allocates every gradient it returns

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, cell=None, trace=None):
        backend = kernels.backend
        out, c_out, saved = backend.seq_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(saved)
            ctx.backend, ctx.cell, ctx.trace = backend, cell, trace
        return (out, c_out) if cell == "lstm" else out

    @staticmethod
    def backward(ctx, d_out, d_cout=None):
        (saved,) = ctx.saved_tensors
        d_cn = None
        if d_cout is not None:
            if d_cout.shape[0] > 1 and np.any(d_cout[:-1]):
                raise GraphError(
                    "%s: a gradient reached the cell states c_1..c_{T-1} of the sequence node; only c_n = c_out[-1] "
                    "may be used. Use mode='cell' or mode='ops' to differentiate through intermediate cell states."
                    % ctx.describe()
                )
            d_cn = d_cout[-1]
        trace = ctx.trace
        g = ctx.backend.seq_backward(ctx.cell, saved, d_out, None, d_cn,
                                     need_dx=ctx.needs_input_grad[0], need_trace=trace is not None)
        if trace is not None:
            trace.add(g["trace_h"], g.get("trace_c"))
        return _grads_tuple(g, "dx", "dh0", "dc0")


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


class _CheckpointedFunction(Function):
    """A multi-layer unroll that keeps only every k-th state and recomputes segments in backward.

    Inputs: x, then per layer (h0, c0, w_ih, w_hh, b_ih, b_hh).  Outputs: the top
    layer's out (T, B, H), h_n (L, B, H) and, for the LSTM, c_n (L, B, H).

    Forward runs the sequence kernel segment by segment (k steps, all layers),
    keeping a copy of each layer's state at every segment start and discarding
    the kernel's workspace.  Backward walks the segments from last to first:
    it recomputes the segment's forward from the stored states (keeping the
    workspace this time), then backpropagates through it, top layer first,
    carrying dL/dh and dL/dc across the segment boundary.
    """

    @staticmethod
    def forward(ctx, x, *args, cell=None, k=None, traces=None, stats=None):
        from .utils import nbytes_of
        backend = kernels.backend
        L = len(args) // 6
        layers = [args[6 * l:6 * l + 6] for l in range(L)]
        T = x.shape[0]
        states = [(h0, c0) for (h0, c0, *_w) in layers]
        bounds = []  # bounds[s] = per-layer (h, c) at the start of segment s
        outs = []
        for s in range(0, T, k):
            bounds.append([(h.copy(), None if c is None else c.copy()) for h, c in states])
            inp = x[s:s + k]
            for l, (_h0, _c0, w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
                h, c = states[l]
                out, c_out, saved = backend.seq_forward(cell, inp, h, c, w_ih, w_hh, b_ih, b_hh)
                if stats is not None:
                    stats.full_bytes += nbytes_of(saved, exclude=(x, w_ih, w_hh, b_ih, b_hh))
                del saved
                states[l] = (out[-1], None if c_out is None else c_out[-1])
                inp = out
            outs.append(inp)
        out = np.concatenate(outs) if len(outs) > 1 else outs[0]
        h_n = np.stack([h for h, _ in states])
        c_n = np.stack([c for _, c in states]) if cell == "lstm" else None
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(x, [lay[2:] for lay in layers], bounds)  # weights only: h0/c0 live in bounds[0]
            ctx.backend, ctx.cell, ctx.k, ctx.traces, ctx.stats = backend, cell, k, traces, stats
            if stats is not None:
                stats.stored_bytes = nbytes_of(bounds)
        return (out, h_n, c_n) if cell == "lstm" else (out, h_n)

    @staticmethod
    def backward(ctx, d_out, d_hn, d_cn=None):
        from .utils import nbytes_of
        x, weights, bounds = ctx.saved_tensors
        backend, cell, k, traces, stats = ctx.backend, ctx.cell, ctx.k, ctx.traces, ctx.stats
        L, T = len(weights), x.shape[0]
        need_dx = ctx.needs_input_grad[0]
        grads = [dict(dw_ih=np.zeros_like(w_ih), dw_hh=np.zeros_like(w_hh),
                      db_ih=None if b_ih is None else np.zeros_like(b_ih),
                      db_hh=None if b_hh is None else np.zeros_like(b_hh))
                 for (w_ih, w_hh, b_ih, b_hh) in weights]
        carry_h = [d_hn[l] for l in range(L)]
        carry_c = [d_cn[l] if d_cn is not None else None for l in range(L)]
        dx = np.empty_like(x) if need_dx else None
        trace_h = [np.empty((T,) + d_out.shape[1:], d_out.dtype) for _ in range(L)] if traces else None
        trace_c = [np.empty_like(t) for t in trace_h] if traces and cell == "lstm" else None
        starts = list(range(0, T, k))
        for si in reversed(range(len(starts))):
            s = starts[si]
            e = min(s + k, T)
            # recompute this segment, all layers, keeping the kernel workspace
            saves, inp = [], x[s:e]
            for l, (w_ih, w_hh, b_ih, b_hh) in enumerate(weights):
                h, c = bounds[si][l]
                out, c_out, saved = backend.seq_forward(cell, inp, h, c, w_ih, w_hh, b_ih, b_hh)
                saves.append(saved)
                inp = out
            if stats is not None:
                stats.peak_segment_bytes = max(stats.peak_segment_bytes,
                                               nbytes_of(saves, exclude=(x,) + tuple(w for lay in weights for w in lay)))
            # backpropagate through it, top layer first
            d_seg = d_out[s:e]
            for l in reversed(range(L)):
                g = backend.seq_backward(cell, saves[l], d_seg, carry_h[l], carry_c[l],
                                         need_dx=(l > 0 or need_dx), need_trace=trace_h is not None)
                for key in ("dw_ih", "dw_hh", "db_ih", "db_hh"):
                    if grads[l][key] is not None:
                        grads[l][key] += g[key]
                carry_h[l], carry_c[l] = g["dh0"], g.get("dc0")
                if trace_h is not None:
                    trace_h[l][s:e] = g["trace_h"]
                    if trace_c is not None:
                        trace_c[l][s:e] = g["trace_c"]
                d_seg = g["dx"]
                saves[l] = None  # free as we go
            if need_dx:
                dx[s:e] = d_seg
        if traces:
            for l in range(L):
                traces[l].add(trace_h[l], None if trace_c is None else trace_c[l])
        result = [dx]
        for l in range(L):
            gl = grads[l]
            result += [carry_h[l], carry_c[l], gl["dw_ih"], gl["dw_hh"], gl["db_ih"], gl["db_hh"]]
        return tuple(result)


_FN_CACHE = {}


def _function(base, cell, suffix):
    """A subclass of ``base`` named e.g. ``lstm_cell`` / ``gru_sequence``: the op name shown in graphs."""
    key = (base, cell)
    if key not in _FN_CACHE:
        name = "%s_%s" % (cell, suffix)
        _FN_CACHE[key] = type("".join(p.capitalize() for p in name.split("_")), (base,), {"name": name})
    return _FN_CACHE[key]


def step_function(cell):
    """The fused one-step Function for ``cell`` (op name ``"<cell>_cell"``)."""
    return _function(_StepFunction, cell, "cell")


def sequence_function(cell):
    """The fused whole-sequence Function for ``cell`` (op name ``"<cell>_sequence"``)."""
    return _function(_SequenceFunction, cell, "sequence")


def checkpointed_function(cell):
    """The checkpointed multi-layer Function for ``cell`` (op name ``"<cell>_checkpointed"``)."""
    return _function(_CheckpointedFunction, cell, "checkpointed")


# =========================================================================== gradient traces


class GradTrace:
    """Per-step gradients of a recurrent layer, gathered by the last backward pass.

    ``h`` (num_layers, T, B, H): ``h[l, t]`` is dL/dh_t of layer l, the *total*
    gradient with respect to that hidden state (it flows through every later step,
    the layer above, and h_n).  ``c``: the same for the LSTM's cell state (None
    otherwise).  ``norms()`` / ``c_norms()``: L2 norm over (B, H), shape (num_layers, T).
    """

    def __init__(self, h, c=None):
        self.h = h
        self.c = c

    def norms(self):
        """(num_layers, T) L2 norms of ``h`` over the batch and hidden axes."""
        return np.sqrt(np.sum(np.square(self.h), axis=(2, 3)))

    def c_norms(self):
        """(num_layers, T) L2 norms of ``c`` (LSTM only)."""
        if self.c is None:
            raise ValueError("grad_trace.c_norms(): only an LSTM has a cell state")
        return np.sqrt(np.sum(np.square(self.c), axis=(2, 3)))

    def __repr__(self):
        return "GradTrace(h=%s%s)" % (self.h.shape, ", c=%s" % (self.c.shape,) if self.c is not None else "")


# =========================================================================== shared helpers


def _check_dtype(dtype, who):
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise DTypeError("%s: dtype must be float32 or float64, got %s" % (who, dt))
    return dt


def _check_sizes(who, input_size, hidden_size):
    for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError("%s: %s must be a positive integer, got %r" % (who, name, v))


def _cell_name(nonlinearity, who):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError("%s: nonlinearity must be 'tanh' or 'relu', got %r" % (who, nonlinearity))
    return "rnn_" + nonlinearity


def _as_tensor(x, dtype, who, what):
    if isinstance(x, Tensor):
        if x.dtype != dtype:
            raise DTypeError(
                "%s: %s is %s but the layer is %s; convert with .astype(np.%s) (or the layer with .to(np.%s))"
                % (who, what, describe(x.data), dtype, dtype, x.dtype))
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise DTypeError("%s: %s must be a numeric array or Tensor, got dtype %s" % (who, what, arr.dtype))
    return Tensor(arr.astype(dtype, copy=False))


class _RecurrentBase(Module):
    """Parameters, init and validation shared by the cells and the layers."""

    cell_type = None  # "rnn_tanh" | "rnn_relu" | "lstm" | "gru"

    def _make_weights(self, suffix, in_size):
        G, H = GATES[self.cell_type], self.hidden_size
        k = 1.0 / np.sqrt(H)
        shapes = [("weight_ih" + suffix, (G * H, in_size)), ("weight_hh" + suffix, (G * H, H))]
        if self.bias:
            shapes += [("bias_ih" + suffix, (G * H,)), ("bias_hh" + suffix, (G * H,))]
        for name, shape in shapes:
            p = Parameter(np.empty(shape, dtype=self.dtype))
            init.uniform_(p, -k, k)
            setattr(self, name, p)
        if not self.bias:
            self.register_parameter("bias_ih" + suffix, None)
            self.register_parameter("bias_hh" + suffix, None)

    def reset_parameters(self):
        """Re-draw every parameter from U(-1/sqrt(H), 1/sqrt(H)) (PyTorch's default)."""
        k = 1.0 / np.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -k, k)

    @property
    def _who(self):
        return "%s(input_size=%d, hidden_size=%d%s)" % (
            type(self).__name__, self.input_size, self.hidden_size,
            ", num_layers=%d" % self.num_layers if getattr(self, "num_layers", 1) != 1 else "")


# =========================================================================== cells


class _CellBase(_RecurrentBase):
    def __init__(self, cell_type, input_size, hidden_size, bias=True, dtype=np.float64, mode="cell"):
        super().__init__()
        who = type(self).__name__
        _check_sizes(who, input_size, hidden_size)
        if mode not in CELL_MODES:
            raise ValueError("%s: mode must be one of %s, got %r" % (who, CELL_MODES, mode))
        self.cell_type = cell_type
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.bias = bool(bias)
        self.dtype = _check_dtype(dtype, who)
        self.mode = mode
        self._make_weights("", self.input_size)

    def _state(self, x, state, batched):
        who, H = self._who, self.hidden_size
        B = x.shape[0]
        want = (B, H) if batched else (H,)
        lstm = self.cell_type == "lstm"
        if state is None:
            z = Tensor(np.zeros((B, H), dtype=self.dtype))
            return z, (Tensor(np.zeros((B, H), dtype=self.dtype)) if lstm else None)
        if lstm:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise ShapeError("%s: the state must be a tuple (h, c) of shape %s each, got %s"
                                 % (who, want, type(state).__name__))
            parts = [_as_tensor(s, self.dtype, who, name) for s, name in zip(state, ("h", "c"))]
        else:
            if isinstance(state, (tuple, list)):
                raise ShapeError("%s: the state must be one array h of shape %s, not a %s"
                                 % (who, want, type(state).__name__))
            parts = [_as_tensor(state, self.dtype, who, "h")]
        for p, name in zip(parts, ("h", "c")):
            if p.shape != want:
                raise ShapeError("%s: %s must have shape %s to match the input %s, got %s"
                                 % (who, name, want, tuple(x.shape) if batched else tuple(x.shape[1:]),
                                    describe(p.data)))
        if not batched:
            parts = [p.reshape(1, H) for p in parts]
        return parts[0], (parts[1] if lstm else None)

    def forward(self, x, state=None):
        who = self._who
        x = _as_tensor(x, self.dtype, who, "input")
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ShapeError("%s: input must have shape (B, %d) (or (%d,) unbatched), got %s"
                             % (who, self.input_size, self.input_size, describe(x.data)))
        batched = x.ndim == 2
        if not batched:
            x = x.reshape(1, self.input_size)
        h, c = self._state(x, state, batched)
        cell = self.cell_type
        w_ih, w_hh, b_ih, b_hh = self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
        with node_scope(label="%s_cell" % _kind(cell)):
            if self.mode == "ops":
                h_new, c_new = ops_step(cell, x, h, c, w_ih.T, w_hh.T, b_ih, b_hh)
            else:
                res = step_function(cell).apply(x, h, c, w_ih, w_hh, b_ih, b_hh, cell=cell)
                h_new, c_new = res if cell == "lstm" else (res, None)
            if not batched:
                h_new = h_new.reshape(self.hidden_size)
                c_new = None if c_new is None else c_new.reshape(self.hidden_size)
        return (h_new, c_new) if cell == "lstm" else h_new

    def extra_repr(self):
        s = "%d, %d" % (self.input_size, self.hidden_size)
        if not self.bias:
            s += ", bias=False"
        if self.cell_type == "rnn_relu":
            s += ", nonlinearity='relu'"
        if self.dtype != np.float64:
            s += ", dtype=%s" % self.dtype
        if self.mode != "cell":
            s += ", mode=%r" % self.mode
        return s


class RNNCell(_CellBase):
    """Elman RNN cell: ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``, act = tanh or relu.

    ``h = cell(x, h)`` with x (B, I), h (B, H) (optional: zeros).
    mode "cell" (one fused node) or "ops" (primitive ops).
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=np.float64, mode="cell"):
        super().__init__(_cell_name(nonlinearity, "RNNCell"), input_size, hidden_size, bias, dtype, mode)
        self.nonlinearity = nonlinearity


class LSTMCell(_CellBase):
    """LSTM cell, PyTorch gate order (i, f, g, o): ``h, c = cell(x, (h, c))``.

    ``forget_bias``: if given, the forget gate's total bias starts at this value
    (see ``init.lstm_forget_bias_``).
    """

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float64, mode="cell", forget_bias=None):
        super().__init__("lstm", input_size, hidden_size, bias, dtype, mode)
        if forget_bias is not None:
            init.lstm_forget_bias_(self, forget_bias)


class GRUCell(_CellBase):
    """GRU cell, PyTorch gate order (r, z, n): ``h = cell(x, h)``."""

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float64, mode="cell"):
        super().__init__("gru", input_size, hidden_size, bias, dtype, mode)


# =========================================================================== layers


_WEIGHT_NAMES = {}  # layer index l -> the four parameter names of layer l


class _LayerBase(_RecurrentBase):
    def __init__(self, cell_type, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float64, mode="sequence", checkpoint=None):
        super().__init__()
        who = type(self).__name__
        _check_sizes(who, input_size, hidden_size)
        if not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
            raise ValueError("%s: num_layers must be a positive integer, got %r" % (who, num_layers))
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
        self.dtype = _check_dtype(dtype, who)
        self.mode = mode
        self.checkpoint = self._check_checkpoint(checkpoint)
        for l in range(self.num_layers):
            self._make_weights("_l%d" % l, self.input_size if l == 0 else self.hidden_size)
        self._trace_source = None
        self.checkpoint_stats = None
        #: Record ``grad_trace`` during backward (costs one (T, B, H) array per layer,
        #: and in ops/cell mode a retained gradient per step).  Set False to skip it.
        self.record_grad_trace = True

    def _check_checkpoint(self, k):
        if k is None:
            return None
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError("%s: checkpoint must be None or a positive number of steps, got %r" % (self._who, k))
        return int(k)

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
            x = _as_tensor(x, self.dtype, self._who, "input")
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
        if lstm:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise ShapeError("%s: the initial state must be a tuple (h0, c0), each of shape %s; got %s"
                                 % (who, want, type(state).__name__))
            parts = [_as_tensor(s, self.dtype, who, n) for s, n in zip(state, ("h0", "c0"))]
        else:
            if isinstance(state, (tuple, list)):
                raise ShapeError("%s: the initial state must be one array h0 of shape %s, not a %s"
                                 % (who, want, type(state).__name__))
            parts = [_as_tensor(state, self.dtype, who, "h0")]
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
        return self._forward(x, state, self.checkpoint)

    def _forward(self, x, state, checkpoint):
        x, batched = self._input(x)
        T, B = x.shape[0], x.shape[1]
        h0s, c0s = self._initial_state(state, B, batched)
        cell, L = self.cell_type, self.num_layers
        lstm = cell == "lstm"
        kind = _kind(cell)
        track = self.record_grad_trace and is_grad_enabled()
        self._trace_source = None
        if checkpoint is not None:
            out, h_n, c_n = self._forward_checkpointed(x, h0s, c0s, checkpoint, track)
        else:
            inp = x
            h_last, c_last, sources = [], [], []
            for l in range(L):
                label = _layer_label(kind, l)
                w_ih, w_hh, b_ih, b_hh = self.layer_weights(l)
                h, c = h0s[l], c0s[l]
                if self.mode == "sequence":
                    slot = TraceSlot() if track else None
                    with node_scope(label=label):
                        res = sequence_function(cell).apply(inp, h, c, w_ih, w_hh, b_ih, b_hh, cell=cell, trace=slot)
                        out, c_out = res if lstm else (res, None)
                        h_last.append(GetItem.apply(out, idx=-1))  # out[-1]
                        c_last.append(GetItem.apply(c_out, idx=-1) if lstm else None)
                    sources.append(slot)
                else:
                    with node_scope(label=label):
                        if self.mode == "ops":
                            w_ih_t, w_hh_t = w_ih.T, w_hh.T
                            if cell != "gru":  # one gate product per step (see _ops_step_joint)
                                w_cat_t = concat([w_ih_t, w_hh_t], axis=0)
                                b_cat = b_ih if b_hh is None else (b_hh if b_ih is None else b_ih + b_hh)
                        else:
                            fn = step_function(cell)
                    hs, cs = [], []
                    # building T steps of nodes makes no reference cycles: pause the cyclic GC
                    # during long unrolls (its collections cost about a fifth of the time)
                    paused = T >= 64 and gc.isenabled()
                    if paused:
                        gc.disable()
                    try:
                        for t in range(T):
                            with node_scope(label=label, step=t):
                                x_t = inp[t]
                                if self.mode == "ops":
                                    if cell == "gru":
                                        h, c = ops_step(cell, x_t, h, c, w_ih_t, w_hh_t, b_ih, b_hh)
                                    else:
                                        h, c = _ops_step_joint(cell, x_t, h, c, w_cat_t, b_cat)
                                    c_src = c
                                    if track and h.requires_grad:
                                        h.retain_grad()
                                        if lstm:
                                            c.retain_grad()
                                else:
                                    # the fused node deposits dL/dh_t and dL/dc_t in a slot during backward,
                                    # so the layer need not keep h_t (and with it the whole graph) alive
                                    c_src = TraceSlot() if track else None
                                    res = fn.apply(x_t, h, c, w_ih, w_hh, b_ih, b_hh, cell=cell, trace=c_src)
                                    h, c = res if lstm else (res, None)
                            hs.append(h)
                            cs.append(c_src)
                    finally:
                        if paused:
                            gc.enable()
                    with node_scope(label=label):
                        out = stack(hs)
                    h_last.append(h)
                    c_last.append(c)
                    # ops mode reads the retained .grad of h_t and c_t, so it keeps them (and the
                    # last unrolled graph) until the next forward; cell mode keeps only its slots
                    sources.append(((hs if self.mode == "ops" else None), cs) if track else None)
                inp = out
            out = inp
            with node_scope(label=kind):
                h_n = stack(h_last)
                c_n = stack(c_last) if lstm else None
            if track:
                self._trace_source = (self.mode, sources, T, B)
        if not batched:
            out = out.reshape(T, self.hidden_size)
            h_n = h_n.reshape(L, self.hidden_size)
            c_n = None if c_n is None else c_n.reshape(L, self.hidden_size)
        elif self.batch_first:
            out = out.transpose(1, 0, 2)
        return (out, (h_n, c_n)) if lstm else (out, h_n)

    def _forward_checkpointed(self, x, h0s, c0s, k, track):
        cell, L = self.cell_type, self.num_layers
        args = []
        for l in range(L):
            args += [h0s[l], c0s[l], *self.layer_weights(l)]
        slots = [TraceSlot() for _ in range(L)] if track else None
        stats = CheckpointStats(x.shape[0], k)
        self.checkpoint_stats = stats
        with node_scope(label=_kind(cell)):
            res = checkpointed_function(cell).apply(x, *args, cell=cell, k=k, traces=slots, stats=stats)
        if track:
            self._trace_source = ("sequence", slots, x.shape[0], x.shape[1])
        if cell == "lstm":
            return res
        return res[0], res[1], None

    # ------------------------------------------------------------------ gradient traces
    @property
    def grad_trace(self):
        """``GradTrace`` of the last backward pass through this layer's last forward call.

        ``.h`` (num_layers, T, B, H) total gradients w.r.t. every hidden state;
        ``.c`` likewise for the LSTM cell state; ``.norms()`` (num_layers, T).
        Raises GraphError if no backward pass has reached the layer since its last
        forward (or the forward ran under no_grad).
        """
        src = self._trace_source
        if src is None and not self.record_grad_trace:
            raise GraphError("%s.grad_trace: not recorded because layer.record_grad_trace is False; set it to True "
                             "before the forward pass" % self._who)
        if src is None:
            raise GraphError("%s.grad_trace: no forward pass with gradients recorded yet (forward under no_grad() "
                             "records nothing); run out = layer(x), then loss.backward()" % self._who)
        mode, sources, T, B = src
        H, L = self.hidden_size, self.num_layers
        lstm = self.cell_type == "lstm"
        hs = np.zeros((L, T, B, H), dtype=self.dtype)
        cs = np.zeros((L, T, B, H), dtype=self.dtype) if lstm else None
        reached = False
        for l, s in enumerate(sources):
            if s is None:
                continue
            if mode == "sequence":
                if s.h is not None:
                    reached = True
                    hs[l] = s.h
                    if lstm and s.c is not None:
                        cs[l] = s.c
            else:
                h_list, c_list = s  # ops: retained h and c tensors; cell: None and TraceSlots
                for t in range(T):
                    if mode == "ops":
                        gh = h_list[t].grad
                        gc = c_list[t].grad if lstm else None
                    else:
                        slot = c_list[t]
                        gh, gc = (None, None) if slot is None else (slot.h, slot.c)
                    if gh is not None:
                        reached = True
                        hs[l, t] = gh
                    if lstm and gc is not None:
                        reached = True
                        cs[l, t] = gc
        if not reached:
            raise GraphError("%s.grad_trace: no gradient has reached this layer since its last forward pass; "
                             "call loss.backward() on a loss that depends on its output first" % self._who)
        return GradTrace(hs, cs)

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
        if self.checkpoint is not None:
            s += ", checkpoint=%d" % self.checkpoint
        return s


class RNN(_LayerBase):
    """Multi-layer Elman RNN, ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dtype=np.float64, mode='sequence', checkpoint=None)``;
    ``out, h_n = rnn(x, h0)``.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float64, mode="sequence", checkpoint=None):
        super().__init__(_cell_name(nonlinearity, "RNN"), input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype, mode, checkpoint)
        self.nonlinearity = nonlinearity


class LSTM(_LayerBase):
    """Multi-layer LSTM (gate order i, f, g, o as in PyTorch).

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dtype=np.float64, mode='sequence', checkpoint=None, forget_bias=None)``;
    ``out, (h_n, c_n) = lstm(x, (h0, c0))``.  ``forget_bias=v`` starts every
    layer's forget gate with total bias v (``bias_ih`` f block = v, ``bias_hh``
    f block = 0; see ``init.lstm_forget_bias_``).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=np.float64, mode="sequence", checkpoint=None, forget_bias=None):
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, mode, checkpoint)
        if forget_bias is not None:
            init.lstm_forget_bias_(self, forget_bias)


class GRU(_LayerBase):
    """Multi-layer GRU (gate order r, z, n as in PyTorch); ``out, h_n = gru(x, h0)``."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=np.float64, mode="sequence", checkpoint=None):
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype, mode, checkpoint)

"""The fused recurrent autograd Functions: one step, or a whole unroll, as one node.

``mode="cell"`` puts one ``<cell>_cell`` node per time step in the graph, and
``mode="sequence"`` one ``<cell>_sequence`` node per layer; both call the active
kernel backend (``tinybptt.kernels``: the NumPy reference or C) for their forward
and backward.  Their backward also deposits the per-step gradients dL/dh_t (and
dL/dc_t) in the layer's ``TraceSlot`` (``nn/trace.py``), which is how
``layer.grad_trace`` sees inside a node that hides its steps.

The checkpointed variant, which recomputes segments during backward, is in
``nn/checkpoint.py``.
"""
from .. import kernels
from ..autograd import Function
from ..kernels.numpy_rnn import lstm_dc_total


def grads_tuple(g, dx_key, dh_key, dc_key):
    """A kernel backward's dict as the Function's gradients (x, h, c, w_ih, w_hh, b_ih, b_hh)."""
    return (g[dx_key], g[dh_key], g.get(dc_key), g["dw_ih"], g["dw_hh"], g.get("db_ih"), g.get("db_hh"))


class FusedFunction(Function):
    """Base of the fused recurrent nodes: the forward is one kernel call.

    ``kernel`` names the backend function (``step_forward`` or ``seq_forward``).
    Inputs (x, h, c, w_ih, w_hh, b_ih, b_hh) -- c and the biases may be None; a
    subclass's ``outputs`` says what the node returns.  The node saves the kernel's
    record of the call and the outputs its backward reads (so that an in-place edit
    of one of them before backward is caught; ``tinybptt.saved``).  The kernel's
    backward fills the layer's trace slot as a side effect, so an inspection must
    not run it a second time (``inspect_replay = False``, read by ``tinybptt.inspect.walk``).
    """

    kernel = None
    inspect_replay = False

    @staticmethod
    def forward(ctx, x, h, c, w_ih, w_hh, b_ih, b_hh, cell=None, trace=None):
        backend = kernels.backend
        h_new, c_new, saved = getattr(backend, ctx.fn.kernel)(cell, x, h, c, w_ih, w_hh, b_ih, b_hh)
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(saved, h_new, c_new)
            ctx.backend, ctx.cell, ctx.trace = backend, cell, trace
        return ctx.fn.outputs(h_new, c_new)


class StepFunction(FusedFunction):
    """One time step as one node: ``step_forward`` / ``step_backward`` of the active kernel backend.

    Outputs h_new, plus c_new for the LSTM.
    """

    kernel = "step_forward"

    @staticmethod
    def outputs(h_new, c_new):
        """The node's outputs from the kernel's: h_new, and c_new for the LSTM."""
        return h_new if c_new is None else (h_new, c_new)

    @staticmethod
    def backward(ctx, d_h, d_c=None):
        saved = ctx.saved_tensors[0]
        if ctx.trace is not None:
            # d_h is the total gradient on h_new (the engine gathered every consumer's share
            # before calling this backward); the total gradient on c_new also flows through
            # h_new = o * tanh(c_new), inside this node
            d_c_total = None if ctx.cell != "lstm" else lstm_dc_total(saved.gates, saved.tanh_c, d_h, d_c)
            ctx.trace.add(d_h, d_c_total)
        g = ctx.backend.step_backward(ctx.cell, saved, d_h, d_c, need_dx=ctx.needs_input_grad[0])
        return grads_tuple(g, "dx", "dh", "dc")


class SequenceFunction(FusedFunction):
    """A whole layer unroll as one node: ``seq_forward`` / ``seq_backward``.

    Inputs (x (T,B,I), h0, c0, w_ih, w_hh, b_ih, b_hh); outputs ``out`` (T, B, H),
    ``h_n`` (1, B, H) and, for the LSTM, ``c_n`` (1, B, H): the last steps of the
    hidden and cell states, as copies (they share no memory with ``out``), so the
    layer takes its final state without another node.  Their gradients go to the
    kernel as its dL/dh_n and dL/dc_n.
    """

    kernel = "seq_forward"
    accepts_none_grads = True  # an unused output needs no array of zeros

    @staticmethod
    def outputs(out, c_out):
        """The node's outputs from the kernel's: out, h_n, and c_n for the LSTM."""
        h_n = out[-1:].copy()
        return (out, h_n) if c_out is None else (out, h_n, c_out[-1:].copy())

    @staticmethod
    def backward(ctx, d_out, d_hn, d_cn=None):
        saved = ctx.saved_tensors[0]
        trace = ctx.trace
        g = ctx.backend.seq_backward(ctx.cell, saved, d_out, None if d_hn is None else d_hn[0],
                                     None if d_cn is None else d_cn[0],
                                     need_dx=ctx.needs_input_grad[0], need_trace=trace is not None,
                                     scaled_trace=True)  # the slot brings it to true size when read
        if trace is not None:
            trace.add(g["trace_h"], g["trace_c"], g["trace_exp"])
        return grads_tuple(g, "dx", "dh0", "dc0")

    @staticmethod
    def trace_slots(ctx):
        """The one ``TraceSlot`` this node fills (none if its layer does not record a trace)."""
        trace = getattr(ctx, "trace", None)
        return [] if trace is None else [trace]


_FN_CACHE = {}


def named_function(base, cell, suffix):
    """A subclass of ``base`` named e.g. ``lstm_cell`` / ``gru_sequence``: the op name shown in graphs."""
    key = (base, cell)
    if key not in _FN_CACHE:
        name = "%s_%s" % (cell, suffix)
        _FN_CACHE[key] = type("".join(p.capitalize() for p in name.split("_")), (base,), {"name": name})
    return _FN_CACHE[key]


def step_function(cell):
    """The fused one-step Function for ``cell`` (op name ``"<cell>_cell"``)."""
    return named_function(StepFunction, cell, "cell")


def sequence_function(cell):
    """The fused whole-sequence Function for ``cell`` (op name ``"<cell>_sequence"``)."""
    return named_function(SequenceFunction, cell, "sequence")

"""The gradient trace of a recurrent layer: dL/dh_t (and dL/dc_t) for every step t.

After ``loss.backward()``, ``layer.grad_trace.h[l, t]`` is the *total* gradient
of the loss with respect to layer l's hidden state at step t (t = 0..T-1, the
state ``out[t]``): what reached it through every later step, the layer above
and h_n.  How it is gathered depends on the layer's ``mode``:

``"sequence"``  the fused node has the per-step gradients in hand during its
                backward anyway; it deposits them in a ``TraceSlot`` (one per
                layer), so the layer keeps no graph alive for the trace.
``"cell"``      each step's node deposits its dL/dh_t, dL/dc_t in its own slot
                (``StepSlots``).
``"ops"``       h_t and c_t are ordinary tensors; the layer asks the engine to
                keep their ``.grad`` (``retain_grad``) and reads it (``RetainedStates``).

Each of these *sources* has ``read(h, c)``: copy what arrived into the arrays
``h`` and ``c`` and say whether anything did, and ``dtypes()``: the dtypes of what
arrived.  ``gather_trace`` turns one source per layer into a ``GradTrace``.

True sizes.  A float32 layer's trace can hold gradients float32 cannot: the C
sequence kernels carry the gradient through time as scaled values times a power
of two (docs/design.md, "Tiny gradients in float32"), and when the true sizes
leave float32's normal range, the trace of that backward pass comes back as
float64 (1e-40 and 1e-200 are numbers there).  The trace then is float64 wherever it is kept
(``store_segment``, ``gather_trace``), and the norms are taken in float64 after
scaling, so that no size is lost on the way to the user.

Inspection tools that meet a fused node in the graph find its slots with
``trace_slots(node)``.
"""
import numpy as np

from ..errors import GraphError
from .utils import scaled_norm


class TraceSlot:
    """Where a fused node deposits dL/dh (and for the LSTM dL/dc) during its backward.

    A sequence node fills ``h`` (T, B, H); a step node ``h`` (B, H).  ``c`` is
    the total gradient on the cell state (None for RNN and GRU).

    A deposit may also come as the C kernel leaves it, scaled values and their
    exponents, one per step and sequence (true value = value * 2**exps[t, b], see
    "True sizes" above): ``add(h, c, exps)``.  It is then kept as it is and brought to
    true size only when ``h`` or ``c`` is first read, so that a training loop that
    records the trace every step but reads it now and then does not pay the
    conversion at every step.  Whoever reads ``h`` or ``c`` sees the true sizes either
    way.
    """

    __slots__ = ("_h", "_c", "_exps")

    def __init__(self):
        self._h = self._c = self._exps = None

    def add(self, h, c, exps=None):
        """Add one backward pass's gradients (two backward passes add up, like ``.grad``); ``exps``
        (T, B) when ``h`` and ``c`` are scaled values (see the class docstring)."""
        if exps is not None and self._h is None and self._c is None:
            self._h, self._c, self._exps = h, c, exps  # kept scaled until read
            return
        if exps is not None:  # a second pass: both in true size, then the sum
            h, c = _true_sizes(h, c, exps)
        if h is not None:
            self._h = h if self._h is None else self.h + h
        if c is not None:
            self._c = c if self._c is None else self.c + c

    def _settle(self):
        """Bring a deposit kept scaled to true size (once)."""
        if self._exps is not None:
            self._h, self._c = _true_sizes(self._h, self._c, self._exps)
            self._exps = None

    @property
    def h(self):
        self._settle()
        return self._h

    @property
    def c(self):
        self._settle()
        return self._c

    def dtypes(self):
        """The dtypes of the deposit (float64 for a float32 layer whose trace left float32's range)."""
        return [a.dtype for a in (self.h, self.c) if a is not None]

    def read(self, h, c):
        """Copy the deposit into ``h`` (and ``c`` unless None); False if nothing arrived."""
        if self.h is None and self.c is None:
            return False
        if self.h is not None:
            h[...] = self.h
        if c is not None and self.c is not None:
            c[...] = self.c
        return True


def _true_sizes(h, c, exps):
    """``(h, c)`` at true size from scaled values and their exponents (T, B): the C backend's
    conversion (only its kernels leave a trace scaled)."""
    from ..kernels.c_rnn import _true_trace

    return _true_trace(h, c, np.asarray(exps))


class StepSlots(list):
    """Mode "cell": one ``TraceSlot`` per time step, in step order."""

    def new_slot(self):
        slot = TraceSlot()
        self.append(slot)
        return slot

    def dtypes(self):
        return [dt for slot in self for dt in slot.dtypes()]

    def read(self, h, c):
        reached = False
        for t, slot in enumerate(self):
            reached |= slot.read(h[t], None if c is None else c[t])
        return reached


class RetainedStates:
    """Mode "ops": the layer's h_t (and c_t) tensors, whose ``.grad`` the engine keeps.

    Holding them keeps the last unrolled graph alive until the next forward call.
    """

    def __init__(self):
        self.h, self.c = [], []

    def keep(self, h, c):
        """Ask the engine to keep dL/dh_t (and dL/dc_t) of this step's states."""
        if h.requires_grad:
            h.retain_grad()
            if c is not None:
                c.retain_grad()
        self.h.append(h)
        self.c.append(c)

    def dtypes(self):
        return []  # the engine's gradients have the states' dtype

    def read(self, h, c):
        reached = False
        for t, (ht, ct) in enumerate(zip(self.h, self.c)):
            if ht.grad is not None:
                h[t] = ht.grad
                reached = True
            if c is not None and ct is not None and ct.grad is not None:
                c[t] = ct.grad
                reached = True
        return reached


class GradTrace:
    """Per-step gradients of a recurrent layer, gathered by the last backward pass.

    ``h`` (num_layers, T, B, H): ``h[l, t]`` is dL/dh_t of layer l (t = 0..T-1), the
    *total* gradient with respect to that hidden state (it flows through every later
    step, the layer above, and h_n).  ``c``: the same for the LSTM's cell state (None
    otherwise).  ``norms()`` / ``c_norms()``: L2 norm over (B, H), shape (num_layers, T).
    ``plot()`` draws them (matplotlib), ``to_dict()`` gives them as plain data, and a
    notebook shows the plot.
    """

    def __init__(self, h, c=None):
        self.h = h
        self.c = c

    def norms(self):
        """(num_layers, T) L2 norms of ``h`` over the batch and hidden axes (float64)."""
        return _norms(self.h)

    def c_norms(self):
        """(num_layers, T) L2 norms of ``c`` (LSTM only; float64)."""
        if self.c is None:
            raise ValueError("grad_trace.c_norms(): only an LSTM has a cell state")
        return _norms(self.c)

    def to_dict(self):
        """``{"steps", "h_norms", "c_norms"}``: per-layer lists of per-step norms (JSON-safe)."""
        return {"steps": list(range(self.h.shape[1])), "h_norms": self.norms().tolist(),
                "c_norms": None if self.c is None else self.c_norms().tolist()}

    def plot(self, title=None):
        """A matplotlib figure of log10 ||dL/dh_t|| (and ||dL/dc_t||) against t, one line per layer."""
        from ..inspect.plot import trace_figure

        return trace_figure(self, title)

    def _repr_png_(self):
        from ..inspect.plot import png_of

        return png_of(self.plot)

    def __repr__(self):
        return "GradTrace(h=%s%s)" % (self.h.shape, ", c=%s" % (self.c.shape,) if self.c is not None else "")


def _norms(a):
    """L2 norms of ``a`` (L, T, B, H) over its last two axes, in float64 and scaled by each
    (B, H) block's largest entry first (``nn.utils.scaled_norm``): a norm of 1e-200 (whose
    square float64 cannot hold) or of a float32 block of 1e-30 comes out as itself."""
    return scaled_norm(np.abs(np.asarray(a, dtype=np.float64)), 2.0, axis=(2, 3))


def store_segment(arrays, l, s, e, values):
    """``arrays[l][s:e] = values``, widening ``arrays[l]`` first when ``values`` has a wider dtype
    (a float32 layer's trace segment that came back as float64, see "True sizes" above)."""
    a = arrays[l]
    dt = np.result_type(a.dtype, values.dtype)
    if dt != a.dtype:
        with np.errstate(invalid="ignore"):  # segments not written yet may hold any bits
            a = arrays[l] = a.astype(dt)
    a[s:e] = values


class LayerTraces:
    """What a layer's forward call leaves for ``grad_trace``: one source per layer and the sizes."""

    __slots__ = ("sources", "T", "B")

    def __init__(self, sources, T, B):
        self.sources, self.T, self.B = sources, T, B


def gather_trace(who, traces, H, dtype, lstm):
    """The ``GradTrace`` of ``traces`` (a ``LayerTraces``); GraphError if no gradient arrived."""
    L = len(traces.sources)
    dtype = np.result_type(dtype, *[dt for source in traces.sources for dt in source.dtypes()])
    h = np.zeros((L, traces.T, traces.B, H), dtype=dtype)
    c = np.zeros_like(h) if lstm else None
    reached = False
    for l, source in enumerate(traces.sources):
        reached |= source.read(h[l], None if c is None else c[l])
    if not reached:
        raise GraphError("%s.grad_trace: no gradient has reached this layer since its last forward pass; "
                         "call loss.backward() on a loss that depends on its output first" % who)
    return GradTrace(h, c)


def trace_slots(node):
    """The ``TraceSlot`` per layer that a fused recurrent node fills during its backward.

    ``node`` is a graph node (``Context``).  For a whole-sequence node (op
    ``<cell>_sequence``: one slot) or a checkpointed one (``<cell>_checkpointed``:
    one slot per layer) whose layer records its gradient trace, the slots'
    ``h`` (and ``c``) become (T, B, H) arrays of per-step gradients, step t = 0..T-1,
    when the backward pass has run the node.  Any other node: ``[]``.  Call it
    before the node's backward has run (from a ``backward_hook``): the backward
    pass frees the node afterwards, but the slots stay valid.
    """
    reader = getattr(node.fn, "trace_slots", None)
    return list(reader(node)) if reader is not None else []

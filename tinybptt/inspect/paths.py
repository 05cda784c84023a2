"""The two roads a gradient takes back through an LSTM's cell state.

The cell state c_t is used twice: by the next step's cell update
c_{t+1} = f_{t+1} * c_t + i_{t+1} * g_{t+1}, and by this step's output
h_t = o_t * tanh(c_t).  So the total gradient splits exactly into two parts
(t = 0..T-1, elementwise):

    dL/dc_t = f_{t+1} * dL/dc_{t+1}                  the cell path ("constant error carousel")
            + dL/dh_t * o_t * (1 - tanh(c_t)^2)      through h_t, and with it the gates

where dL/dh_t is itself total (it arrives through the loss at step t and through
the gates of step t+1).  At t = T-1 the cell path is what reached c_{T-1} from
outside the layer (c_n): the total minus the part through h_{T-1}, with a
difference within rounding of the two (8 ulp) taken as 0.

Along the cell path alone, dc_{T-1}/dc_t is diagonal with entries
``prod_{k=t+1}^{T-1} f_k``: the forget-gate product.  It is the reason why
dc_t/dc_0 still shrinks in an LSTM: unless the forget gates sit at 1, the product
of many numbers below 1 decays geometrically, just more slowly than a vanilla RNN's
Jacobian product.  ``lstm_gradient_paths`` reports it in log10 (no underflow).
"""
import math

import numpy as np

from ..errors import GraphError, ShapeError
from .jacobian import layer_input, run_cell


class LSTMPaths:
    """The split of dL/dc_t of one LSTM layer (arrays (T, B, H), time steps t = 0..T-1).

    ``total``         dL/dc_t, the layer's ``grad_trace.c``
    ``cell_path``     what arrives along the cell path, f_{t+1} * dL/dc_{t+1}
    ``through_h``     what arrives through h_t (and the gates): dL/dh_t * o_t * (1 - tanh(c_t)^2)
    ``log10_forget_product``  log10 prod_{k=t+1}^{T-1} f_k (0 at t = T-1)
    ``forget``        the forget gates f_t themselves
    """

    def __init__(self, total, cell_path, through_h, log10_forget_product, forget):
        self.total, self.cell_path, self.through_h = total, cell_path, through_h
        self.log10_forget_product, self.forget = log10_forget_product, forget

    @property
    def T(self):
        return self.total.shape[0]

    @property
    def steps(self):
        """The time step of each row: 0..T-1."""
        return np.arange(self.T)

    @property
    def forget_product(self):
        """prod_{k=t+1}^{T-1} f_k, (T, B, H); underflows to 0 where the log10 values do not."""
        with np.errstate(under="ignore"):
            return 10.0 ** self.log10_forget_product

    def norms(self):
        """Per step (T,): log10 of the L2 norms (over batch and units) of total, cell path and
        through h, and the mean, min and max over batch and units of log10 prod f."""
        def log10_norm(a):
            n = np.sqrt(np.sum(np.square(a.astype(np.float64)), axis=(1, 2)))
            with np.errstate(divide="ignore"):
                return np.log10(n)

        lf = self.log10_forget_product.reshape(self.T, -1)
        return {"total": log10_norm(self.total), "cell_path": log10_norm(self.cell_path),
                "through_h": log10_norm(self.through_h), "log10_forget_product_mean": lf.mean(axis=1),
                "log10_forget_product_min": lf.min(axis=1), "log10_forget_product_max": lf.max(axis=1)}

    def to_dict(self):
        """The per-step norms as plain lists (None for -inf), JSON-safe."""
        return {"steps": self.steps.tolist(),
                **{k: [float(v) if math.isfinite(v) else None for v in a] for k, a in self.norms().items()}}

    def plot(self):
        """A matplotlib figure: the three gradient norms and the forget-gate product against t."""
        from .plot import paths_figure

        return paths_figure(self)

    def _repr_png_(self):
        from .plot import png_of

        return png_of(self.plot)

    def __repr__(self):
        return "LSTMPaths(T=%d, batch=%d, hidden=%d)" % self.total.shape


def _time_major(lstm, x):
    x = np.asarray(getattr(x, "data", x))
    if x.ndim == 2:
        return x[:, None, :]
    return x.transpose(1, 0, 2) if getattr(lstm, "batch_first", False) else x


def lstm_gradient_paths(lstm, x, state=None, layer=0):
    """Split dL/dc_t of layer ``layer`` of ``lstm`` into its cell path and its path through h_t.

    Call it after ``loss.backward()`` on a loss computed from ``lstm(x, state)``: it
    reads the layer's ``grad_trace`` (the total dL/dh_t and dL/dc_t of that backward
    pass) and recomputes the gates of that forward pass with the NumPy reference
    kernel.  ``x`` and ``state`` are what the layer was called with.
    Returns ``LSTMPaths``; ``cell_path + through_h == total`` up to rounding.
    """
    if getattr(lstm, "cell_type", None) != "lstm":
        raise GraphError("lstm_gradient_paths: needs a tinybptt nn.LSTM, got %s" % type(lstm).__name__)
    trace = lstm.grad_trace
    x = _time_major(lstm, x)
    h0 = c0 = None
    if state is not None:
        h0, c0 = (np.asarray(getattr(s, "data", s)).reshape(lstm.num_layers, -1, lstm.hidden_size) for s in state)
    spec, inp, hl, cl = layer_input(lstm, x, h0, c0, layer)
    tr = run_cell(spec, inp, hl, cl)
    total, dh = trace.c[layer].astype(np.float64), trace.h[layer].astype(np.float64)
    if total.shape != tr.c[1:].shape:
        raise ShapeError("lstm_gradient_paths: the layer's grad_trace has shape %s but x gives %s; pass the x "
                         "(and state) of the forward pass that was backpropagated" % (total.shape, tr.c[1:].shape))
    H = spec.hidden_size
    gates = tr.saved.gates  # (T, B, 4H): i | f | g | o
    f, o = gates[..., H:2 * H], gates[..., 3 * H:]
    through_h = dh * o * (1 - tr.saved.tanh_c ** 2)
    cell_path = np.empty_like(total)
    cell_path[:-1] = f[1:] * total[1:]
    last = total[-1] - through_h[-1]  # what reached c_{T-1} from outside the layer (c_n)
    noise = 8 * np.finfo(trace.c.dtype).eps * np.maximum(np.abs(total[-1]), np.abs(through_h[-1]))
    cell_path[-1] = np.where(np.abs(last) <= noise, 0.0, last)  # a difference: rounding is not a gradient
    with np.errstate(divide="ignore"):
        log_f = np.log10(f)
    after = np.cumsum(log_f[::-1], axis=0)[::-1]  # after[t] = sum_{k >= t} log10 f_k
    log_prod = np.zeros_like(total)
    log_prod[:-1] = after[1:]
    return LSTMPaths(total, cell_path, through_h, log_prod, f)

"""The single-step recurrent cells ``RNNCell``, ``LSTMCell`` and ``GRUCell``, as in PyTorch.

A cell runs one time step: ``h = cell(x, h)`` (LSTM: ``h, c = cell(x, (h, c))``).
``mode="cell"`` (default) makes the step one fused node (one kernel call each way);
``mode="ops"`` builds it from primitive ops, every gate a node of the graph.
"""
import numpy as np

from ..autograd import Tensor, node_scope
from ..errors import ShapeError, describe
from . import init
from .cells_ops import ops_step
from .recurrent_base import RecurrentBase, as_tensor, cell_name, check_dtype, check_sizes, state_parts
from .recurrent_fn import step_function

CELL_MODES = ("cell", "ops")

class _CellBase(RecurrentBase):
    label = None  # "rnn_cell", "lstm_cell", "gru_cell": the label of the cell's nodes

    def __init__(self, cell_type, input_size, hidden_size, bias=True, dtype=np.float64, mode="cell", generator=None):
        super().__init__()
        who = type(self).__name__
        rng = init.resolve_generator(generator, who)
        check_sizes(who, input_size, hidden_size)
        if mode not in CELL_MODES:
            raise ValueError("%s: mode must be one of %s, got %r" % (who, CELL_MODES, mode))
        self.cell_type = cell_type
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.bias = bool(bias)
        self.dtype = check_dtype(dtype, who)
        self.mode = mode
        self._make_weights("", self.input_size, rng)

    def _state(self, x, state, batched):
        who, H = self._who, self.hidden_size
        B = x.shape[0]
        want = (B, H) if batched else (H,)
        lstm = self.cell_type == "lstm"
        if state is None:
            z = Tensor(np.zeros((B, H), dtype=self.dtype))
            return z, (Tensor(np.zeros((B, H), dtype=self.dtype)) if lstm else None)
        parts = state_parts(who, state, lstm, self.dtype, "the state", ("h", "c"), want)
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
        x = as_tensor(x, self.dtype, who, "input")
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ShapeError("%s: input must have shape (B, %d) (or (%d,) unbatched), got %s"
                             % (who, self.input_size, self.input_size, describe(x.data)))
        batched = x.ndim == 2
        if not batched:
            x = x.reshape(1, self.input_size)
        h, c = self._state(x, state, batched)
        cell = self.cell_type
        w_ih, w_hh, b_ih, b_hh = self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
        with node_scope(label=self.label):
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

    label = "rnn_cell"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=np.float64, mode="cell",
                 generator=None):
        super().__init__(cell_name(nonlinearity, "RNNCell"), input_size, hidden_size, bias, dtype, mode, generator)
        self.nonlinearity = nonlinearity


class LSTMCell(_CellBase):
    """LSTM cell, PyTorch gate order (i, f, g, o): ``h, c = cell(x, (h, c))``.

    ``forget_bias``: if given, the forget gate's total bias starts at this value
    (see ``init.lstm_forget_bias_``).
    """

    label = "lstm_cell"

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float64, mode="cell", forget_bias=None,
                 generator=None):
        super().__init__("lstm", input_size, hidden_size, bias, dtype, mode, generator)
        if forget_bias is not None:
            init.lstm_forget_bias_(self, forget_bias)


class GRUCell(_CellBase):
    """GRU cell, PyTorch gate order (r, z, n): ``h = cell(x, h)``."""

    label = "gru_cell"

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float64, mode="cell", generator=None):
        super().__init__("gru", input_size, hidden_size, bias, dtype, mode, generator)

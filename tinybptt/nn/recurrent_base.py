"""What the recurrent cells (``nn/rnn_cells.py``) and layers (``nn/rnn.py``) share:
argument checks and ``RecurrentBase``, which makes and names the weights the PyTorch way."""
import numpy as np

from ..autograd import Tensor, float_dtype
from ..errors import DTypeError, ShapeError, describe, integer_at_least
from ..kernels.cells import GATES, cell_kind
from . import init
from .module import Module, Parameter

def check_dtype(dtype, who):
    """``dtype`` as a NumPy float32/float64 dtype, or DTypeError naming ``who``."""
    return float_dtype(who, dtype)


def check_sizes(who, input_size, hidden_size):
    """ValueError unless both sizes are integers >= 1."""
    integer_at_least(who, "input_size", input_size, 1)
    integer_at_least(who, "hidden_size", hidden_size, 1)


def cell_name(nonlinearity, who):
    """The cell kind of a vanilla RNN with this nonlinearity ("rnn_tanh" or "rnn_relu")."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError("%s: nonlinearity must be 'tanh' or 'relu', got %r" % (who, nonlinearity))
    return cell_kind("rnn", nonlinearity)


def as_tensor(x, dtype, who, what):
    """``x`` as a Tensor of the layer's dtype (arrays are converted; a Tensor of another dtype is refused)."""
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


def state_parts(who, state, lstm, dtype, what, names, want):
    """``state`` as a list of Tensors of ``dtype``: [h, c] for an LSTM (a pair is required), else [h].

    ``what`` names the argument in errors ("the state", "the initial state"), ``names`` its
    parts (("h", "c") or ("h0", "c0")) and ``want`` the shape each part must have; the caller
    checks the shapes, whose message depends on the input.
    """
    if lstm:
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ShapeError("%s: %s must be a tuple (%s, %s), each of shape %s; got %s"
                             % (who, what, names[0], names[1], want, type(state).__name__))
        return [as_tensor(s, dtype, who, n) for s, n in zip(state, names)]
    if isinstance(state, (tuple, list)):
        raise ShapeError("%s: %s must be one array %s of shape %s, not a %s"
                         % (who, what, names[0], want, type(state).__name__))
    return [as_tensor(state, dtype, who, names[0])]


class RecurrentBase(Module):
    """Parameters, init and validation shared by the cells and the layers."""

    cell_type = None  # "rnn_tanh" | "rnn_relu" | "lstm" | "gru"

    def _make_weights(self, suffix, in_size, rng):
        G, H = GATES[self.cell_type], self.hidden_size
        k = 1.0 / np.sqrt(H)
        shapes = [("weight_ih" + suffix, (G * H, in_size)), ("weight_hh" + suffix, (G * H, H))]
        if self.bias:
            shapes += [("bias_ih" + suffix, (G * H,)), ("bias_hh" + suffix, (G * H,))]
        for name, shape in shapes:
            p = Parameter(np.empty(shape, dtype=self.dtype))
            init.uniform_(p, -k, k, generator=rng)
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

"""The recurrent cells tinybptt knows: their names and the gates each one stacks.

This is the one table of cells in the package.  Every layer, kernel, inspection
and application that needs to know "how many gates has a GRU" or "what is the
third LSTM gate called" asks here.

Names follow PyTorch's ``mode`` strings (``torch.nn.RNNBase``): a vanilla RNN is
``"rnn_tanh"`` or ``"rnn_relu"`` by its nonlinearity.  Applications that let a user
type ``rnn`` turn it into a kind with ``cell_kind("rnn", nonlinearity)``.

Gates are stacked along the rows of ``w_ih (G*H, I)`` and ``w_hh (G*H, H)`` in
PyTorch's order, so a torch ``state_dict`` loads unchanged:

    rnn_tanh, rnn_relu   (a,)           a: the pre-activation, h = act(a)
    lstm                 (i, f, g, o)   input, forget, cell candidate, output
    gru                  (r, z, n)      reset, update, new
"""
from ..errors import ShapeError

#: The gates of each cell, in the order they are stacked in the weights.
GATE_NAMES = {
    "rnn_tanh": ("a",),
    "rnn_relu": ("a",),
    "lstm": ("i", "f", "g", "o"),
    "gru": ("r", "z", "n"),
}

#: Number of gates of each cell (G): the weights have G*H rows.
GATES = {kind: len(names) for kind, names in GATE_NAMES.items()}

#: The states a cell carries from step to step.
STATES = {"rnn_tanh": ("h",), "rnn_relu": ("h",), "lstm": ("h", "c"), "gru": ("h",)}


def cell_kind(name, nonlinearity="tanh"):
    """The cell kind for a user-facing name: ``"rnn"`` -> ``"rnn_tanh"``/``"rnn_relu"``.

    ``"lstm"``, ``"gru"`` and the kinds themselves are returned unchanged.
    """
    if name == "rnn":
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError("cell_kind: nonlinearity must be 'tanh' or 'relu', got %r" % (nonlinearity,))
        return "rnn_" + nonlinearity
    check_cell("cell_kind", name)
    return name


def check_cell(op, cell):
    """Raise ShapeError unless ``cell`` is a known kind; return its gate count G."""
    if not isinstance(cell, str) or cell not in GATES:
        raise ShapeError("%s: unknown cell %r; choose one of %s"
                         % (op, cell, ", ".join(repr(k) for k in GATES)))
    return GATES[cell]

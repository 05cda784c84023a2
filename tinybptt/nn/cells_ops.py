"""The recurrent cells written with primitive ops: what ``mode="ops"`` builds.

Every intermediate of a step (the gate pre-activations, each gate, the new
cell state, the new hidden state) is a node of the autograd graph, so an
inspection of the unrolled graph sees them one by one.  The formulas are
PyTorch's, with the gates in its order (``tinybptt.kernels.cells``); the NumPy
reference (``kernels/numpy_rnn.py``) and the C kernels compute the same numbers.

``ops_step``   one step from the textbook formulas (the Cells use it);
``unroll_step`` the step a layer repeats T times, with the weights prepared once.
"""
from ..ops import concat, linear, relu, sigmoid, split, tanh


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
        return _gru_gates(gi, gh, h), None
    return _gate_ops(cell, gi + gh, c)


def _gru_gates(gi, gh, h):
    """The GRU from its two affine maps ``gi = x W_ih^T + b_ih`` and ``gh = h W_hh^T + b_hh`` on."""
    x_r, x_z, x_n = split(gi, 3, axis=1)
    h_r, h_z, h_n = split(gh, 3, axis=1)
    r = sigmoid(x_r + h_r)
    z = sigmoid(x_z + h_z)
    n = tanh(x_n + r * h_n)
    return n + z * (h - n)  # = (1 - z) * n + z * h


def _gate_ops(cell, a, c):
    """RNN and LSTM from the pre-activation ``a`` (B, G*H) on: ``(h_new, c_new or None)``."""
    if cell == "lstm":
        a_i, a_f, a_g, a_o = split(a, 4, axis=1)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)
        c_new = f * c + i * g
        return o * tanh(c_new), c_new
    return (tanh(a) if cell == "rnn_tanh" else relu(a)), None


def ops_step_joint(cell, x, h, c, w_cat_t, b):
    """``ops_step`` for RNN and LSTM with one gate product per step, as a layer runs it.

    ``x W_ih^T + h W_hh^T`` is ``[x, h] @ [W_ih^T; W_hh^T]``: the layer stacks the
    transposed weights once per forward (``w_cat_t`` (I+H, G*H), a concat node) and
    sums the biases once (``b``, or None), so a step is concat, linear (product plus
    bias) and the gate ops -- two nodes where two products and three adds were five.
    Same formulas, same intermediates (h, c and the gates).
    """
    return _gate_ops(cell, linear(concat([x, h], axis=1), w_cat_t, b), c)


def unroll_step(cell, w_ih, w_hh, b_ih, b_hh):
    """``step(x_t, h, c) -> (h_new, c_new or None)`` for a layer's unroll in mode "ops".

    The weights are transposed (and, for RNN and LSTM, stacked for
    ``ops_step_joint``) here, once per forward call, not at every step; these
    few nodes belong to the whole unroll, not to a step.
    """
    w_ih_t, w_hh_t = w_ih.T, w_hh.T
    if cell == "gru":
        return lambda x, h, c: ops_step(cell, x, h, c, w_ih_t, w_hh_t, b_ih, b_hh)
    w_cat_t = concat([w_ih_t, w_hh_t], axis=0)
    b = b_ih if b_hh is None else (b_hh if b_ih is None else b_ih + b_hh)
    return lambda x, h, c: ops_step_joint(cell, x, h, c, w_cat_t, b)

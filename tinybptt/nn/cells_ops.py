"""The recurrent cells written with primitive ops: what ``mode="ops"`` builds.

Every intermediate of a step (the gate pre-activations, each gate, the new
cell state, the new hidden state) is a node of the autograd graph, so an
inspection of the unrolled graph sees them one by one.  The formulas are
PyTorch's, with the gates in its order (``tinybptt.kernels.cells``); the NumPy
reference (``kernels/numpy_rnn.py``) and the C kernels compute the same numbers.

``ops_step``   one step from the textbook formulas (the Cells use it);
``unroll_step`` the step a layer repeats T times, with the weights prepared once.

Every node is tagged with its *role* (``node_scope(role=...)``), so that an
inspection can tell the three ``sigmoid`` nodes of an LSTM step apart:

    "a"           the gate pre-activations (the affine maps and their split)
    LSTM          "i", "f", "g", "o" (the gates), "c" (c' = f*c + i*g), "h" (h' = o*tanh(c'))
    GRU           "r", "z", "n" (the gates), "h" (h' = n + z*(h - n))
    RNN           "h" (h' = act(a))
    "x"           the step's slice of the input sequence (a layer's ``x[t]``)
    "W"           the weights prepared once per unroll (transposed, stacked)

The gate names are those of ``tinybptt.kernels.cells.GATE_NAMES``.
"""
from ..autograd import node_scope as _scope
from ..ops import concat, linear, relu, sigmoid, split, tanh


def role(name):
    """``with role("f"):`` tags the nodes made inside as the forget gate (see above)."""
    return _scope(role=name)


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
    with role("a"):
        gi = linear(x, w_ih_t, b_ih)  # x W_ih^T + b_ih, one node
        gh = linear(h, w_hh_t, b_hh)
        if cell != "gru":
            a = gi + gh
    if cell == "gru":
        return _gru_gates(gi, gh, h), None
    return _gate_ops(cell, a, c)


def _gru_gates(gi, gh, h):
    """The GRU from its two affine maps ``gi = x W_ih^T + b_ih`` and ``gh = h W_hh^T + b_hh`` on."""
    with role("a"):
        x_r, x_z, x_n = split(gi, 3, axis=1)
        h_r, h_z, h_n = split(gh, 3, axis=1)
    with role("r"):
        r = sigmoid(x_r + h_r)
    with role("z"):
        z = sigmoid(x_z + h_z)
    with role("n"):
        n = tanh(x_n + r * h_n)
    with role("h"):
        return n + z * (h - n)  # = (1 - z) * n + z * h


def _gate_ops(cell, a, c):
    """RNN and LSTM from the pre-activation ``a`` (B, G*H) on: ``(h_new, c_new or None)``."""
    if cell != "lstm":
        with role("h"):
            return (tanh(a) if cell == "rnn_tanh" else relu(a)), None
    with role("a"):
        a_i, a_f, a_g, a_o = split(a, 4, axis=1)
    with role("i"):
        i = sigmoid(a_i)
    with role("f"):
        f = sigmoid(a_f)
    with role("g"):
        g = tanh(a_g)
    with role("o"):
        o = sigmoid(a_o)
    with role("c"):
        c_new = f * c + i * g
    with role("h"):
        return o * tanh(c_new), c_new


def ops_step_joint(cell, x, h, c, w_cat_t, b):
    """``ops_step`` for RNN and LSTM with one gate product per step, as a layer runs it.

    ``x W_ih^T + h W_hh^T`` is ``[x, h] @ [W_ih^T; W_hh^T]``: the layer stacks the
    transposed weights once per forward (``w_cat_t`` (I+H, G*H), a concat node) and
    sums the biases once (``b``, or None), so a step is concat, linear (product plus
    bias) and the gate ops -- two nodes where two products and three adds were five.
    Same formulas, same intermediates (h, c and the gates).
    """
    with role("a"):
        a = linear(concat([x, h], axis=1), w_cat_t, b)
    return _gate_ops(cell, a, c)


def unroll_step(cell, w_ih, w_hh, b_ih, b_hh):
    """``step(x_t, h, c) -> (h_new, c_new or None)`` for a layer's unroll in mode "ops".

    The weights are transposed (and, for RNN and LSTM, stacked for
    ``ops_step_joint``) here, once per forward call, not at every step; these
    few nodes belong to the whole unroll, not to a step.
    """
    with role("W"):
        w_ih_t, w_hh_t = w_ih.T, w_hh.T
        if cell == "gru":
            return lambda x, h, c: ops_step(cell, x, h, c, w_ih_t, w_hh_t, b_ih, b_hh)
        w_cat_t = concat([w_ih_t, w_hh_t], axis=0)
        b = b_ih if b_hh is None else (b_hh if b_ih is None else b_ih + b_hh)
    return lambda x, h, c: ops_step_joint(cell, x, h, c, w_cat_t, b)

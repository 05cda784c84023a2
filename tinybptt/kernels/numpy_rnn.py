"""Reference recurrent kernels: RNN (tanh / relu), LSTM and GRU in plain NumPy.

This is the oracle the C kernels (``kernels/c_rnn.py``) are tested against, and
the place to read how backpropagation through time works.  For each cell, one
step forward sits next to its backward; the sequence functions at the bottom
are the obvious Python loop over time.

Shapes: ``T`` time steps, ``B`` batch, ``I`` input size, ``H`` hidden size,
``G`` gates (1 RNN, 4 LSTM, 3 GRU).  Weights follow ``torch.nn``:
``w_ih (G*H, I)``, ``w_hh (G*H, H)``, ``b_ih, b_hh (G*H,)`` (or ``None``), gates
stacked along the rows in PyTorch order: LSTM ``(i, f, g, o)``, GRU ``(r, z, n)``.

Every backward pass works from saved forward OUTPUTS: tanh' = 1 - y*y and
sigmoid' = y*(1 - y), which is why the forward saves the activated gates.

This reference is plain IEEE arithmetic in the dtype it is given.  The C sequence
backward carries the gradient through time as scaled values times a power of two
(docs/design.md, "Tiny gradients in float32"); the two agree exactly in arithmetic
wherever the plain computation stays in the normal range, and differ where it does
not: there a float32 gradient here becomes subnormal and then 0, while the C kernel
keeps its size (and its trace reports it).  Test the C kernels' tiny gradients
against this reference run in float64.

Public functions (the same in both backends)::

    seq_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh)  -> (out, c_out, saved)
    seq_backward(cell, saved, d_out, d_hn=None, d_cn=None, need_dx=True, need_trace=True,
                 carry_exp=None, scaled_trace=False) -> dict
    step_forward(cell, x, h, c, w_ih, w_hh, b_ih, b_hh)   -> (h_new, c_new, saved)
    step_backward(cell, saved, d_h, d_c=None, need_dx=True) -> dict
"""
import functools

import numpy as np

from .numpy_ops import sigmoid
from .recurrent import RecurrentSaved, carry_at_true_size, check_backward, check_forward, check_step_backward


# ====================================================================== helpers
def _ieee(fn):
    """Run a kernel with IEEE results and no NumPy warnings, like the C backend.

    An Inf in the input legitimately produces Inf/NaN (e.g. inf * 0 in a matmul);
    the reference must return those values, not warn or raise under np.seterr.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return fn(*args, **kwargs)
    return wrapper


def _affine(x, h, w_ih, w_hh, b_ih, b_hh):
    """Pre-activations ``x @ W_ih^T + b_ih + h @ W_hh^T + b_hh``, shape (B, G*H)."""
    a = x @ w_ih.T + h @ w_hh.T
    if b_ih is not None:
        a += b_ih
    if b_hh is not None:
        a += b_hh
    return a


def _accumulate(grads, dax, dah, x, h):
    """Add one step's weight and bias gradients into ``grads``.

    ``dax`` is dL/d(W_ih x + b_ih) and ``dah`` is dL/d(W_hh h + b_hh), both
    (B, G*H); they are the same array except for the GRU's n gate.  The weights
    are used at every step, so their gradients are sums over steps.
    """
    grads["dw_ih"] += dax.T @ x
    grads["dw_hh"] += dah.T @ h
    if grads["db_ih"] is not None:
        grads["db_ih"] += dax.sum(axis=0)
    if grads["db_hh"] is not None:
        grads["db_hh"] += dah.sum(axis=0)


# ====================================================================== RNN
# h' = act(W_ih x + b_ih + W_hh h + b_hh),  act = tanh or relu

def rnn_step_forward(relu, x, h, w_ih, w_hh, b_ih, b_hh):
    """One Elman RNN step; returns h' (B, H)."""
    a = _affine(x, h, w_ih, w_hh, b_ih, b_hh)
    return np.maximum(a, 0) if relu else np.tanh(a)


def rnn_step_backward(relu, x, h, w_ih, w_hh, h_new, dh_new, grads):
    """Backward of one RNN step.  ``dh_new`` is the total gradient on h'.

    Accumulates weight gradients into ``grads``; returns (dx, dh).
    """
    if relu:
        da = np.where(h_new <= 0, 0, dh_new).astype(dh_new.dtype)  # at h' = NaN the gradient passes
    else:
        da = dh_new * (1 - h_new * h_new)
    _accumulate(grads, da, da, x, h)
    return da @ w_ih, da @ w_hh


# ====================================================================== LSTM
# (i, f, g, o) = (sigmoid, sigmoid, tanh, sigmoid)(W_ih x + b_ih + W_hh h + b_hh)
# c' = f * c + i * g
# h' = o * tanh(c')

def lstm_step_forward(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step; returns (h', c', gates (B, 4H) activated i|f|g|o, tanh(c'))."""
    H = h.shape[1]
    a = _affine(x, h, w_ih, w_hh, b_ih, b_hh)
    i = sigmoid(a[:, 0 * H:1 * H])
    f = sigmoid(a[:, 1 * H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = sigmoid(a[:, 3 * H:4 * H])
    c_new = f * c + i * g
    tanh_c = np.tanh(c_new)
    h_new = o * tanh_c
    return h_new, c_new, np.concatenate([i, f, g, o], axis=1), tanh_c


def lstm_dc_total(gates, tanh_c, dh_new, dc_new):
    """The whole gradient on c': ``dc_new`` (from later steps) plus the path through h' = o * tanh(c')."""
    H = tanh_c.shape[-1]
    o = gates[..., 3 * H:4 * H]
    return dc_new + dh_new * o * (1 - tanh_c * tanh_c)


def lstm_step_backward(x, h, c, w_ih, w_hh, gates, tanh_c, dh_new, dc_new, grads):
    """Backward of one LSTM step.

    ``dh_new`` is the total gradient on h'; ``dc_new`` the gradient reaching c'
    from later steps only.  Accumulates weight gradients into ``grads``;
    returns (dx, dh, dc, dc_total) where dc_total is the whole gradient on c'
    (``dc_new`` plus the path through h' = o * tanh(c')).
    """
    i, f, g, o = np.split(gates, 4, axis=1)
    dc_total = lstm_dc_total(gates, tanh_c, dh_new, dc_new)
    di = dc_total * g
    df = dc_total * c
    dg = dc_total * i
    do = dh_new * tanh_c
    da = np.concatenate([di * i * (1 - i),   # through each gate's activation
                         df * f * (1 - f),
                         dg * (1 - g * g),
                         do * o * (1 - o)], axis=1)
    _accumulate(grads, da, da, x, h)
    return da @ w_ih, da @ w_hh, dc_total * f, dc_total


# ====================================================================== GRU
# r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
# z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
# n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
# h' = (1 - z) * n + z * h

def gru_step_forward(x, h, w_ih, w_hh, b_ih, b_hh):
    """One GRU step; returns (h', gates (B, 3H) activated r|z|n, hn = W_hn h + b_hn)."""
    H = h.shape[1]
    ax = x @ w_ih.T  # the x-side and h-side stay apart: r multiplies only the h-side of n
    ah = h @ w_hh.T
    if b_ih is not None:
        ax += b_ih
    if b_hh is not None:
        ah += b_hh
    r = sigmoid(ax[:, 0 * H:1 * H] + ah[:, 0 * H:1 * H])
    z = sigmoid(ax[:, 1 * H:2 * H] + ah[:, 1 * H:2 * H])
    hn = ah[:, 2 * H:3 * H]
    n = np.tanh(ax[:, 2 * H:3 * H] + r * hn)
    h_new = (1 - z) * n + z * h
    return h_new, np.concatenate([r, z, n], axis=1), hn


def gru_step_backward(x, h, w_ih, w_hh, gates, hn, dh_new, grads):
    """Backward of one GRU step.  ``dh_new`` is the total gradient on h'.

    Accumulates weight gradients into ``grads``; returns (dx, dh).
    """
    r, z, n = np.split(gates, 3, axis=1)
    dn = dh_new * (1 - z)
    dz = dh_new * (h - n)
    dan = dn * (1 - n * n)        # gradient on n's pre-activation
    dr = dan * hn
    dar = dr * r * (1 - r)
    daz = dz * z * (1 - z)
    dax = np.concatenate([dar, daz, dan], axis=1)      # dL/d(W_ih x + b_ih)
    dah = np.concatenate([dar, daz, dan * r], axis=1)  # dL/d(W_hh h + b_hh)
    _accumulate(grads, dax, dah, x, h)
    return dax @ w_ih, dah @ w_hh + dh_new * z


# ====================================================================== dispatch on the cell

def _one_forward(cell, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step of any cell: (h', c' or None, gates or None, tanh_c or None, hn or None)."""
    if cell == "lstm":
        h_new, c_new, gates, tanh_c = lstm_step_forward(x, h, c, w_ih, w_hh, b_ih, b_hh)
        return h_new, c_new, gates, tanh_c, None
    if cell == "gru":
        h_new, gates, hn = gru_step_forward(x, h, w_ih, w_hh, b_ih, b_hh)
        return h_new, None, gates, None, hn
    return rnn_step_forward(cell == "rnn_relu", x, h, w_ih, w_hh, b_ih, b_hh), None, None, None, None


def _one_backward(cell, x, h, c, w_ih, w_hh, h_new, gates, tanh_c, hn, dh_new, dc_new, grads):
    """Backward of one step of any cell: (dx, dh, dc or None, dc_total or None)."""
    if cell == "lstm":
        return lstm_step_backward(x, h, c, w_ih, w_hh, gates, tanh_c, dh_new, dc_new, grads)
    if cell == "gru":
        dx, dh = gru_step_backward(x, h, w_ih, w_hh, gates, hn, dh_new, grads)
    else:
        dx, dh = rnn_step_backward(cell == "rnn_relu", x, h, w_ih, w_hh, h_new, dh_new, grads)
    return dx, dh, None, None


def _zero_grads(s):
    """Fresh zeroed weight/bias gradients for the weights in saved ``s``."""
    return {
        "dw_ih": np.zeros_like(s.w_ih),
        "dw_hh": np.zeros_like(s.w_hh),
        "db_ih": None if s.b_ih is None else np.zeros_like(s.b_ih),
        "db_hh": None if s.b_hh is None else np.zeros_like(s.b_hh),
    }


# ====================================================================== the public interface

@_ieee
def seq_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """Run ``cell`` over a whole sequence.

    x (T, B, I), h0 (B, H), c0 (B, H) for "lstm" else None, weights as in torch.nn.
    Returns ``(out, c_out, saved)``: out (T, B, H) holds h_1..h_T, c_out (T, B, H)
    holds c_1..c_T for "lstm" (else None), saved is for seq_backward.
    """
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = check_forward(
        "seq_forward", cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, step=False)
    T = x.shape[0]
    outs, c_outs, gates, tanh_cs, hns = [], [], [], [], []
    h, c = h0, c0
    for t in range(T):
        h, c, g, tc, hn = _one_forward(cell, x[t], h, c, w_ih, w_hh, b_ih, b_hh)
        outs.append(h)
        c_outs.append(c)
        gates.append(g)
        tanh_cs.append(tc)
        hns.append(hn)

    def stack(items):
        return None if items[0] is None else np.stack(items)

    out, c_out = np.stack(outs), stack(c_outs)
    saved = RecurrentSaved(kind="seq", cell=cell, x=x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh,
                           b_ih=b_ih, b_hh=b_hh, out=out, c_out=c_out,
                           gates=stack(gates), tanh_c=stack(tanh_cs), hn=stack(hns))
    return out, c_out, saved


@_ieee
def seq_backward(cell, saved, d_out, d_hn=None, d_cn=None, need_dx=True, need_trace=True, carry_exp=None,
                 scaled_trace=False):
    """Backpropagation through time for a seq_forward call.

    d_out (T, B, H) is the gradient on ``out`` (None = zeros); d_hn (B, H) an extra
    gradient on the final h (added to d_out[-1]); d_cn (B, H) the gradient on the
    final c (LSTM only).  Returns a dict of freshly allocated arrays:
    dx (T, B, I) or None when not need_dx, dh0, dc0 (LSTM, else None), dw_ih,
    dw_hh, db_ih, db_hh (None without bias), and, when need_trace, trace_h (T, B, H):
    trace_h[t] is the TOTAL gradient dL/d out[t] through every later step, and for
    the LSTM trace_c[t], the total dL/d c_out[t] (including the path through out[t]).
    ``carry_exp`` (an int, or one per sequence, for a sequence backpropagated in segments)
    says that d_hn and d_cn are scaled: their true rows are d_hn[b] * 2**carry_exp[b],
    d_cn[b] * 2**carry_exp[b].
    This plain-IEEE reference scales them back first and returns "carry_exp": 0 (the C
    backend keeps the scale; see kernels.c_rnn.seq_backward).  Its trace is at true size
    whatever ``scaled_trace`` says, and "trace_exp" is None (the C backend may return
    its trace scaled, with the exponents in "trace_exp").
    """
    s = saved
    d_out, d_hn, d_cn = check_backward("seq_backward", cell, s, "seq", d_out, d_hn, d_cn)
    if carry_exp is not None:
        d_hn, d_cn = carry_at_true_size(carry_exp, d_hn, d_cn)
    T = s.x.shape[0]
    grads = _zero_grads(s)
    dh = np.zeros_like(s.h0) if d_hn is None else d_hn.copy()
    dc = None
    if cell == "lstm":
        dc = np.zeros_like(s.h0) if d_cn is None else d_cn.copy()
    dx = np.empty_like(s.x) if need_dx else None
    trace_h = np.empty_like(s.out) if need_trace else None
    trace_c = np.empty_like(s.out) if need_trace and cell == "lstm" else None

    for t in reversed(range(T)):
        if d_out is not None:
            dh = dh + d_out[t]                 # now the total gradient on h_{t+1} = out[t]
        if trace_h is not None:
            trace_h[t] = dh
        h_prev = s.h0 if t == 0 else s.out[t - 1]
        c_prev = None if s.c0 is None else (s.c0 if t == 0 else s.c_out[t - 1])
        dx_t, dh, dc, dc_total = _one_backward(
            cell, s.x[t], h_prev, c_prev, s.w_ih, s.w_hh, s.out[t],
            None if s.gates is None else s.gates[t],
            None if s.tanh_c is None else s.tanh_c[t],
            None if s.hn is None else s.hn[t], dh, dc, grads)
        if trace_c is not None:
            trace_c[t] = dc_total
        if dx is not None:
            dx[t] = dx_t

    g = dict(dx=dx, dh0=dh, dc0=dc, trace_h=trace_h, trace_c=trace_c, trace_exp=None, **grads)
    if carry_exp is not None:
        g["carry_exp"] = 0
    return g


@_ieee
def step_forward(cell, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step of ``cell``: x (B, I), h (B, H), c (B, H) for "lstm" else None.

    Returns ``(h_new, c_new, saved)``; c_new is None unless the cell is "lstm".
    """
    x, h, c, w_ih, w_hh, b_ih, b_hh = check_forward(
        "step_forward", cell, x, h, c, w_ih, w_hh, b_ih, b_hh, step=True)
    h_new, c_new, gates, tanh_c, hn = _one_forward(cell, x, h, c, w_ih, w_hh, b_ih, b_hh)
    saved = RecurrentSaved(kind="step", cell=cell, x=x, h0=h, c0=c, w_ih=w_ih, w_hh=w_hh,
                           b_ih=b_ih, b_hh=b_hh, out=h_new, c_out=c_new,
                           gates=gates, tanh_c=tanh_c, hn=hn)
    return h_new, c_new, saved


@_ieee
def step_backward(cell, saved, d_h, d_c=None, need_dx=True):
    """Backward of one step_forward call.

    d_h (B, H) is the gradient on h_new (None = zeros), d_c (B, H) the gradient on
    c_new (LSTM only, None = zeros).  Returns a dict of fresh arrays: dx (None
    when not need_dx), dh, dc (LSTM, else None), dw_ih, dw_hh, db_ih, db_hh.
    """
    s = saved
    d_h, d_c = check_step_backward(cell, s, d_h, d_c)
    grads = _zero_grads(s)
    dc_new = None
    if cell == "lstm":
        dc_new = np.zeros_like(s.h0) if d_c is None else d_c
    dx, dh, dc, _ = _one_backward(cell, s.x, s.h0, s.c0, s.w_ih, s.w_hh, s.out,
                                  s.gates, s.tanh_c, s.hn, d_h, dc_new, grads)
    return dict(dx=dx if need_dx else None, dh=dh, dc=dc, **grads)



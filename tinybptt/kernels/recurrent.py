"""The contract of the recurrent kernels, shared by both backends.

``kernels/numpy_rnn.py`` (the reference) and ``kernels/c_rnn.py`` (the C calls)
implement the same four functions.  What they have in common lives here, once:

``RecurrentSaved``   what a forward call keeps for its backward call;
``check_forward``, ``check_backward``, ``check_step_backward``
                     the argument checks, so both backends accept the same inputs
                     and raise the same errors for bad ones;
``carry_at_true_size``
                     gradients carried between the segments of a sequence, from
                     the C backend's scaled form back to their true values.
"""
import numpy as np

from ..errors import DTypeError, ShapeError, describe
from . import validate as V
from .cells import GATES, check_cell


class RecurrentSaved:
    """What a forward call keeps for its backward call (both backends use this class).

    Fields: ``kind`` ("seq" or "step"), ``cell``, the (contiguous) inputs
    ``x, h0, c0, w_ih, w_hh, b_ih, b_hh``, the outputs ``out, c_out`` and the
    workspace, whose shapes for a sequence are (for a step, drop the T)::

        gates   (T, B, G*H)  activated gates: LSTM i|f|g|o, GRU r|z|n; None for RNN
        tanh_c  (T, B, H)    LSTM only: tanh(c_t)
        hn      (T, B, H)    GRU only: W_hn h_{t-1} + b_hn

    For a step, ``x`` is (B, I), ``h0``/``c0`` the incoming state and
    ``out``/``c_out`` the new state.  The arrays are references, not copies:
    modifying ``out`` or the weights in place before backward changes the result.
    """

    __slots__ = ("kind", "cell", "x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh",
                 "out", "c_out", "gates", "tanh_c", "hn")

    def __init__(self, kind, cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, out, c_out,
                 gates=None, tanh_c=None, hn=None):
        self.kind, self.cell = kind, cell
        self.x, self.h0, self.c0 = x, h0, c0
        self.w_ih, self.w_hh, self.b_ih, self.b_hh = w_ih, w_hh, b_ih, b_hh
        self.out, self.c_out = out, c_out
        self.gates, self.tanh_c, self.hn = gates, tanh_c, hn

    def __repr__(self):
        parts = ["%s=%s" % (k, tuple(getattr(self, k).shape)) for k in self.__slots__[2:]
                 if getattr(self, k) is not None]
        return "RecurrentSaved(%s %s, %s)" % (self.kind, self.cell, ", ".join(parts))


def _op(op, cell):
    return "%s(%s)" % (op, cell)


def _want(op, name, a, shape, meaning):
    """Raise ShapeError unless ``a.shape == shape``; ``meaning`` says where the numbers come from."""
    if tuple(a.shape) != tuple(shape):
        raise ShapeError("%s: %s must have shape %s [%s], got %s"
                         % (op, name, tuple(shape), meaning, tuple(a.shape)))


def check_forward(op, cell, x, h, c, w_ih, w_hh, b_ih, b_hh, step):
    """Validate the arguments of seq_forward (step=False) or step_forward (step=True).

    Returns the same arguments, each C-contiguous (copied if it was not).
    Sizes are read from x (T, B, I) or (B, I) and from h (B, H); everything
    else must fit them.
    """
    G = check_cell(op, cell)
    op = _op(op, cell)
    hname, cname = ("h", "c") if step else ("h0", "c0")
    if h is None:
        raise ShapeError("%s: %s (the initial hidden state, (B, H)) is required; pass zeros if you have none"
                         % (op, hname))
    V.check_float(op, x, h, c, w_ih, w_hh, b_ih, b_hh)
    if x is None:
        raise ShapeError("%s: x is required" % op)
    if step:
        if x.ndim != 2:
            raise ShapeError("%s: x must be 2-D (B, I), got shape %s" % (op, tuple(x.shape)))
        B, I = x.shape
    else:
        if x.ndim != 3:
            raise ShapeError("%s: x must be 3-D (T, B, I), got shape %s" % (op, tuple(x.shape)))
        T, B, I = x.shape
        if T == 0:
            raise ShapeError("%s: x has T=0 time steps, got shape %s; a sequence needs at least one step"
                             % (op, tuple(x.shape)))
    if h.ndim != 2 or h.shape[0] != B:
        raise ShapeError("%s: %s must have shape (%d, H) [B, H with B=%d from x %s], got %s"
                         % (op, hname, B, B, tuple(x.shape), tuple(h.shape)))
    H = h.shape[1]
    if cell == "lstm":
        if c is None:
            raise ShapeError("%s: %s (the initial cell state, shape (%d, %d)) is required for an LSTM; "
                             "pass zeros if you have none" % (op, cname, B, H))
        _want(op, cname, c, (B, H), "B, H with B=%d, H=%d" % (B, H))
    elif c is not None:
        raise ShapeError("%s: %s must be None: only an LSTM has a cell state, got an array of shape %s"
                         % (op, cname, tuple(c.shape)))
    sizes = "G=%d, H=%d" % (G, H)
    _want(op, "w_ih", w_ih, (G * H, I), "G*H, I with %s, I=%d" % (sizes, I))
    _want(op, "w_hh", w_hh, (G * H, H), "G*H, H with %s" % sizes)
    if b_ih is not None:
        _want(op, "b_ih", b_ih, (G * H,), "G*H with %s" % sizes)
    if b_hh is not None:
        _want(op, "b_hh", b_hh, (G * H,), "G*H with %s" % sizes)
    return tuple(V.contiguous(a) for a in (x, h, c, w_ih, w_hh, b_ih, b_hh))


def _check_saved(op, cell, saved, kind):
    check_cell(op, cell)
    if not isinstance(saved, RecurrentSaved):
        raise ShapeError("%s: saved must be what %s_forward returned, got %s"
                         % (_op(op, cell), kind, type(saved).__name__))
    if saved.kind != kind or saved.cell != cell:
        raise ShapeError("%s: saved comes from %s_forward(%s), not %s_forward(%s)"
                         % (_op(op, cell), saved.kind, saved.cell, kind, cell))
    _check_saved_arrays(_op(op, cell), saved)


def _check_saved_arrays(op, s):
    """Every array in ``saved`` still has the shape and dtype its forward pass gave it.

    ``saved`` is a plain object a user can reach; if one of its arrays were replaced
    by a smaller one, the C backward would read past the end of it.
    """
    G = GATES[s.cell]
    arrays = {"x": s.x, "h0": s.h0, "w_ih": s.w_ih}
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.ndim < 1:
            raise ShapeError("%s: saved.%s is not an array from the forward pass (got %r)" % (op, name, type(a).__name__))
    lead = s.x.shape[:-1]  # (T, B) for a sequence, (B,) for a step
    I, H = s.x.shape[-1], s.h0.shape[-1]
    dtype = s.x.dtype
    state = lead if s.kind == "step" else lead[1:]
    want = {
        "h0": state + (H,), "w_ih": (G * H, I), "w_hh": (G * H, H), "out": lead + (H,),
        "b_ih": (G * H,) if s.b_ih is not None else None, "b_hh": (G * H,) if s.b_hh is not None else None,
        "c0": state + (H,) if s.cell == "lstm" else None, "c_out": lead + (H,) if s.cell == "lstm" else None,
        "gates": lead + (G * H,) if s.cell in ("lstm", "gru") else None,
        "tanh_c": lead + (H,) if s.cell == "lstm" else None, "hn": lead + (H,) if s.cell == "gru" else None,
    }
    for name, shape in want.items():
        a = getattr(s, name)
        if shape is None:
            continue
        if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype:
            raise ShapeError("%s: saved.%s was changed after the forward pass: expected a %s array "
                             "of shape %s, got %s; run the forward again instead of editing saved"
                             % (op, name, dtype, shape, describe(a) if isinstance(a, np.ndarray) else type(a).__name__))


def _check_grad(op, name, g, shape, dtype, meaning):
    """Validate an incoming gradient (may be None): dtype of the forward pass, right shape."""
    if g is None:
        return None
    V.check_float(op, g)
    if g.dtype != dtype:
        raise DTypeError("%s: %s is %s but the forward pass ran in %s (got %s); cast it with .astype(np.%s)"
                         % (op, name, g.dtype, dtype, describe(g), dtype))
    _want(op, name, g, shape, meaning)
    return V.contiguous(g)


def check_backward(op, cell, saved, kind, d_out, d_hn, d_cn):
    """Validate seq_backward's gradients against the saved forward pass."""
    _check_saved(op, cell, saved, kind)
    op = _op(op, cell)
    T, B, _ = saved.x.shape
    H = saved.h0.shape[1]
    dtype = saved.x.dtype
    d_out = _check_grad(op, "d_out", d_out, (T, B, H), dtype, "T, B, H of out")
    d_hn = _check_grad(op, "d_hn", d_hn, (B, H), dtype, "B, H of the final hidden state")
    if cell != "lstm" and d_cn is not None:
        raise ShapeError("%s: d_cn must be None: only an LSTM has a cell state" % op)
    d_cn = _check_grad(op, "d_cn", d_cn, (B, H), dtype, "B, H of the final cell state")
    return d_out, d_hn, d_cn


def check_step_backward(cell, saved, d_h, d_c):
    """Validate step_backward's gradients; a missing d_h becomes zeros."""
    op = "step_backward"
    _check_saved(op, cell, saved, "step")
    op = _op(op, cell)
    B, H = saved.h0.shape
    dtype = saved.x.dtype
    d_h = _check_grad(op, "d_h", d_h, (B, H), dtype, "B, H of h_new")
    if d_h is None:
        d_h = np.zeros((B, H), dtype=dtype)
    if cell != "lstm" and d_c is not None:
        raise ShapeError("%s: d_c must be None: only an LSTM has a cell state" % op)
    d_c = _check_grad(op, "d_c", d_c, (B, H), dtype, "B, H of c_new")
    return d_h, d_c


def carry_at_true_size(exps, *carried):
    """The carried gradients (each (B, H), or None) at true size: row b times ``2**exps[b]``.

    ``exps`` is one exponent for every sequence of the batch, or B of them (the C
    sequence backward's ``carry_exp``).  Each result keeps its array's dtype; with
    every exponent 0 the arrays come back as they are.
    """
    if not np.any(exps):
        return carried
    e = np.reshape(exps, (-1, 1))  # one exponent per row (sequence), or one for all
    return tuple(None if a is None else np.ldexp(a, e).astype(a.dtype) for a in carried)

"""Recurrent kernels, C backend: validate in Python, allocate, then call C once.

Same interface and semantics as ``kernels/numpy_rnn.py`` (the reference; the
validation both backends share is ``kernels/recurrent.py``):

    seq_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh)  -> (out, c_out, saved)
    seq_backward(cell, saved, d_out, d_hn=None, d_cn=None, need_dx=True, need_trace=True, carry_exp=None,
                 scaled_trace=False) -> dict
    step_forward(cell, x, h, c, w_ih, w_hh, b_ih, b_hh)   -> (h_new, c_new, saved)
    step_backward(cell, saved, d_h, d_c=None, need_dx=True) -> dict

Python allocates every output and the forward workspace (``gates``, ``tanh_c``,
``hn``, see ``recurrent.RecurrentSaved``), and keeps the workspace in ``saved``;
the C kernels (csrc/rnn.c, lstm.c, gru.c) only use their own scratch and
return nonzero if that fails, which becomes a MemoryError naming the call here.

Speed.  For a small problem (T=50, B=1, H=32) the C work is a few
microseconds, so this wrapper's own cost matters: arguments that are already
right (the common case: a layer's own parameters and outputs) pass one cheap
check (``_forward_ok``, ``_grad_ok``: types, flags, shape tuples); anything else goes through the shared
validation (``check_forward`` / ``check_backward``), which raises the same
errors as the NumPy backend or makes the copies C needs.  The C pointers made
for the forward call are kept with ``saved`` and reused by backward.
"""
import numpy as np

from . import workspace
from ._ffi import CTYPE, F32, F64, NULL, check, fn, from_buffer, plain, ptr
from .validate import contiguous
from .cells import GATES
from .recurrent import RecurrentSaved, check_backward, check_forward, check_step_backward


class _CSaved(RecurrentSaved):
    """A RecurrentSaved made by this backend's forward, with its C pointers kept for backward.

    ``ptrs`` pairs the arrays the pointers were made from with the pointers; backward
    uses them only while every one of those arrays is still the one in ``saved`` (a
    replaced array goes through the full check).  The base class's slot names are
    listed again so that code walking ``type(saved).__slots__`` (nn.utils.nbytes_of,
    memory accounting) sees every array."""

    __slots__ = RecurrentSaved.__slots__ + ("ptrs",)


def _same(arrays, current):
    """Every array in ``arrays`` is the very object in ``current`` (same order)."""
    for a, b in zip(arrays, current):
        if a is not b:
            return False
    return True


def _saved_arrays(s):
    """The saved arrays, C-contiguous (a no-op for what this backend saved; a
    saved from the NumPy backend may hold views, and is accepted too)."""
    if all(a is None or a.flags.c_contiguous for a in map(s.__getattribute__, RecurrentSaved.__slots__[2:])):
        return s  # inputs and outputs were made contiguous by forward already
    return RecurrentSaved(s.kind, s.cell, *[contiguous(getattr(s, k)) for k in RecurrentSaved.__slots__[2:]])


# ---------------------------------------------------------------- sequence

def _forward_ok(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, ndim=3):
    """True if the arguments need neither an error nor a copy (then check_forward is skipped).

    ``ndim`` is 3 for a sequence (x (T, B, I)) and 2 for one step (x (B, I))."""
    G = GATES.get(cell) if type(cell) is str else None
    dt = getattr(x, "dtype", None)
    if G is None or (dt is not F32 and dt is not F64) or h0 is None or (c0 is not None) != (cell == "lstm"):
        return False
    for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh):  # usable by C as they are
        if a is not None and not plain(a, dt):
            return False
    if x.ndim != ndim or h0.ndim != 2:
        return False
    T, B, I = x.shape if ndim == 3 else (1,) + x.shape
    H = h0.shape[1]
    GH = G * H
    return (T > 0 and h0.shape[0] == B and w_ih.shape == (GH, I) and w_hh.shape == (GH, H)
            and (c0 is None or c0.shape == (B, H))
            and (b_ih is None or b_ih.shape == (GH,)) and (b_hh is None or b_hh.shape == (GH,)))


def seq_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """Run ``cell`` over a whole sequence; see kernels.numpy_rnn.seq_forward."""
    if not _forward_ok(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh = check_forward(
            "seq_forward", cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, step=False)
    T, B, I = x.shape
    H = h0.shape[1]
    dt = x.dtype
    ct = CTYPE[dt]
    fb = from_buffer
    out = workspace.empty((T, B, H), dt)
    c_out = gates = tanh_c = hn = None
    px, ph0, pwi, pwh, pout = fb(ct, x), fb(ct, h0), fb(ct, w_ih), fb(ct, w_hh), fb(ct, out)
    pbi = NULL if b_ih is None else fb(ct, b_ih)
    pbh = NULL if b_hh is None else fb(ct, b_hh)
    if cell == "lstm":
        c_out = workspace.empty((T, B, H), dt)
        gates = workspace.empty((T, B, 4 * H), dt)
        tanh_c = workspace.empty((T, B, H), dt)
        pc0, pg, ptc, pcout = fb(ct, c0), fb(ct, gates), fb(ct, tanh_c), fb(ct, c_out)
        ptrs = ((x, h0, c0, w_ih, w_hh, gates, tanh_c, out, c_out), (px, ph0, pc0, pwi, pwh, pg, ptc, pout, pcout))
        rc = fn("lstm_seq_forward", dt)(T, B, I, H, px, ph0, pc0, pwi, pwh, pbi, pbh, pg, ptc, pout, pcout)
    elif cell == "gru":
        gates = workspace.empty((T, B, 3 * H), dt)
        hn = workspace.empty((T, B, H), dt)
        pg, phn = fb(ct, gates), fb(ct, hn)
        ptrs = ((x, h0, w_ih, w_hh, gates, hn, out), (px, ph0, pwi, pwh, pg, phn, pout))
        rc = fn("gru_seq_forward", dt)(T, B, I, H, px, ph0, pwi, pwh, pbi, pbh, pg, phn, pout)
    else:
        ptrs = ((x, h0, w_ih, w_hh, out), (px, ph0, pwi, pwh, pout))
        rc = fn("rnn_seq_forward", dt)(int(cell == "rnn_relu"), T, B, I, H, px, ph0, pwi, pwh, pbi, pbh, pout)
    check(rc, "seq_forward(%s)", cell)
    saved = _CSaved("seq", cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, out, c_out, gates, tanh_c, hn)
    saved.ptrs = ptrs + (b_ih, b_hh)
    return out, c_out, saved


# the saved arrays seq_backward hands the kernel, in the order it reads them: the order of the pointers
# forward keeps, and of those made for a saved forward from elsewhere
_SAVED_GET = {
    "lstm": lambda s: (s.x, s.h0, s.c0, s.w_ih, s.w_hh, s.gates, s.tanh_c, s.out, s.c_out),
    "gru": lambda s: (s.x, s.h0, s.w_ih, s.w_hh, s.gates, s.hn, s.out),
    "rnn_tanh": lambda s: (s.x, s.h0, s.w_ih, s.w_hh, s.out),
    "rnn_relu": lambda s: (s.x, s.h0, s.w_ih, s.w_hh, s.out),
}


def _grad_ok(g, shape, dt):
    """``g`` is None, or an array of ``shape`` and dtype ``dt`` that C can use as it is."""
    return g is None or (plain(g, dt) and g.shape == shape)


def _true_trace(trace_h, trace_c, exps):
    """The trace at true size from the kernel's scaled trace (T, B, H) and its exponents (T, B),
    one per step and sequence.

    The kernel keeps each row's largest entry within [2^-60, 2^60], so while every
    exponent lies in [-66, 67] the true values fit the dtype's normal range (float32's
    included): they come back in the layer's dtype.  Otherwise as float64, which holds
    a float32 layer's 1e-40 or 1e-200 as the number it is (beyond float64's own range,
    about 1e-308 .. 1e308, the values are 0 or inf).  One ``ldexp`` per entry
    (value * 2^e), exact wherever the result is a normal number; nothing to do
    while every exponent is 0.
    """
    if not np.count_nonzero(exps):
        return trace_h, trace_c
    e = exps[:, :, None]
    if exps.min() >= -66 and exps.max() <= 67:
        nz = np.flatnonzero(exps.any(axis=1))
        lo, hi = nz[0], nz[-1] + 1  # only the steps from the first to the last exponent that moved
        for a in (trace_h, trace_c):
            if a is not None:
                np.ldexp(a[lo:hi], e[lo:hi], out=a[lo:hi])
        return trace_h, trace_c
    wide = []
    for a in (trace_h, trace_c):
        if a is not None:  # widen, then scale in place (faster than one mixed-dtype ufunc)
            w = workspace.empty(a.shape, F64)
            np.copyto(w, a)
            a = np.ldexp(w, e, out=w)
        wide.append(a)
    return tuple(wide)


def _carry_exps(carry_exp, B):
    """``carry_exp`` (None, one int for every sequence, or one per sequence) as the kernel's
    int32 array (B,), or None."""
    if carry_exp is None:
        return None
    e = np.asarray(carry_exp)
    if e.dtype.kind not in "iu" or e.shape not in ((), (B,)):
        raise ValueError("seq_backward: carry_exp must be an int or %d ints (one per sequence), got %r"
                         % (B, carry_exp))
    return np.array(np.broadcast_to(e, (B,)), np.int32)


def seq_backward(cell, saved, d_out, d_hn=None, d_cn=None, need_dx=True, need_trace=True, carry_exp=None,
                 scaled_trace=False):
    """Backpropagation through time; see kernels.numpy_rnn.seq_backward.

    The C kernel carries the gradient through time as scaled values times a power
    of two, so a vanishing gradient never becomes subnormal on its way back (see
    "Tiny gradients in float32" in docs/design.md): while nothing under- or
    overflows, every result is that of plain IEEE arithmetic, bit for bit;
    otherwise entries of dx, dh0, dc0 and of the per-step terms of the weight
    gradients below the dtype's smallest normal number are 0.  The trace keeps
    the true sizes (float64 where the dtype cannot hold them, see ``_true_trace``);
    with ``scaled_trace`` it comes back as the kernel left it, scaled values, and
    "trace_exp" (T, B) holds each step's exponent for each sequence of the batch
    (true = value * 2**trace_exp[t, b]), for a caller that converts only when the
    trace is read (``nn.trace.TraceSlot``).  ``carry_exp`` (an int for every sequence,
    or one per sequence) carries those scales from one call to the next when a
    sequence is backpropagated in segments: d_hn and d_cn are then scaled values
    (true row b = value * 2**carry_exp[b]), dh0 and dc0 come back scaled, and the
    result's "carry_exp" (B,) holds their exponents.
    """
    s, d_out, d_hn, d_cn, ptrs = _seq_backward_args(cell, saved, d_out, d_hn, d_cn)
    T, B, I = s.x.shape
    H = s.h0.shape[1]
    dt = s.x.dtype
    ct = CTYPE[dt]
    fb = from_buffer
    g = _seq_backward_results(cell, s, need_dx, need_trace)
    dx, trace_h, trace_c, trace_exp = g["dx"], g["trace_h"], g["trace_c"], g["trace_exp"]
    grads = (fb(ct, g["dw_ih"]), fb(ct, g["dw_hh"]), NULL if g["db_ih"] is None else fb(ct, g["db_ih"]),
             NULL if g["db_hh"] is None else fb(ct, g["db_hh"]))
    pte = NULL if trace_exp is None else fb("int[]", trace_exp)
    carry = _carry_exps(carry_exp, B)
    pce = NULL if carry is None else fb("int[]", carry)
    pd_out = NULL if d_out is None else fb(ct, d_out)
    pd_hn = NULL if d_hn is None else fb(ct, d_hn)
    pdx = NULL if dx is None else fb(ct, dx)
    pth = NULL if trace_h is None else fb(ct, trace_h)
    if cell == "lstm":
        rc = fn("lstm_seq_backward", dt)(T, B, I, H, *ptrs, pd_out, pd_hn, NULL if d_cn is None else fb(ct, d_cn),
                                          pdx, fb(ct, g["dh0"]), fb(ct, g["dc0"]), *grads, pth,
                                          NULL if trace_c is None else fb(ct, trace_c), pte, pce)
    elif cell == "gru":
        rc = fn("gru_seq_backward", dt)(T, B, I, H, *ptrs, pd_out, pd_hn, pdx, fb(ct, g["dh0"]), *grads,
                                         pth, pte, pce)
    else:
        rc = fn("rnn_seq_backward", dt)(int(cell == "rnn_relu"), T, B, I, H, *ptrs, pd_out, pd_hn, pdx,
                                         fb(ct, g["dh0"]), *grads, pth, pte, pce)
    check(rc, "seq_backward(%s)", cell)
    if trace_exp is not None and not scaled_trace:
        g["trace_h"], g["trace_c"] = _true_trace(trace_h, trace_c, trace_exp)
        g["trace_exp"] = None  # the trace is at true size now
    if carry is not None:
        g["carry_exp"] = carry
    return g


def _seq_backward_args(cell, s, d_out, d_hn, d_cn):
    """The saved forward and the output gradients, checked, and C pointers to the saved arrays.

    Returns ``(saved, d_out, d_hn, d_cn, pointers)``, the pointers in the order of
    ``_SAVED_GET[cell]``.  A forward of this backend, untouched since, has had its shapes
    checked and keeps its pointers: only the gradients need a look, and only a cheap one
    when they are plain arrays of the right shape.  Anything else goes through the shared
    checks (which raise the NumPy backend's errors or make the copies C needs).
    """
    if (type(s) is _CSaved and s.cell == cell and s.kind == "seq" and s.b_ih is s.ptrs[2]
            and s.b_hh is s.ptrs[3] and _same(s.ptrs[0], _SAVED_GET[cell](s))):
        # this backend's own forward, untouched: its shapes were checked then
        T, B, _ = s.x.shape
        H = s.h0.shape[1]
        dt = s.x.dtype
        if not (_grad_ok(d_out, (T, B, H), dt) and _grad_ok(d_hn, (B, H), dt)
                and (_grad_ok(d_cn, (B, H), dt) if cell == "lstm" else d_cn is None)):
            d_out, d_hn, d_cn = check_backward("seq_backward", cell, s, "seq", d_out, d_hn, d_cn)
        return s, d_out, d_hn, d_cn, s.ptrs[1]
    d_out, d_hn, d_cn = check_backward("seq_backward", cell, s, "seq", d_out, d_hn, d_cn)
    s = _saved_arrays(s)
    return s, d_out, d_hn, d_cn, tuple([ptr(a) for a in _SAVED_GET[cell](s)])


def _seq_backward_results(cell, s, need_dx, need_trace):
    """The arrays seq_backward returns, by name, before the kernel fills them.

    The weight and bias gradients start at zero (the kernel adds every step's term into
    them); the others are written whole.  Arrays not asked for (``need_dx``,
    ``need_trace``), or that the cell does not have, are None.
    """
    T, B, I = s.x.shape
    H = s.h0.shape[1]
    dt = s.x.dtype
    GH = GATES[cell] * H
    return dict(dx=workspace.empty((T, B, I), dt) if need_dx else None,
                dh0=np.empty((B, H), dt),
                dc0=np.empty((B, H), dt) if cell == "lstm" else None,
                dw_ih=np.zeros((GH, I), dt), dw_hh=np.zeros((GH, H), dt),
                db_ih=None if s.b_ih is None else np.zeros(GH, dt),
                db_hh=None if s.b_hh is None else np.zeros(GH, dt),
                trace_h=workspace.empty((T, B, H), dt) if need_trace else None,
                trace_c=workspace.empty((T, B, H), dt) if need_trace and cell == "lstm" else None,
                trace_exp=np.empty((T, B), np.int32) if need_trace else None)  # the kernel writes every step's


# ---------------------------------------------------------------- one step

def step_forward(cell, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step of ``cell``; see kernels.numpy_rnn.step_forward."""
    if not _forward_ok(cell, x, h, c, w_ih, w_hh, b_ih, b_hh, ndim=2):
        x, h, c, w_ih, w_hh, b_ih, b_hh = check_forward(
            "step_forward", cell, x, h, c, w_ih, w_hh, b_ih, b_hh, step=True)
    B, I = x.shape
    H = h.shape[1]
    dt = x.dtype
    ct = CTYPE[dt]
    fb = from_buffer
    h_new = np.empty((B, H), dtype=dt)
    c_new = gates = tanh_c = hn = None
    px, ph, pwi, pwh, pout = fb(ct, x), fb(ct, h), fb(ct, w_ih), fb(ct, w_hh), fb(ct, h_new)
    pbi = NULL if b_ih is None else fb(ct, b_ih)
    pbh = NULL if b_hh is None else fb(ct, b_hh)
    if cell == "lstm":
        c_new = np.empty((B, H), dtype=dt)
        gates = np.empty((B, 4 * H), dtype=dt)
        tanh_c = np.empty((B, H), dtype=dt)
        pc, pg, ptc, pcn = fb(ct, c), fb(ct, gates), fb(ct, tanh_c), fb(ct, c_new)
        rc = fn("lstm_step_forward", dt)(B, I, H, px, ph, pc, pwi, pwh, pbi, pbh, pg, ptc, pout, pcn)
        ptrs = ((x, h, c, w_ih, w_hh, gates, tanh_c), (px, ph, pc, pwi, pwh, pg, ptc))
    elif cell == "gru":
        gates = np.empty((B, 3 * H), dtype=dt)
        hn = np.empty((B, H), dtype=dt)
        pg, phn = fb(ct, gates), fb(ct, hn)
        rc = fn("gru_step_forward", dt)(B, I, H, px, ph, pwi, pwh, pbi, pbh, pg, phn, pout)
        ptrs = ((x, h, w_ih, w_hh, gates, hn), (px, ph, pwi, pwh, pg, phn))
    else:
        rc = fn("rnn_step_forward", dt)(int(cell == "rnn_relu"), B, I, H, px, ph, pwi, pwh, pbi, pbh, pout)
        ptrs = ((x, h, w_ih, w_hh, h_new), (px, ph, pwi, pwh, pout))
    check(rc, "step_forward(%s)", cell)
    saved = _CSaved("step", cell, x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, gates, tanh_c, hn)
    saved.ptrs = ptrs + (b_ih, b_hh)
    return h_new, c_new, saved


# the saved arrays step_backward reads through the kept pointers, in forward's order
_STEP_GET = {
    "lstm": lambda s: (s.x, s.h0, s.c0, s.w_ih, s.w_hh, s.gates, s.tanh_c),
    "gru": lambda s: (s.x, s.h0, s.w_ih, s.w_hh, s.gates, s.hn),
    "rnn_tanh": lambda s: (s.x, s.h0, s.w_ih, s.w_hh, s.out),
    "rnn_relu": lambda s: (s.x, s.h0, s.w_ih, s.w_hh, s.out),
}


def step_backward(cell, saved, d_h, d_c=None, need_dx=True):
    """Backward of one step_forward call; see kernels.numpy_rnn.step_backward."""
    s = saved
    if (type(s) is _CSaved and s.cell == cell and s.kind == "step" and s.b_ih is s.ptrs[2]
            and s.b_hh is s.ptrs[3] and _same(s.ptrs[0], _STEP_GET[cell](s))):
        # this backend's own forward, untouched: its shapes were checked then
        B, I = s.x.shape
        H = s.h0.shape[1]
        dt = s.x.dtype
        if d_h is None or not (_grad_ok(d_h, (B, H), dt)
                               and (_grad_ok(d_c, (B, H), dt) if cell == "lstm" else d_c is None)):
            d_h, d_c = check_step_backward(cell, s, d_h, d_c)
        ptrs = s.ptrs[1]
    else:
        d_h, d_c = check_step_backward(cell, s, d_h, d_c)
        s = _saved_arrays(s)
        B, I = s.x.shape
        H = s.h0.shape[1]
        dt = s.x.dtype
        ptrs = None
    ct = CTYPE[dt]
    fb = from_buffer
    GH = GATES[cell] * H
    dx = np.empty((B, I), dt) if need_dx else None
    dh = np.empty((B, H), dt)
    dc = np.empty((B, H), dt) if cell == "lstm" else None
    dw_ih, dw_hh = np.zeros((GH, I), dt), np.zeros((GH, H), dt)
    db_ih = None if s.b_ih is None else np.zeros(GH, dt)
    db_hh = None if s.b_hh is None else np.zeros(GH, dt)
    grads = (fb(ct, dw_ih), fb(ct, dw_hh), NULL if db_ih is None else fb(ct, db_ih),
             NULL if db_hh is None else fb(ct, db_hh))
    pdx = NULL if dx is None else fb(ct, dx)
    if cell == "lstm":
        if ptrs is None:
            ptrs = (ptr(s.x), ptr(s.h0), ptr(s.c0), ptr(s.w_ih), ptr(s.w_hh), ptr(s.gates), ptr(s.tanh_c))
        rc = fn("lstm_step_backward", dt)(B, I, H, *ptrs, fb(ct, d_h), NULL if d_c is None else fb(ct, d_c),
                                           pdx, fb(ct, dh), fb(ct, dc), *grads)
    elif cell == "gru":
        if ptrs is None:
            ptrs = (ptr(s.x), ptr(s.h0), ptr(s.w_ih), ptr(s.w_hh), ptr(s.gates), ptr(s.hn))
        rc = fn("gru_step_backward", dt)(B, I, H, *ptrs, fb(ct, d_h), pdx, fb(ct, dh), *grads)
    else:
        if ptrs is None:
            ptrs = (ptr(s.x), ptr(s.h0), ptr(s.w_ih), ptr(s.w_hh), ptr(s.out))
        rc = fn("rnn_step_backward", dt)(int(cell == "rnn_relu"), B, I, H, *ptrs, fb(ct, d_h), pdx, fb(ct, dh),
                                          *grads)
    check(rc, "step_backward(%s)", cell)
    return dict(dx=dx, dh=dh, dc=dc, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh)

"""Recurrent kernels, C backend: validate in Python, allocate, then call C once.

Same interface and semantics as ``kernels/numpy_rnn.py`` (the reference, which
also holds the validation both backends share):

    seq_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh)  -> (out, c_out, saved)
    seq_backward(cell, saved, d_out, d_hn=None, d_cn=None, need_dx=True, need_trace=True) -> dict
    step_forward(cell, x, h, c, w_ih, w_hh, b_ih, b_hh)   -> (h_new, c_new, saved)
    step_backward(cell, saved, d_h, d_c=None, need_dx=True) -> dict

Python allocates every output and the forward workspace (``gates``, ``tanh_c``,
``hn``, see ``numpy_rnn.RecurrentSaved``), and keeps the workspace in ``saved``;
the C kernels (csrc/rnn.c, lstm.c, gru.c) only allocate their own scratch and
return nonzero if that fails, which becomes a MemoryError here.
"""
import numpy as np

from .._tinybptt_c import ffi, lib
from ._validate import contiguous
from .numpy_rnn import (RecurrentSaved, check_backward, check_forward,
                        check_step_backward)

_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_CTYPE = {np.dtype(np.float32): "float[]", np.dtype(np.float64): "double[]"}


def _p(a):
    """C pointer to C-contiguous float array ``a``; NULL for None."""
    if a is None:
        return ffi.NULL
    return ffi.from_buffer(_CTYPE[a.dtype], a, require_writable=False)


def _saved_arrays(s):
    """The saved arrays, C-contiguous (a no-op for what this backend saved; a
    saved from the NumPy backend may hold views, and is accepted too)."""
    if all(a is None or a.flags.c_contiguous for a in map(s.__getattribute__, RecurrentSaved.__slots__[2:])):
        return s  # inputs and outputs were made contiguous by forward already
    return RecurrentSaved(s.kind, s.cell, *[contiguous(getattr(s, k)) for k in RecurrentSaved.__slots__[2:]])


_FUNCS = {}  # (name, dtype) -> the C function tb_<name>_<f32|f64>, looked up once


def _fn(name, dtype):
    f = _FUNCS.get((name, dtype))
    if f is None:
        f = _FUNCS[(name, dtype)] = getattr(lib, "tb_%s_%s" % (name, _SUFFIX[dtype]))
    return f


def _call(op, cell, name, dtype, *args):
    """Call ``tb_<name>_<f32|f64>``; a nonzero return means scratch allocation failed."""
    rc = _fn(name, dtype)(*args)
    if rc:
        raise MemoryError("%s(%s): the C kernel could not allocate its scratch memory" % (op, cell))


def _base(cell):
    """The C kernel family of a cell, and the extra leading argument the rnn kernels take."""
    if cell in ("rnn_tanh", "rnn_relu"):
        return "rnn", (int(cell == "rnn_relu"),)
    return cell, ()


def _zeros_like_or_none(a):
    return None if a is None else np.zeros_like(a)


# ---------------------------------------------------------------- sequence

def seq_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """Run ``cell`` over a whole sequence; see kernels.numpy_rnn.seq_forward."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = check_forward(
        "seq_forward", cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, step=False)
    T, B, I = x.shape
    H = h0.shape[1]
    dt = x.dtype
    out = np.empty((T, B, H), dtype=dt)
    c_out = gates = tanh_c = hn = None
    base, pre = _base(cell)
    common = pre + (T, B, I, H)
    if cell == "lstm":
        c_out = np.empty((T, B, H), dtype=dt)
        gates = np.empty((T, B, 4 * H), dtype=dt)
        tanh_c = np.empty((T, B, H), dtype=dt)
        _call("seq_forward", cell, "lstm_seq_forward", dt, *common,
              _p(x), _p(h0), _p(c0), _p(w_ih), _p(w_hh), _p(b_ih), _p(b_hh),
              _p(gates), _p(tanh_c), _p(out), _p(c_out))
    elif cell == "gru":
        gates = np.empty((T, B, 3 * H), dtype=dt)
        hn = np.empty((T, B, H), dtype=dt)
        _call("seq_forward", cell, "gru_seq_forward", dt, *common,
              _p(x), _p(h0), _p(w_ih), _p(w_hh), _p(b_ih), _p(b_hh),
              _p(gates), _p(hn), _p(out))
    else:
        _call("seq_forward", cell, "rnn_seq_forward", dt, *common,
              _p(x), _p(h0), _p(w_ih), _p(w_hh), _p(b_ih), _p(b_hh), _p(out))
    saved = RecurrentSaved(kind="seq", cell=cell, x=x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh,
                           b_ih=b_ih, b_hh=b_hh, out=out, c_out=c_out,
                           gates=gates, tanh_c=tanh_c, hn=hn)
    return out, c_out, saved


def seq_backward(cell, saved, d_out, d_hn=None, d_cn=None, need_dx=True, need_trace=True):
    """Backpropagation through time; see kernels.numpy_rnn.seq_backward."""
    s = saved
    d_out, d_hn, d_cn = check_backward("seq_backward", cell, s, "seq", d_out, d_hn, d_cn)
    s = _saved_arrays(s)
    T, B, I = s.x.shape
    H = s.h0.shape[1]
    dt = s.x.dtype
    dx = np.empty_like(s.x) if need_dx else None
    dh0 = np.empty_like(s.h0)
    dc0 = np.empty_like(s.h0) if cell == "lstm" else None
    dw_ih, dw_hh = np.zeros_like(s.w_ih), np.zeros_like(s.w_hh)
    db_ih, db_hh = _zeros_like_or_none(s.b_ih), _zeros_like_or_none(s.b_hh)
    trace_h = np.empty_like(s.out) if need_trace else None
    trace_c = np.empty_like(s.out) if need_trace and cell == "lstm" else None
    base, pre = _base(cell)
    common = pre + (T, B, I, H)
    grads = (_p(dw_ih), _p(dw_hh), _p(db_ih), _p(db_hh))
    if cell == "lstm":
        _call("seq_backward", cell, "lstm_seq_backward", dt, *common,
              _p(s.x), _p(s.h0), _p(s.c0), _p(s.w_ih), _p(s.w_hh),
              _p(s.gates), _p(s.tanh_c), _p(s.out), _p(s.c_out),
              _p(d_out), _p(d_hn), _p(d_cn), _p(dx), _p(dh0), _p(dc0),
              *grads, _p(trace_h), _p(trace_c))
    elif cell == "gru":
        _call("seq_backward", cell, "gru_seq_backward", dt, *common,
              _p(s.x), _p(s.h0), _p(s.w_ih), _p(s.w_hh), _p(s.gates), _p(s.hn), _p(s.out),
              _p(d_out), _p(d_hn), _p(dx), _p(dh0), *grads, _p(trace_h))
    else:
        _call("seq_backward", cell, "rnn_seq_backward", dt, *common,
              _p(s.x), _p(s.h0), _p(s.w_ih), _p(s.w_hh), _p(s.out),
              _p(d_out), _p(d_hn), _p(dx), _p(dh0), *grads, _p(trace_h))
    return dict(dx=dx, dh0=dh0, dc0=dc0, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh,
                trace_h=trace_h, trace_c=trace_c)


# ---------------------------------------------------------------- one step

def step_forward(cell, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step of ``cell``; see kernels.numpy_rnn.step_forward."""
    x, h, c, w_ih, w_hh, b_ih, b_hh = check_forward(
        "step_forward", cell, x, h, c, w_ih, w_hh, b_ih, b_hh, step=True)
    B, I = x.shape
    H = h.shape[1]
    dt = x.dtype
    h_new = np.empty((B, H), dtype=dt)
    c_new = gates = tanh_c = hn = None
    base, pre = _base(cell)
    common = pre + (B, I, H)
    fn = _fn(base + "_step_forward", dt)
    if cell == "lstm":
        c_new = np.empty((B, H), dtype=dt)
        gates = np.empty((B, 4 * H), dtype=dt)
        tanh_c = np.empty((B, H), dtype=dt)
        fn(*common, _p(x), _p(h), _p(c), _p(w_ih), _p(w_hh), _p(b_ih), _p(b_hh),
           _p(gates), _p(tanh_c), _p(h_new), _p(c_new))
    elif cell == "gru":
        gates = np.empty((B, 3 * H), dtype=dt)
        hn = np.empty((B, H), dtype=dt)
        _call("step_forward", cell, "gru_step_forward", dt, *common,
              _p(x), _p(h), _p(w_ih), _p(w_hh), _p(b_ih), _p(b_hh), _p(gates), _p(hn), _p(h_new))
    else:
        fn(*common, _p(x), _p(h), _p(w_ih), _p(w_hh), _p(b_ih), _p(b_hh), _p(h_new))
    saved = RecurrentSaved(kind="step", cell=cell, x=x, h0=h, c0=c, w_ih=w_ih, w_hh=w_hh,
                           b_ih=b_ih, b_hh=b_hh, out=h_new, c_out=c_new,
                           gates=gates, tanh_c=tanh_c, hn=hn)
    return h_new, c_new, saved


def step_backward(cell, saved, d_h, d_c=None, need_dx=True):
    """Backward of one step_forward call; see kernels.numpy_rnn.step_backward."""
    s = saved
    d_h, d_c = check_step_backward(cell, s, d_h, d_c)
    s = _saved_arrays(s)
    B, I = s.x.shape
    H = s.h0.shape[1]
    dt = s.x.dtype
    dx = np.empty_like(s.x) if need_dx else None
    dh = np.empty_like(s.h0)
    dc = np.empty_like(s.h0) if cell == "lstm" else None
    dw_ih, dw_hh = np.zeros_like(s.w_ih), np.zeros_like(s.w_hh)
    db_ih, db_hh = _zeros_like_or_none(s.b_ih), _zeros_like_or_none(s.b_hh)
    base, pre = _base(cell)
    common = pre + (B, I, H)
    grads = (_p(dw_ih), _p(dw_hh), _p(db_ih), _p(db_hh))
    if cell == "lstm":
        _call("step_backward", cell, "lstm_step_backward", dt, *common,
              _p(s.x), _p(s.h0), _p(s.c0), _p(s.w_ih), _p(s.w_hh), _p(s.gates), _p(s.tanh_c),
              _p(d_h), _p(d_c), _p(dx), _p(dh), _p(dc), *grads)
    elif cell == "gru":
        _call("step_backward", cell, "gru_step_backward", dt, *common,
              _p(s.x), _p(s.h0), _p(s.w_ih), _p(s.w_hh), _p(s.gates), _p(s.hn),
              _p(d_h), _p(dx), _p(dh), *grads)
    else:
        _call("step_backward", cell, "rnn_step_backward", dt, *common,
              _p(s.x), _p(s.h0), _p(s.w_ih), _p(s.w_hh), _p(s.out),
              _p(d_h), _p(dx), _p(dh), *grads)
    return dict(dx=dx, dh=dh, dc=dc, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh)

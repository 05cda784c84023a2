"""Truncated and checkpointed backpropagation through time.

Truncated BPTT -- ``truncated_bptt(model, inputs, targets, loss_fn, optimizer, k1, k2)``
---------------------------------------------------------------------------------------
Williams & Peng's BPTT(h; h') with h' = ``k1`` and h = ``k2``: the model runs
forward through the sequence once; every ``k1`` steps (and at the end of the
sequence) the loss of the steps since the previous update is backpropagated
through at most the last ``k2`` steps, then the optimizer updates the weights.

* ``k1 == k2 == k``: the familiar "chunk and detach" scheme.  The model runs on
  chunks of k steps at once (the fast fused sequence kernels), the state is
  detached between chunks.  With k = T this *is* full BPTT: the same graph,
  the same gradients, the same update.
* ``k2 > k1``: windows overlap; every loss still reaches ``k2 - k1`` or more
  steps back.  The model runs one step at a time; each step's graph is kept
  (``retain_graph``) while some future window still needs it, and gradients are
  carried from step to step through the saved states.  Because the optimizers
  give parameters new arrays instead of overwriting them, a kept step graph
  backpropagates with the weights that step actually used, as in Williams & Peng.
* ``k2 < k1``: only the last ``k2`` steps before an update are backpropagated;
  losses of earlier steps since the last update are computed and reported but
  contribute no gradient (they lie outside the window).

``backprop_windows(T, k1, k2)`` lists exactly which steps each update injects
and backpropagates (including the last, shorter update when k1 does not divide T).

``model(x_chunk, state) -> (y_chunk, new_state)`` -- the calling convention of
``nn.RNN/LSTM/GRU`` (``out, h_n = rnn(x, h0)``); state may be a Tensor, a tuple
of Tensors, or None (the model's zero state).  ``loss_fn(y_window, target_window)``
returns a scalar Tensor for one window of steps; with k1 == k2 the objective
is the sum over windows, so make ``loss_fn`` sum over time (or average over the
batch only) if the windows should add up to the full-sequence loss.

The classic bug -- carrying the state into the next chunk without detaching it --
makes the second ``backward`` run into the first chunk's freed graph and raise
``GraphError`` ("... detach it between chunks ...").  ``truncated_bptt`` detaches
for you; ``nn.utils.detach_state`` does it in a hand-written loop.

Checkpointed BPTT -- ``checkpointed(layer, x, state, k)`` or ``LSTM(..., checkpoint=k)``
-------------------------------------------------------------------------------------
Keeps only every k-th state (of every layer) during the forward pass and
recomputes each k-step segment during backward: activation memory O(T/k + k)
instead of O(T), for one extra forward pass.  Gradients equal full BPTT to
rounding.  ``activation_bytes`` measures it.
"""
import collections

import numpy as np

from .autograd import Tensor, no_grad
from .errors import ShapeError, integer_at_least, is_index
from .nn.utils import clip_grad_norm_, detach_state, saved_bytes
from .ops import concat

__all__ = ["truncated_bptt", "TBPTTResult", "UpdateInfo", "checkpointed", "activation_bytes", "saved_bytes",
           "update_times", "backprop_windows"]

#: What ``on_update`` receives: ``index`` of the update, ``start``/``end`` of the
#: steps whose loss it injects, ``window`` = (first, end) of the steps backpropagated,
#: ``loss`` (float) and the ``state`` after step end-1 (not detached yet).
UpdateInfo = collections.namedtuple("UpdateInfo", ["index", "start", "end", "window", "loss", "state"])


class TBPTTResult(collections.namedtuple("TBPTTResult", ["losses", "state", "updates"])):
    """``losses``: one float per update; ``state``: the final state, detached; ``updates``: their count."""


def update_times(T, k1):
    """The step counts after which ``truncated_bptt`` updates: k1, 2*k1, ..., and T."""
    times = list(range(k1, T, k1))
    times.append(T)
    return times


def _time_slice(a, start, end, axis):
    idx = [slice(None)] * a.ndim
    idx[axis] = slice(start, end)
    return a[tuple(idx)]


def _flat(state):
    if state is None:
        return []
    if isinstance(state, Tensor):
        return [state]
    if isinstance(state, (tuple, list)):
        out = []
        for s in state:
            out += _flat(s)
        return out
    raise ShapeError("truncated_bptt: the model's state must be a Tensor or a tuple of Tensors, got %s"
                     % type(state).__name__)


def _leaves(state, requires_grad):
    """The same structure as ``state`` with fresh leaf tensors (so the step's graph starts here)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return Tensor(state.data, requires_grad=requires_grad)
    return type(state)(_leaves(s, requires_grad) for s in state)


def _check_k(name, k, T):
    return min(integer_at_least("truncated_bptt", "%s (a number of steps)" % name, k, 1), T)


def truncated_bptt(model, inputs, targets, loss_fn, optimizer=None, k1=None, k2=None, state=None,
                   time_axis=None, clip_grad_norm=None, on_update=None, strategy="auto"):
    """Train ``model`` on one long sequence with truncated BPTT (Williams & Peng's BPTT(k2; k1)).

    Parameters
    ----------
    model : callable ``(x_chunk, state) -> (y_chunk, new_state)``
        e.g. an ``nn.LSTM`` or a Module wrapping one and a head.
    inputs, targets : arrays or Tensors with a time axis (``time_axis``; default
        1 if ``model.batch_first`` else 0).  ``targets`` may hold integers
        (for ``cross_entropy``).
    loss_fn : ``(y_window, target_window) -> scalar Tensor``.
    optimizer : an ``optim`` optimizer, or None to only accumulate gradients
        (then ``.grad`` holds the sum over all updates; nothing is zeroed).
    k1 : steps between updates (default: T, one update).
    k2 : steps backpropagated from each update (default: k1).
    state : initial state (detached before use); None for the model's zeros.
    clip_grad_norm : if set, ``nn.utils.clip_grad_norm_`` before each step.
    on_update : called as ``on_update(UpdateInfo)`` after each backward (and
        clipping), before ``optimizer.step()`` -- gradients are readable there.
    strategy : "auto" (chunks when k1 == k2, else steps), "chunks" (needs
        k1 == k2) or "steps" (one model call per step; any k1, k2).

    Returns ``TBPTTResult(losses, state, updates)``.
    """
    if time_axis is None:
        time_axis = 1 if getattr(model, "batch_first", False) else 0
    x_all = inputs if isinstance(inputs, Tensor) else np.asarray(inputs)
    for name, a in (("inputs", x_all), ("targets", targets)):
        nd = len(np.shape(a))
        if not is_index(time_axis, nd):
            raise ShapeError("truncated_bptt: time_axis=%r does not exist in %s of shape %s; pass time_axis=0 "
                             "for (T, B, ...) data or 1 for batch_first (B, T, ...)"
                             % (time_axis, name, tuple(np.shape(a))))
    T = x_all.shape[time_axis]
    if T == 0:
        raise ShapeError("truncated_bptt: inputs have no time steps (shape %s, time_axis=%d)"
                         % (tuple(x_all.shape), time_axis))
    if np.shape(targets)[time_axis] != T:
        raise ShapeError("truncated_bptt: inputs have %d steps along axis %d but targets have %d (shapes %s, %s)"
                         % (T, time_axis, np.shape(targets)[time_axis], tuple(x_all.shape), np.shape(targets)))
    k1 = T if k1 is None else _check_k("k1", k1, T)
    k2 = k1 if k2 is None else _check_k("k2", k2, T)
    if strategy not in ("auto", "chunks", "steps"):
        raise ValueError("truncated_bptt: strategy must be 'auto', 'chunks' or 'steps', got %r" % (strategy,))
    if strategy == "chunks" and k1 != k2:
        raise ValueError("truncated_bptt: strategy='chunks' needs k1 == k2 (got k1=%d, k2=%d)" % (k1, k2))
    if strategy == "auto":
        strategy = "chunks" if k1 == k2 else "steps"
    params = optimizer.params if optimizer is not None else (model.parameters() if hasattr(model, "parameters") else [])
    targets_all = targets if isinstance(targets, Tensor) else np.asarray(targets)
    state = detach_state(state)
    run = _run_chunks if strategy == "chunks" else _run_steps
    return run(model, x_all, targets_all, loss_fn, optimizer, k1, k2, state, time_axis, clip_grad_norm,
               on_update, params, T)


def _finish_update(index, start, end, window, loss, state, optimizer, clip, on_update, params):
    if clip is not None:
        clip_grad_norm_(params, clip)
    if on_update is not None:
        on_update(UpdateInfo(index, start, end, window, loss.item(), state))
    if optimizer is not None:
        optimizer.step()


def _run_chunks(model, x_all, targets, loss_fn, optimizer, k1, k2, state, axis, clip, on_update, params, T):
    losses = []
    start = 0
    for i, end in enumerate(update_times(T, k1)):
        y, new_state = model(_time_slice(x_all, start, end, axis), state)
        loss = loss_fn(y, _time_slice(targets, start, end, axis))
        if optimizer is not None:
            optimizer.zero_grad()
        loss.backward()
        _finish_update(i, start, end, (start, end), loss, new_state, optimizer, clip, on_update, params)
        losses.append(loss.item())
        state = detach_state(new_state)
        start = end
    return TBPTTResult(losses, state, len(losses))


class _Step:
    __slots__ = ("s_in", "state_out", "y")

    def __init__(self, s_in, state_out, y):
        self.s_in, self.state_out, self.y = s_in, state_out, y


def backprop_windows(T, k1, k2):
    """``[(first, end)]`` per update: the steps each update of ``truncated_bptt`` backpropagates through.

    Update i injects the losses of steps [end_{i-1}, end_i).  With k2 >= k1 its
    window reaches k2 - k1 steps further back than that (so a full window is
    the last k2 steps, and the last, shorter update of a sequence whose length
    is not a multiple of k1 reaches k2 - k1 steps before its own chunk -- for
    k1 == k2 exactly its chunk, as in chunk-and-detach).  With k2 < k1 the
    window is the last k2 steps before the update.
    """
    wins, prev = [], 0
    for end in update_times(T, k1):
        first = prev - (k2 - k1) if k2 >= k1 else end - k2
        wins.append((max(first, 0), end))
        prev = end
    return wins


def _run_steps(model, x_all, targets, loss_fn, optimizer, k1, k2, state, axis, clip, on_update, params, T):
    wins = backprop_windows(T, k1, k2)
    ends = [e for _, e in wins]
    next_update = np.searchsorted(ends, np.arange(T), side="right")  # index of the first update after step j
    history = {}  # step j -> _Step, only while some window still needs it
    losses = []
    prev = 0
    for j in range(T):
        first, u = wins[next_update[j]]
        needed = j >= first  # step j lies in the backprop window of its next update (windows only move forward)
        s_in = _leaves(state, requires_grad=needed)
        x_j = _time_slice(x_all, j, j + 1, axis)
        if needed:
            y, state_out = model(x_j, s_in)
        else:
            with no_grad():
                y, state_out = model(x_j, s_in)
        history[j] = _Step(s_in, state_out, y)
        state = state_out
        if j + 1 != u:
            continue
        # ---- update at time u: inject the losses of steps [prev, u), backprop through [first, u)
        ys = [history[i].y if i >= first else history[i].y.detach() for i in range(prev, u)]
        y_win = ys[0] if len(ys) == 1 else concat(ys, axis=axis)
        loss = loss_fn(y_win, _time_slice(targets, prev, u, axis))
        if optimizer is not None:
            optimizer.zero_grad()
        for i in range(first, u):
            for leaf in _flat(history[i].s_in):
                leaf.grad = None
        if loss.requires_grad:
            loss.backward(retain_graph=True)
        for i in range(u - 1, first, -1):  # carry dL/d state from step i's input back into step i-1
            grads = [leaf.grad for leaf in _flat(history[i].s_in)]
            outs = _flat(history[i - 1].state_out)
            root = None
            for out, g in zip(outs, grads):
                if g is None or not out.requires_grad:
                    continue
                term = (out * g).sum()
                root = term if root is None else root + term
            if root is not None:
                root.backward(retain_graph=True)
        _finish_update(len(losses), prev, u, (first, u), loss, state_out, optimizer, clip, on_update, params)
        losses.append(loss.item())
        prev = u
        # forget the steps no later window reaches
        keep_from = min(wins[len(losses)][0], u) if len(losses) < len(wins) else T
        for i in [i for i in history if i < keep_from]:
            del history[i]
    return TBPTTResult(losses, detach_state(state), len(losses))


# --------------------------------------------------------------------------- checkpointing


def checkpointed(layer, x, state=None, k=None):
    """Run recurrent ``layer`` (nn.RNN/LSTM/GRU) on ``x`` keeping only every ``k``-th state.

    The same call and result as ``layer(x, state)``; the backward pass
    recomputes each k-step segment from the stored states (gradients equal full
    BPTT to rounding).  ``layer.checkpoint_stats`` then reports the memory.
    ``LSTM(..., checkpoint=k)`` makes it the layer's default.
    """
    if not hasattr(layer, "forward_with"):
        raise TypeError("checkpointed: expected an nn.RNN, nn.LSTM or nn.GRU layer, got %s" % type(layer).__name__)
    return layer.forward_with(x, state, checkpoint=k)


def activation_bytes(layer, x, state=None, checkpoint=None):
    """Activation memory of one forward + backward of ``layer`` on ``x`` (loss ``sum(out**2)``).

    Returns ``dict(stored=..., peak=...)`` in bytes, not counting the input and
    the weights.  Without ``checkpoint``: what the graph saves for backward
    (``saved_bytes``), stored = peak.  With ``checkpoint=k``: ``stored`` is what
    is kept between forward and backward (O(T/k)), ``peak`` adds the largest
    recomputed segment (O(k)).  For benchmarks: ``activation_bytes(nn.LSTM(I, H), x, checkpoint=10)``.
    """
    x_t = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=layer.dtype))
    params = layer.parameters()
    exclude = [x_t] + params
    if checkpoint is None:
        out, _ = layer.forward_with(x_t, state)
        n = saved_bytes(out, exclude=exclude)
        return dict(stored=n, peak=n)
    grads = [p.grad for p in params]  # leave the caller's gradients as they were
    out, _ = layer.forward_with(x_t, state, checkpoint=checkpoint)
    (out * out).sum().backward()
    for p, g in zip(params, grads):
        p.grad = g
    stats = layer.checkpoint_stats
    return dict(stored=stats.stored_bytes, peak=stats.peak_bytes)

"""Reusable arrays for the big buffers of the recurrent forward pass.

The problem.  A training step makes the same large arrays every time (an
LSTM's saved gates, cell states and outputs: 6 MB for T=100, B=32, H=64) and
drops them when the step is over.  NumPy gets them from ``malloc``, and glibc's
``malloc`` serves a block above its mmap threshold (128 KiB when a process
starts) as a fresh mapping from the operating system, which it unmaps again on
``free``.  Every page of a fresh mapping costs a page fault at first touch (the
kernel hands out a zeroed page), so such a process pays about 1,400 page
faults in an LSTM step's forward alone and the step takes 40-100% longer.  glibc
raises its threshold only once the process frees a block larger than the
current one, so whether a training loop is slow depends on what the process
did before (evaluating a large test set first fixes it, by luck).

The fix here.  ``empty(shape, dtype)`` is ``np.empty(shape, dtype)`` that keeps
the large arrays it made (``MIN_BYTES`` and up) in a pool, and hands one out
again once nothing else refers to it: the step's arrays are reused by the next
step instead of going back to the OS and coming fresh from it.  Nothing in the
process's ``malloc`` settings changes.

When is an array free?  When the pool's own reference is the only one left.
Everything that uses an array's memory holds a reference to it: a Tensor, a
graph node's saved values, a C pointer made with ``ffi.from_buffer``, and every
view (NumPy points a view's ``base`` at the array that owns the memory, however
many views deep).  So ``sys.getrefcount`` tells: a graph that is alive, a
returned output the caller keeps, or a slice of one (``out[-1]`` as ``h_n``)
keeps its array out of the pool's hands; once they are gone, it is free.
The count that means "only the pool" is measured once at import (``_FREE``),
not assumed.

Only while the graph is recorded.  Under ``no_grad()`` (evaluation, usually on
another batch size, now and then) ``empty`` is ``np.empty``: nothing is saved for
a backward pass, so the arrays go as soon as the call is over, and keeping them
for the next evaluation would hold memory for little.  (An LSTM's forward over a
test set of 1,000 sequences makes 180 MB of them.)

Who uses it.  The C backend's ``seq_forward`` (the outputs and the arrays saved
for backward) and ``seq_backward`` (dx and the gradient trace), and
``nn.utils.clip_grad_norm_`` (its float64 copy of the gradients).  Large arrays
made anywhere else still come from ``malloc``; and since pooled arrays are never
freed, they no longer raise glibc's threshold either, so such arrays keep their
page faults in a fresh process until they are made here too (``empty``, ``zeros``).

Bounds.  At most ``PER_SHAPE`` arrays per (shape, dtype) and ``limit()`` bytes in
all (``set_limit``; 0 turns the pool off); when a new array would not fit,
free arrays of other shapes are dropped first, oldest shape first, and if it
still does not fit it is simply not kept.  ``clear()`` drops every pooled
array (those in use live on with their users).  ``stats()`` counts reuses.
"""
import math
import sys
import threading

import numpy as np

from .. import modes

#: Arrays smaller than this come from ``np.empty`` as before: ``malloc`` keeps
#: small blocks in its heap, so they cost no page faults.
MIN_BYTES = 64 * 1024
#: At most this many arrays of one (shape, dtype) are kept (a stacked layer makes three or four of one
#: shape per layer and step).
PER_SHAPE = 32
_DEFAULT_LIMIT = 256 * 1024 * 1024

_lock = threading.Lock()
_pool = {}  # (shape, dtype) -> [arrays], in the order they were made; dict order: oldest shape first
_state = {"limit": _DEFAULT_LIMIT, "bytes": 0, "reused": 0, "made": 0}
_getrefcount = getattr(sys, "getrefcount", None)


def _free_at(arrays, free):
    """Where in the list ``arrays`` the arrays are whose reference count is ``free``: those nothing but
    the list refers to (every count is taken here, so that ``free`` is measured once, by ``_measure_free``)."""
    return [k for k, a in enumerate(arrays) if _getrefcount(a) == free]


def _measure_free():
    """The reference count ``_free_at`` sees for an array held by its list alone (None: cannot tell)."""
    if _getrefcount is None:  # an interpreter without reference counts: no pooling
        return None
    for n in range(1, 8):
        if _free_at([np.empty(1)], n):
            held = np.empty(1)
            return n if not _free_at([held], n) else None  # an outside reference must count
    return None


_FREE = _measure_free()


def empty(shape, dtype):
    """An uninitialised array, like ``np.empty(shape, dtype)``: a pooled one nothing else uses, if there is one.

    ``shape`` is a tuple of ints and ``dtype`` a NumPy dtype.
    """
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES or _FREE is None or not _state["limit"] or not modes.thread.modes.grad_enabled:
        return np.empty(shape, dtype)
    key = (shape, dtype)
    with _lock:
        arrays = _pool.get(key)
        free = _free_at(arrays, _FREE) if arrays else ()
        if free:
            _state["reused"] += 1
            return arrays[free[0]]
        a = np.empty(shape, dtype)
        _state["made"] += 1
        if (arrays is None or len(arrays) < PER_SHAPE) and _make_room(nbytes, key):
            _pool.setdefault(key, []).append(a)
            _state["bytes"] += nbytes
        return a


def zeros(shape, dtype):
    """``np.zeros(shape, dtype)`` through ``empty``: a reused array, filled with zeros.

    Filling costs one pass over the memory; a fresh ``np.zeros`` of a large size
    costs the same pass as page faults, one per 4 KiB page, when the pages come
    fresh from the OS.
    """
    a = empty(shape, dtype)
    a.fill(0)
    return a


def _make_room(nbytes, keep):
    """Drop free arrays of shapes other than ``keep`` until ``nbytes`` more fit in the limit -> whether they do."""
    for key in list(_pool):
        if _state["bytes"] + nbytes <= _state["limit"]:
            break
        if key == keep:
            continue
        arrays = _pool[key]
        for k in reversed(_free_at(arrays, _FREE)):
            _state["bytes"] -= arrays.pop(k).nbytes
        if not arrays:
            del _pool[key]
    return _state["bytes"] + nbytes <= _state["limit"]


def set_limit(nbytes):
    """Keep at most ``nbytes`` of arrays in the pool (default 256 MiB); 0 turns the pool off and empties it."""
    nbytes = int(nbytes)
    if nbytes < 0:
        raise ValueError("workspace.set_limit: nbytes must be >= 0, got %d" % nbytes)
    with _lock:
        _state["limit"] = nbytes
        if not nbytes:
            _pool.clear()
            _state["bytes"] = 0
        else:
            _make_room(0, None)


def limit():
    """The pool's limit in bytes."""
    return _state["limit"]


def clear():
    """Drop every pooled array (arrays still in use stay valid: their users hold them)."""
    with _lock:
        _pool.clear()
        _state["bytes"] = 0


def stats():
    """{"arrays", "bytes": what the pool holds; "reused", "made": calls served from it, and not}."""
    with _lock:
        return {"arrays": sum(len(v) for v in _pool.values()), "bytes": _state["bytes"],
                "reused": _state["reused"], "made": _state["made"]}

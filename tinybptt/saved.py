"""Guarding what a node saved for backward against in-place edits.

A node's backward computes with values its forward saved (``tanh`` keeps its
output, ``a * b`` keeps the other operand, a recurrent layer keeps its weights).
If one of them is edited in place before backward runs, the gradient silently
mixes old and new values.  So every tensor's data carries a version counter,
bumped by the in-place API (``add_``, ``mul_``, ``t[idx] = v``, ...,
``bump_version()``); when a node is recorded, ``record`` notes the version of
each input or output whose array it saved, and ``check`` (called by the
backward pass before the node's backward) raises GraphError if one changed.

A counter cannot see an edit of the NumPy array itself (``w.data *= 0.5``).  For
tensors that require grad and are leaves or views (the parameters, ``w.T``),
``record`` also keeps a sample of about 32 of the saved values (the first
and every k-th in memory order, k = size // 32; all of them for an array that
is not contiguous); ``check`` compares it.  Not caught: a direct edit of a
few elements that misses every sampled position, and a direct edit of the
array of a tensor that does not require grad (input data) or of another
intermediate result -- their edits through the API are caught.  Assigning a
new array (``t.data = array``, what the optimisers do) leaves the saved array
untouched and is not an edit.

This module needs no Tensor: anything with ``data``, ``requires_grad``,
``_ctx`` (None for a leaf) and ``_versions`` (its counter) is one.
"""
import numpy as np

from .errors import GraphError


class VersionCounter:
    """How many times some data was edited in place; shared by the tensors that share the data."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = 0


def record(saved, inputs, outputs):
    """The entries ``check`` will verify, for a node that saved ``saved`` from ``inputs``/``outputs``.

    An entry is ``(position, tensor or None, its array, counter, version now,
    sample view or None, the sampled values as bytes)``, position ``k >= 0``
    for input k and ``-1 - k`` for output k.  A saved array is matched to a
    tensor by identity (the array itself, or a view of it such as a reshape);
    if the forward saved something else too (a kernel's record of its steps),
    every tensor input counts as saved, and an output when its array is also
    saved.  Outputs are kept without their tensor: a node must not keep its
    own outputs alive.
    """
    arrays, opaque = [], False
    for s in saved:
        if type(s) is np.ndarray:
            arrays.append(s)
        elif s is not None:
            opaque = True
    entries = []
    for k, t in enumerate(inputs):
        counter = getattr(t, "_versions", None)
        if counter is None:  # not a tensor
            continue
        data = t.data
        if opaque or _in(data, arrays):
            if t.requires_grad and (t._ctx is None or data.base is not None):  # a leaf (a parameter) or a view
                view = _sample_view(data)
                entries.append((k, t, data, counter, counter.value, view, view.tobytes()))
            else:
                entries.append((k, t, data, counter, counter.value, None, None))
    for k, t in enumerate(outputs):
        if t is not None and _in(t.data, arrays):
            counter = t._versions
            entries.append((-1 - k, None, t.data, counter, counter.value, None, None))
    return tuple(entries)


def _in(data, arrays):
    for a in arrays:
        if a is data or a.base is data:
            return True
    return False


def _sample_view(a):
    """The part of ``a`` that ``check`` compares: a view of about 32 evenly spaced values
    (the first and every k-th, k = size // 32), made once; each check copies just those.
    An array that is neither C- nor F-contiguous (a strided view) is compared whole."""
    f = a.flags
    if not (f.c_contiguous or f.f_contiguous):
        return a
    flat = a.ravel(order="K")  # a view, in memory order
    return flat[::flat.size // 32 or 1]


def check(node):
    """Raise GraphError if a tensor ``node`` saved for backward was edited in place since ``record``."""
    for k, t, array, counter, version, view, sample in node.saved_versions:
        if counter.value != version and (t is None or t.data is array):  # (t.data = other array: not an edit)
            _raise_modified(node, k, t, version, counter.value)
        if view is not None and view.tobytes() != sample:
            _raise_modified(node, k, t, None, counter.value)


def _raise_modified(node, k, t, version, now):
    if k >= 0:
        name = getattr(t, "name", None)
        who = "tensor %r" % name if name else "a leaf tensor" if t.is_leaf else "the output of %s" % t.node.describe()
        what = "input %d (%s, shape %s, %s)" % (k, who, t.data.shape, t.data.dtype)
    else:
        shape, dtype = node.out_meta[-1 - k]
        what = "output %d (shape %s, %s)" % (-1 - k, shape, dtype)
    how = ("version %d when saved, %d now" % (version, now) if version is not None
           else "its values changed: its .data array was edited directly")
    raise GraphError(
        "backward: %s of node %s was modified in place after the forward pass saved it for backward (%s), "
        "so the gradient would mix old and new values. Edit it only after backward (call loss.backward() "
        "before optimizer.step() or any change of .data), or run the forward again after the edit; "
        "to change a value the graph still needs, give the forward a copy (t.clone())."
        % (what, node.describe(), how))

"""Training utilities: gradient clipping, detaching recurrent state, measuring saved memory."""
import types

import numpy as np

from ..autograd import Tensor
from ..backprop import topological_order
from ..errors import ShapeError
from ..kernels import workspace
from ..optim import grad_array

try:
    from numpy.lib.array_utils import byte_bounds as _byte_bounds
except ImportError:  # NumPy < 2
    _byte_bounds = np.byte_bounds

_F64 = np.dtype(np.float64)


def _params(params, who="clip_grad_norm_"):
    if isinstance(params, Tensor):
        return [params]
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()  # a Module: its parameters
    try:
        out = list(params)
    except TypeError:
        raise TypeError("%s: expected a Tensor or an iterable of Tensors (e.g. model.parameters()), got %s"
                        % (who, type(params).__name__)) from None
    for k, p in enumerate(out):
        if not isinstance(p, Tensor):
            raise TypeError("%s: expected Tensors (e.g. model.parameters()), item %d is a %s"
                            % (who, k, type(p).__name__))
    return out


def scaled_norm(values, p=2.0, axis=None):
    """The p-norm of the non-negative float64 array ``values`` (over ``axis``; all of it by default)
    without overflow or underflow.

    Squaring a gradient of 1e200 overflows to inf, and squaring one of 1e-200
    underflows to 0; dividing by the largest element first keeps every power in
    [0, 1], and the norm is that largest element times the p-norm of the rest.
    All-zero, inf and NaN blocks are left unscaled: their norms come out as 0, inf
    and NaN.  An empty array has norm 0.  (``clip_grad_norm_`` uses it for one
    vector, ``grad_trace.norms()`` for every step's (B, H) block.)
    """
    m = np.max(values, axis=axis, keepdims=True, initial=0.0)
    if p == float("inf"):
        return np.squeeze(m, axis)
    m = np.where((m > 0) & np.isfinite(m), m, 1.0)
    with np.errstate(under="ignore"):
        return np.sum((values / m) ** p, axis=axis) ** (1.0 / p) * np.squeeze(m, axis)


def _total_norm(flat, p, narrow):
    """The p-norm of the float64 vector ``flat``, as ``scaled_norm`` computes it.

    Fast path for the Euclidean norm: one sum of squares, ``sqrt(sum(flat * flat))``.  It is
    exact to rounding unless a square overflowed or underflowed, which cannot
    happen for gradients that were float32 or narrower (``narrow``: their squares lie far
    inside float64's range) and is detected otherwise: a sum of squares that is not
    finite, or so small that squares below float64's smallest normal number could
    matter, goes through ``scaled_norm`` instead.

    Speed: only the wider gradients need NumPy's warnings silenced, and switching
    NumPy's error state on and off costs more than the sum of squares of a small
    model (clip_grad_norm_ of an adding-problem training step, float32, T=100,
    B=32, H=64: 7-16% faster without the switch, over two runs of each cell).
    """
    if p == 2.0 and flat.size:
        # a sum of squares, not np.dot: NumPy's BLAS runs a dot product this size on its own
        # thread pool when it may use several threads, and those threads, spinning after the
        # call, then take the cores from tinybptt's kernel threads (a two-thread LSTM training
        # step measured 12.6 ms with np.dot, 6.9 ms with this; a few us slower on one thread)
        if narrow:
            s = float(np.add.reduce(flat * flat))
        else:
            with np.errstate(over="ignore", under="ignore"):  # both are caught below
                s = float(np.add.reduce(flat * flat))
        if flat.size * 1e-290 < s < float("inf"):  # see the docstring: no square lost to under/overflow
            return s ** 0.5
    return float(scaled_norm(np.abs(flat), p))


def clip_grad_norm_(params, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients of ``params`` so that their joint norm is at most ``max_norm``.

    The norm is taken over all gradients together, as if concatenated into one
    vector (``norm_type`` 2 by default; ``float('inf')`` for the max-abs norm),
    computed in float64 without overflow or underflow.  Returns the total norm
    *before* clipping (a float).  Parameters without a gradient are skipped.

    A non-finite total norm (a NaN or inf gradient) raises ``GraphError`` when
    ``error_if_nonfinite``; otherwise, as in PyTorch, the gradients are scaled
    by ``max_norm / total`` all the same (0 for inf, NaN for NaN), silently.
    """
    who = "clip_grad_norm_"
    params = _params(params, who)
    grads = [p for p in params if p.grad is not None]
    try:
        max_norm, norm_type = float(max_norm), float(norm_type)
    except (TypeError, ValueError):
        raise TypeError("%s: max_norm and norm_type must be numbers, got %r and %r"
                        % (who, max_norm, norm_type)) from None
    if not max_norm >= 0:
        raise ValueError("%s: max_norm must be a number >= 0, got %r" % (who, max_norm))
    if not norm_type > 0:
        raise ValueError("%s: norm_type must be > 0 (2.0 for the Euclidean norm, float('inf') for max-abs), "
                         "got %r" % (who, norm_type))
    if not grads:
        return 0.0
    # the gradients laid end to end in float64: one vector, one norm (not a norm per parameter); its
    # buffer is reused from call to call (kernels.workspace) rather than fresh from the OS each step
    arrays = [p.grad for p in grads]
    for j, a in enumerate(arrays):
        if type(a) is not np.ndarray or a.dtype.kind != "f":  # the common case needs no call
            arrays[j] = grad_array(who, next(k for k, p in enumerate(params) if p is grads[j]), grads[j])
    flat = np.concatenate([a.reshape(-1) for a in arrays], out=workspace.empty((sum(a.size for a in arrays),), _F64))
    total = _total_norm(flat, norm_type, all(a.dtype.itemsize <= 4 for a in arrays))
    if not np.isfinite(total) and error_if_nonfinite:
        from ..errors import GraphError
        bad = [p for p, a in zip(grads, arrays) if not np.all(np.isfinite(a))]
        index = {id(p): k for k, p in enumerate(params)}
        raise GraphError("%s: the total gradient norm is %s (gradients of parameters %s, shapes %s, are not "
                         "finite); look for the op that made them with tinybptt.inspect.detect_anomaly()"
                         % (who, total, [index[id(p)] for p in bad], [tuple(p.shape) for p in bad]))
    coef = max_norm / (total + 1e-6)
    if not coef >= 1.0:  # also when coef is NaN (a NaN total), as PyTorch does
        if coef == 0.0:  # an inf total: inf * 0 = NaN, silently
            with np.errstate(invalid="ignore"):
                _scale(grads, arrays, coef)
        else:
            _scale(grads, arrays, coef)
    return total


def _scale(grads, arrays, coef):
    """Each parameter's gradient (``arrays``, in order) times ``coef``, as a new array of its dtype."""
    for p, a in zip(grads, arrays):
        p.grad = np.multiply(a, a.dtype.type(coef))


def clip_grad_value_(params, clip_value):
    """Clamp every gradient element of ``params`` into [-clip_value, clip_value] (in place)."""
    try:
        c = float(clip_value)
    except (TypeError, ValueError):
        raise TypeError("clip_grad_value_: clip_value must be a number, got %r" % (clip_value,)) from None
    if not c >= 0:
        raise ValueError("clip_grad_value_: clip_value must be a number >= 0, got %r" % clip_value)
    for k, p in enumerate(_params(params, "clip_grad_value_")):
        if p.grad is not None:
            p.grad = np.clip(grad_array("clip_grad_value_", k, p), -c, c)


def detach_state(state):
    """Cut a recurrent state from the graph: ``h`` -> ``h.detach()``, ``(h, c)`` -> both detached.

    Call it between chunks of a long sequence (truncated BPTT); forgetting it
    makes the next backward run into the previous chunk's already-freed graph.
    Also accepts None (returned as is), arrays and nested tuples/lists.
    """
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    if isinstance(state, np.ndarray):
        return state
    raise ShapeError("detach_state: expected a Tensor or a tuple of Tensors, got %s" % type(state).__name__)


# --------------------------------------------------------------------------- memory accounting


def _arrays_in(obj, out, seen):
    """Collect the NumPy arrays inside ``obj`` (tuples, lists, dicts, objects with __dict__/__slots__)."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if o is None or isinstance(o, (str, bytes, int, float, bool, type, types.ModuleType,
                                       types.FunctionType, types.BuiltinFunctionType)):
            continue
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            out.append(o)
        elif isinstance(o, Tensor):
            out.append(o.data)
        elif isinstance(o, (tuple, list, set, frozenset)):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
        else:
            for name in getattr(type(o), "__slots__", ()):
                stack.append(getattr(o, name, None))
            d = getattr(o, "__dict__", None)
            if isinstance(d, dict):
                stack.extend(d.values())


def _intervals(arrays):
    iv = []
    for a in arrays:
        if a.size == 0:
            continue
        lo, hi = _byte_bounds(a)
        iv.append((lo, hi))
    iv.sort()
    merged = []
    for lo, hi in iv:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged


def nbytes_of(obj, exclude=()):
    """Bytes of distinct memory held by the arrays inside ``obj``.

    Views of one buffer count once (overlapping byte ranges are merged), so a
    slice ``x[2:5]`` saved next to ``x`` adds nothing.  Memory overlapping any
    array in ``exclude`` (e.g. the layer input and the weights, which exist
    anyway) is not counted.
    """
    arrays = []
    _arrays_in(obj, arrays, set())
    kept = _intervals(arrays)
    if not exclude:
        return int(sum(hi - lo for lo, hi in kept))
    ex = []
    _arrays_in(tuple(exclude), ex, set())
    removed = _intervals(ex)
    total = 0
    for lo, hi in kept:
        n = hi - lo
        for elo, ehi in removed:
            n -= max(0, min(hi, ehi) - max(lo, elo))
        total += n
    return int(total)


def saved_bytes(root, exclude=()):
    """Bytes the graph behind ``root`` keeps for its backward pass (its activation memory).

    Walks every node reachable from ``root`` (a Tensor, e.g. the loss or a
    layer's output) and adds up the distinct memory of what the nodes saved
    (``ctx.save_for_backward`` and attributes stored on ctx).  Shared arrays
    and views are counted once; memory overlapping ``exclude`` (pass the
    parameters and the input: they exist without the graph) is not counted.
    Call it after forward and before backward (backward frees the saved values)::

        out, _ = lstm(x)
        n = saved_bytes(out, exclude=[x, *lstm.parameters()])
    """
    if not isinstance(root, Tensor):
        raise TypeError("saved_bytes: expected a Tensor (a loss or layer output), got %s" % type(root).__name__)
    held = []
    for node in topological_order(root):
        if node.freed:
            continue
        held.append(node.saved_tensors)
        held.append({k: v for k, v in node.__dict__.items() if k not in ("trace", "traces", "stats", "backend")})
    return nbytes_of(held, exclude=exclude)

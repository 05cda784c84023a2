"""A node-by-node walk of the graph behind a loss, in backward order.

``walk(loss)`` runs ``loss.backward()`` with a ``tinybptt.backward_hook`` that
records, for every node the backward pass reaches, the gradient of the node's
outputs.  Each node becomes a ``NodeRecord``: op, label, time step, output
shape, the norm of the gradient that reached it, how many of its entries are
subnormal, and a *status*:

``"ok"``         a normal, non-zero gradient arrived;
``"zero"``       the gradient is exactly zero for a structural reason (a ReLU
                 that is off, a multiplication by an exact zero, ...);
``"underflow"``  the gradient holds subnormal numbers, or entries that would be
                 non-zero in exact arithmetic were flushed to zero on the way
                 (found by replaying the consumer's backward with its incoming
                 gradient rescaled by an exact power of two, see below);
``"no-path"``    the node is part of the graph you passed as ``roots`` but there
                 is no path from it to the loss: no gradient can ever reach it;
``"nonfinite"``  the gradient holds Inf or NaN (see ``detect_anomaly``).

How an underflow is told from an exact zero.  Backward rules are linear in the
incoming gradient, so running a node's backward on ``g * 2**e`` gives exactly
``2**e`` times the true result, without the underflow.  While the real backward
runs, the walk also replays each node's backward (on a copy of its context) with
``g`` scaled up so that its largest entry is about ``2**(emax/2)``.  An input
entry whose rescaled contribution is non-zero but whose true size
(rescaled / 2**e) is below the smallest normal number is one that underflowed.
If the real gradient there is 0, it was *flushed*.  A node whose gradient is all
zero because everything upstream of it underflowed is marked ``"underflow"``
too, with a note naming the node where it happened.

Coarse recurrent modes fuse a whole step (``mode="cell"``: one node per step,
tagged with its step, so the walk lists them as they are) or the whole sequence
(``mode="sequence"``) into one node.  A sequence node is expanded automatically:
the per-step gradients its backward deposits (the layer's ``grad_trace``) become
one ``"step"`` record per time step (``h``, and ``c`` for the LSTM) right after
the node.  ``modules=[layer]`` does the same from ``layer.grad_trace`` (also for
cell mode and checkpointed layers).  Step records are judged from the trace alone:
subnormal entries mean underflow, and an all-zero step right after a step whose
largest entry was below sqrt(smallest normal) counts as flushed.
"""
import copy
import json
import math
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import numpy as np

from .. import autograd
from ..autograd import Tensor, backward_hook, topological_order
from ..errors import GraphError
from . import numerics

STATUSES = ("ok", "zero", "underflow", "no-path", "nonfinite")

#: Ops whose backward is never replayed for underflow detection (fused nodes
#: that may write per-step traces as a side effect; their steps are judged from
#: the trace instead).
NO_REPLAY_SUFFIXES = ("sequence", "checkpointed")


@dataclass
class NodeRecord:
    """What the backward pass did at one node (or leaf, or time step of a fused node)."""

    order: Optional[int]  # position in the backward order (0 = the loss's node); None for no-path nodes
    kind: str  # "node", "leaf" or "step"
    op: str  # op name ("leaf" for leaves, "h"/"c" for the steps of a fused layer)
    label: Optional[str]
    step: Optional[int]
    shape: tuple  # shape of the (first) output
    dtype: str
    norm: Optional[float]  # Euclidean norm of the gradient that reached it (all outputs together)
    log10_norm: Optional[float]  # log10 of that norm, finite even where the norm itself underflows
    max_abs: Optional[float]
    subnormal: int  # entries of that gradient that are subnormal
    flushed: int  # entries that were flushed to zero by underflow on the way
    status: str
    id: Optional[int] = None  # the node's id (Context.id); None for leaves and steps
    name: Optional[str] = None  # parameter name for leaves passed in ``params``
    note: str = ""
    consumers: List[int] = field(default_factory=list)  # ids of the nodes that use its outputs

    def to_dict(self):
        d = asdict(self)
        d["shape"] = list(self.shape)
        for k in ("norm", "log10_norm", "max_abs"):
            v = d[k]
            if v is not None and not math.isfinite(v):
                d[k] = str(v)  # JSON has no inf/nan
        return d


class Walk:
    """The result of ``walk()``: a list of ``NodeRecord`` in backward order.

    ``records``      every record (nodes in backward order, then steps of fused
                     layers right after their node, then no-path nodes, then leaves).
    ``table()``      a printable table; ``print(w)`` prints it.
    ``to_dicts()``   the records as a list of dicts; ``to_json()`` as JSON text.
    ``summary()``    counts per status and the number of subnormal values met.
    """

    def __init__(self, records, loss_dtype):
        self.records = records
        self.dtype = str(loss_dtype)

    def __iter__(self):
        return iter(self.records)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, k):
        return self.records[k]

    def nodes(self, op=None, label=None, step=None, kind=None, status=None):
        """Records matching every given field (``op`` may also be a tuple of names)."""
        out = []
        for r in self.records:
            if op is not None and (r.op not in op if isinstance(op, tuple) else r.op != op):
                continue
            if label is not None and r.label != label:
                continue
            if step is not None and r.step != step:
                continue
            if kind is not None and r.kind != kind:
                continue
            if status is not None and r.status != status:
                continue
            out.append(r)
        return out

    def by_id(self, node_id):
        """The record of the node with ``Context.id == node_id``."""
        for r in self.records:
            if r.id == node_id:
                return r
        raise KeyError(node_id)

    def summary(self):
        """``{"ok": n, "zero": n, "underflow": n, "no-path": n, "nonfinite": n, "subnormal_values": n, ...}``."""
        s = {k: 0 for k in STATUSES}
        for r in self.records:
            s[r.status] = s.get(r.status, 0) + 1
        s["subnormal_values"] = sum(r.subnormal for r in self.records)
        s["flushed_values"] = sum(r.flushed for r in self.records)
        s["records"] = len(self.records)
        return s

    def to_dicts(self):
        return [r.to_dict() for r in self.records]

    def to_json(self, **kw):
        return json.dumps({"dtype": self.dtype, "summary": self.summary(), "records": self.to_dicts()}, **kw)

    def table(self, max_rows=60, kinds=None):
        """The walk as text: one line per record (the first ``max_rows``; None for all)."""
        from ..display import format_table

        rows = []
        recs = [r for r in self.records if kinds is None or r.kind in kinds]
        shown = recs if max_rows is None else recs[:max_rows]
        for r in shown:
            rows.append([
                "-" if r.order is None else str(r.order),
                r.op if r.kind != "step" else "  %s" % r.op,
                r.name or (r.label or ""),
                "" if r.step is None else str(r.step),
                "x".join(str(n) for n in r.shape) or "()",
                "-" if r.log10_norm is None else numerics.fmt_pow10(r.log10_norm),
                r.status,
                str(r.subnormal) if r.subnormal else "",
                r.note,
            ])
        text = format_table(["#", "op", "label", "t", "shape", "|grad|", "status", "subn", "note"], rows,
                            align="rllrrrll l")
        if max_rows is not None and len(recs) > max_rows:
            text += "\n... %d more records (table(max_rows=None) shows all)" % (len(recs) - max_rows)
        s = self.summary()
        text += "\n%d records: %s; %d subnormal values met, %d flushed to zero" % (
            s["records"], ", ".join("%d %s" % (s[k], k) for k in STATUSES if s[k]), s["subnormal_values"],
            s["flushed_values"])
        return text

    def __str__(self):
        return self.table()

    def __repr__(self):
        return "<Walk of %d records: %s>" % (len(self.records), self.summary())


def _key(t):
    return ("leaf", id(t)) if t._ctx is None else (id(t._ctx), t._index)


def _replayable(node):
    op = node.op
    if any(op.endswith(s) for s in NO_REPLAY_SUFFIXES):
        return False
    return getattr(node.fn, "inspect_replay", True)


def _graph_nodes(tensors):
    """All nodes reachable from any of ``tensors`` (topological order of each, concatenated, de-duplicated)."""
    seen, out = set(), []
    for t in tensors:
        if not isinstance(t, Tensor):
            continue
        for n in topological_order(t):
            if id(n) not in seen:
                seen.add(id(n))
                out.append(n)
    return out


def _flatten_tensors(obj):
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        out = []
        for o in obj:
            out.extend(_flatten_tensors(o))
        return out
    if isinstance(obj, dict):
        return _flatten_tensors(list(obj.values()))
    return []


def _param_names(params):
    names = {}
    if params is None:
        return names
    if hasattr(params, "named_parameters"):
        params = dict(params.named_parameters())
    items = params.items() if isinstance(params, dict) else params
    for name, t in items:
        names[id(t)] = name
    return names


def _stats(arrays):
    """(log10 norm, max abs, subnormal count, nonfinite?, all zero?) over a list of arrays."""
    arrays = [np.asarray(a) for a in arrays if a is not None]
    if not arrays:
        return -math.inf, 0.0, 0, False, True
    flat = np.concatenate([a.astype(np.float64, copy=False).ravel() for a in arrays])
    finite = bool(np.all(np.isfinite(flat)))
    sub = sum(numerics.count_subnormal(a) for a in arrays)
    mx = numerics.max_abs(flat)
    return numerics.log10_norm(flat), mx, sub, not finite, mx == 0.0


def walk(loss, roots=None, grad=None, params=None, modules=(), detect_underflow=True, retain_graph=False):
    """Backpropagate from ``loss`` and record what reached every node, in backward order.

    Parameters
    ----------
    loss : Tensor
        Where the backward pass starts (normally a scalar; pass ``grad`` otherwise).
    roots : Tensor or list of Tensors, optional
        Other tensors whose graph should be listed too.  Nodes reachable from them
        but not from ``loss`` are reported as ``"no-path"`` (e.g. the outputs of
        steps the loss ignores).
    grad : array-like, optional
        Gradient to start from (as in ``Tensor.backward``).
    params : dict name -> Tensor, list of (name, Tensor), or a Module, optional
        Names for leaf tensors in the table.
    modules : recurrent layers, optional
        Layers run in ``mode="cell"`` or ``"sequence"``; each one's ``grad_trace``
        is expanded into one ``"step"`` record per layer and time step.
    detect_underflow : bool
        Replay each node's backward at a rescaled gradient to tell flushed
        (underflowed) zeros from exact ones.  Roughly doubles the backward cost.
    retain_graph : bool
        Passed to ``backward``.

    Returns
    -------
    Walk
        Leaves' ``.grad`` are accumulated as usual by the backward pass; their records
        show only what this backward added.
    """
    if not isinstance(loss, Tensor):
        raise GraphError("inspect.walk: loss must be a tinybptt Tensor, got %s" % type(loss).__name__)
    if not loss.requires_grad:
        raise GraphError(
            "inspect.walk: the loss does not require grad (op=%s, shape %s); build it from tensors "
            "with requires_grad=True outside no_grad()" % (loss.op, tuple(loss.shape)))
    loss_nodes = topological_order(loss)
    loss_ids = {id(n) for n in loss_nodes}
    extra = _flatten_tensors(roots)
    graph_nodes = list(loss_nodes) + [n for n in _graph_nodes(extra) if id(n) not in loss_ids]

    # consumers and leaves
    consumers = {}
    leaves = {}
    for n in graph_nodes:
        for t in n.inputs or ():
            if not isinstance(t, Tensor) or not t.requires_grad:
                continue
            consumers.setdefault(_key(t), []).append(n)
            if t._ctx is None:
                leaves.setdefault(id(t), t)
    for t in extra + [loss]:
        if t._ctx is None and t.requires_grad:
            leaves.setdefault(id(t), t)
    leaf_before = {k: (None if t.grad is None else np.array(t.grad, copy=True)) for k, t in leaves.items()}

    recorded = {}
    tiny_true = {}  # key -> bool mask of entries whose true contribution is below the normal range
    flushers = {}  # key -> ids of consumer nodes where such contributions were made

    def replay(node, grads_out):
        m = max((numerics.max_abs(g) for g in grads_out if g is not None), default=0.0)
        if m == 0.0 or not math.isfinite(m):
            return
        dt = next(g.dtype for g in grads_out if g is not None)
        target = (np.finfo(dt).maxexp // 2) if dt.kind == "f" else 0
        e = numerics.power_of_two_scale(m) + target
        scaled = tuple(None if g is None else np.ldexp(g, e).astype(g.dtype, copy=False) for g in grads_out)
        try:
            with np.errstate(all="ignore"):
                grads_in = node.fn.backward(copy.copy(node), *scaled)
        except Exception:  # a backward that cannot be replayed is simply not checked
            return
        if not isinstance(grads_in, tuple):
            grads_in = (grads_in,)
        for t, c, need in zip(node.inputs, grads_in, node.needs_input_grad):
            if not need or c is None or not isinstance(t, Tensor):
                continue
            c = np.asarray(c)
            tiny = np.finfo(t.dtype).tiny
            thresh = math.ldexp(float(tiny), e)
            with np.errstate(all="ignore"):
                a = np.abs(c.astype(np.float64))
                mask = (a > 0) & (a < thresh)
            if mask.shape != t.shape:
                try:
                    mask = np.broadcast_to(mask, t.shape)
                except ValueError:
                    continue
            k = _key(t)
            tiny_true[k] = mask if k not in tiny_true else (tiny_true[k] | mask)
            if mask.any():
                flushers.setdefault(k, set()).add(node.id)

    slots = {}  # id(node) -> the TraceSlot a fused sequence node fills during its backward

    def hook(node, grads_out):
        recorded[id(node)] = grads_out
        slot = node.__dict__.get("trace") if hasattr(node, "__dict__") else None
        if slot is not None and hasattr(slot, "h"):
            slots[id(node)] = slot
        if detect_underflow and _replayable(node):
            replay(node, grads_out)

    with backward_hook(hook):
        loss.backward(grad, retain_graph=retain_graph)

    records = []
    status_of = {}  # id(node) -> (status, all_zero)

    def classify(key_of_output, grads, node_consumers):
        lg, mx, sub, nonfinite, allzero = _stats(grads)
        flushed = 0
        for k, g in key_of_output:
            mask = tiny_true.get(k)
            if mask is not None and g is not None:
                flushed += int(np.count_nonzero(mask & (np.asarray(g) == 0)))
        note = ""
        if nonfinite:
            status = "nonfinite"
        elif sub or flushed:
            status = "underflow"
            where = sorted(set().union(*[flushers.get(k, set()) for k, _ in key_of_output]))
            if flushed:
                note = "%d flushed to 0 in backward of #%s" % (flushed, ",".join(map(str, where)))
        elif allzero:
            status = "zero"
            ups = [c for c in node_consumers if status_of.get(id(c), ("", False)) == ("underflow", True)]
            if ups:
                status = "underflow"
                note = "zero because the gradient underflowed upstream (#%s)" % ",".join(str(c.id) for c in ups)
        else:
            status = "ok"
        return lg, mx, sub, flushed, status, note, allzero

    order = 0
    expanded = set()
    for n in loss_nodes:
        grads = recorded.get(id(n))
        shape = tuple(n.out_meta[0][0]) if n.out_meta and n.out_meta[0][0] is not None else ()
        dtype = str(n.out_meta[0][1]) if n.out_meta and n.out_meta[0][1] is not None else ""
        cons = []
        for k in range(len(n.out_meta)):
            cons.extend(consumers.get((id(n), k), []))
        if grads is None:
            rec = NodeRecord(order, "node", n.op, n.label, n.step, shape, dtype, 0.0, -math.inf, 0.0, 0, 0, "zero",
                             id=n.id, note="no gradient arrived (a backward returned None)",
                             consumers=[c.id for c in cons])
            status_of[id(n)] = ("zero", True)
        else:
            keys = [((id(n), k), g) for k, g in enumerate(grads)]
            lg, mx, sub, flushed, status, note, allzero = classify(keys, list(grads), cons)
            rec = NodeRecord(order, "node", n.op, n.label, n.step, shape, dtype,
                             (10 ** lg if math.isfinite(lg) else (0.0 if lg < 0 else lg)), lg, mx, sub, flushed,
                             status, id=n.id, note=note, consumers=[c.id for c in cons])
            status_of[id(n)] = (status, allzero)
        records.append(rec)
        order += 1
        claimed = False
        for m in modules or ():
            if id(m) not in expanded and _module_matches(m, n):
                expanded.add(id(m))
                claimed = True
                records.extend(_trace_records(m))
        if not claimed and id(n) in slots and getattr(slots[id(n)], "h", None) is not None:
            sl = slots[id(n)]
            records.extend(_trace_arrays(n.label or n.op, sl.h[None], None if sl.c is None else sl.c[None],
                                         per_layer_label=False))

    for m in modules or ():
        if id(m) not in expanded:
            records.extend(_trace_records(m))
    for n in graph_nodes:
        if id(n) in loss_ids:
            continue
        shape = tuple(n.out_meta[0][0]) if n.out_meta and n.out_meta[0][0] is not None else ()
        dtype = str(n.out_meta[0][1]) if n.out_meta and n.out_meta[0][1] is not None else ""
        cons = []
        for k in range(len(n.out_meta)):
            cons.extend(consumers.get((id(n), k), []))
        records.append(NodeRecord(None, "node", n.op, n.label, n.step, shape, dtype, None, None, None, 0, 0,
                                  "no-path", id=n.id, note="no path to the loss", consumers=[c.id for c in cons]))

    names = _param_names(params)
    for k, t in leaves.items():
        cons = consumers.get(("leaf", k), [])
        reachable = any(id(c) in loss_ids for c in cons) or t is loss
        name = names.get(k)
        if not reachable:
            records.append(NodeRecord(None, "leaf", "leaf", None, None, tuple(t.shape), str(t.dtype), None, None,
                                      None, 0, 0, "no-path", name=name, note="no path to the loss",
                                      consumers=[c.id for c in cons]))
            continue
        before = leaf_before[k]
        g = t.grad if before is None or t.grad is None else t.grad - before
        lg, mx, sub, flushed, status, note, _ = classify([(("leaf", k), g)], [g], cons)
        records.append(NodeRecord(order, "leaf", "leaf", None, None, tuple(t.shape), str(t.dtype),
                                  (10 ** lg if math.isfinite(lg) else (0.0 if lg < 0 else lg)), lg, mx, sub, flushed,
                                  status, name=name, note=note, consumers=[c.id for c in cons]))
        order += 1
    return Walk(records, loss.dtype)


# --------------------------------------------------------------------------- fused layers


def _module_label(m):
    return getattr(m, "label", None) or type(m).__name__.lower()


def _module_matches(m, node):
    """Is ``node`` the fused node of layer ``m``?  (Same label prefix and a sequence/cell op.)"""
    d = node.__dict__ if hasattr(node, "__dict__") else {}
    if any(v is m for v in d.values()):
        return True
    if not node.op.endswith(("sequence", "cell", "step", "checkpointed")):
        return False
    return (node.label or "").split(".")[0] == _module_label(m).split(".")[0]


def _trace_records(m):
    """One "step" record per (layer, time step) of a layer's grad_trace, h then c."""
    tr = getattr(m, "grad_trace", None)
    if tr is None or getattr(tr, "h", None) is None:
        return []
    return _trace_arrays(_module_label(m), tr.h, getattr(tr, "c", None))


def _trace_arrays(label, h, c, per_layer_label=True):
    """Step records from trace arrays h (and c) of shape (L, T, B, H), last step first."""
    out = []
    names = [("h", h)] + ([("c", c)] if c is not None else [])
    for name, arr in names:
        arr = np.asarray(arr)
        L, T = arr.shape[0], arr.shape[1]
        for l in range(L):
            lab = "%s.l%d" % (label, l) if per_layer_label else label
            prev_max = None
            for t in range(T - 1, -1, -1):
                g = arr[l, t]
                lg = numerics.log10_norm(g)
                mx = numerics.max_abs(g)
                sub = numerics.count_subnormal(g)
                note = ""
                if not np.all(np.isfinite(g)):
                    status = "nonfinite"
                elif sub:
                    status = "underflow"
                elif mx == 0.0:
                    status = "zero"
                    # heuristic for fused nodes: the step after was already tiny -> flushed
                    if prev_max is not None and 0.0 < prev_max < math.sqrt(np.finfo(arr.dtype).tiny):
                        status = "underflow"
                        note = "zero after a gradient of %s at t=%d" % (numerics.fmt_sci(prev_max), t + 1)
                    elif prev_max == 0.0 and out and out[-1].status == "underflow":
                        status = "underflow"
                        note = "zero because the gradient underflowed at a later step"
                else:
                    status = "ok"
                out.append(NodeRecord(None, "step", name, lab, t, tuple(g.shape), str(arr.dtype),
                                      (10 ** lg if math.isfinite(lg) else 0.0), lg, mx, sub, 0, status, note=note))
                prev_max = mx
    return out

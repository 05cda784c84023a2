"""A node-by-node walk of the graph behind a loss, in backward order.

``walk(loss)`` runs ``loss.backward()`` with a ``tinybptt.backward_hook`` that
records, for every node the backward pass reaches, the gradient of the node's
outputs.  Each node becomes a ``NodeRecord`` (``inspect/records.py``): op,
label, time step, output shape, the norm of the gradient that reached it, how
many of its entries are subnormal, and a *status* (ok, zero, underflow,
no-path, nonfinite).

An underflow is told from an exact zero by replaying each node's backward at a
rescaled gradient (``inspect/underflow.py``).  A node whose gradient is all
zero because everything upstream of it underflowed is marked ``"underflow"``
too, with a note naming the node where it happened.

Coarse recurrent modes fuse a whole step (``mode="cell"``: one node per step,
tagged with its step, so the walk lists them as they are) or the whole sequence
(``mode="sequence"``) into one node.  A sequence node is expanded automatically:
the per-step gradients its backward deposits (``tinybptt.nn.trace.trace_slots``)
become one ``"step"`` record per time step (``h``, and ``c`` for the LSTM) right
after the node.  ``modules=[layer]`` does the same from ``layer.grad_trace``
(also for cell mode and checkpointed layers).  Step records are judged from the
trace alone: subnormal entries mean underflow, and an all-zero step right after
a step whose largest entry was below sqrt(smallest normal) counts as flushed.
"""
import math

import numpy as np

from ..autograd import Tensor, backward_hook
from ..backprop import topological_order
from ..errors import GraphError
from ..nn.trace import trace_slots
from . import numerics
from .records import NodeRecord, Walk  # noqa: F401  (Walk re-exported: inspect.walk.Walk)
from .underflow import UnderflowProbe, grad_key


def walk(loss, roots=None, grad=None, params=None, modules=(), detect_underflow=True, retain_graph=False,
         model=None):
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
        Names for leaf tensors in the table, as given.
    model : Module, optional
        Names its parameters in the table as ``<label>.<name>``, e.g.
        ``lstm.weight_hh_l0`` for ``walk(loss, model=lstm)``.
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
    _check_loss(loss)
    graph = _Graph(loss, _flatten_tensors(roots))
    seen = _run_backward(loss, graph, grad, retain_graph, detect_underflow)
    names = _param_names(params)
    names.update(_model_names(model))
    judge = _Judge(seen.probe, graph, names)
    records = _loss_node_records(graph, seen, judge, modules)
    records += _no_path_records(graph)
    records += _leaf_records(graph, judge, names, first_order=len(graph.loss_nodes))
    return Walk(records, loss.dtype)


def _check_loss(loss):
    if not isinstance(loss, Tensor):
        raise GraphError("inspect.walk: loss must be a tinybptt Tensor, got %s" % type(loss).__name__)
    if not loss.requires_grad:
        raise GraphError(
            "inspect.walk: the loss does not require grad (op=%s, shape %s); build it from tensors "
            "with requires_grad=True outside no_grad()" % (loss.op, tuple(loss.shape)))


# --------------------------------------------------------------------------- the graph


class _Graph:
    """The nodes behind ``loss`` (in backward order) and behind the extra ``roots``, with
    who consumes what, the leaves, and each leaf's ``.grad`` before the walk."""

    def __init__(self, loss, extra):
        self.loss = loss
        self.loss_nodes = topological_order(loss)
        self.loss_ids = {id(n) for n in self.loss_nodes}
        self.other_nodes = [n for n in _graph_nodes(extra) if id(n) not in self.loss_ids]
        self.consumers = {}  # grad_key(tensor) -> nodes that take it as an input
        self.leaves = {}  # id(tensor) -> leaf tensor that requires grad
        self.zero_factors = {}  # id(mul node) -> [(id of the node making the input or None, the input)] if all-zero
        self.dead_relus = set()  # ids of relu nodes whose input is <= 0 everywhere
        for n in self.loss_nodes + self.other_nodes:
            if n.op == "mul":
                self._note_zero_factors(n)
            elif n.op == "relu" and n.inputs and isinstance(n.inputs[0], Tensor) and np.all(n.inputs[0].data <= 0):
                self.dead_relus.add(id(n))
            for t in n.inputs or ():
                if isinstance(t, Tensor) and t.requires_grad:
                    self.consumers.setdefault(grad_key(t), []).append(n)
                    if t._ctx is None:
                        self.leaves.setdefault(id(t), t)
        for t in extra + [loss]:
            if t._ctx is None and t.requires_grad:
                self.leaves.setdefault(id(t), t)
        self.leaf_grad_before = {k: (None if t.grad is None else np.array(t.grad, copy=True))
                                 for k, t in self.leaves.items()}

    def _note_zero_factors(self, n):
        """Remember the inputs of product node ``n`` that are exactly zero: whatever else it
        multiplies receives a zero gradient, for a structural reason the walk can name."""
        for t in n.inputs or ():
            a = t.data if isinstance(t, Tensor) else t
            if isinstance(a, (np.ndarray, float, int)) and not np.any(a):
                src = t._ctx if isinstance(t, Tensor) else None
                self.zero_factors.setdefault(id(n), []).append((None if src is None else id(src), t))

    def node_consumers(self, n):
        """The nodes that use any output of node ``n``."""
        out = []
        for k in range(len(n.out_meta)):
            out.extend(self.consumers.get((id(n), k), []))
        return out


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
        return [t for o in obj for t in _flatten_tensors(o)]
    if isinstance(obj, dict):
        return _flatten_tensors(list(obj.values()))
    return []


def _model_names(model):
    """``{id(parameter): "lstm.weight_hh_l0", ...}`` for the parameters of ``model``."""
    if model is None:
        return {}
    prefix = getattr(model, "label", None) or type(model).__name__.lower()
    return {id(p): "%s.%s" % (prefix, name) for name, p in model.named_parameters()}


def _param_names(params):
    if params is None:
        return {}
    if hasattr(params, "named_parameters"):
        params = dict(params.named_parameters())
    items = params.items() if isinstance(params, dict) else params
    return {id(t): name for name, t in items}


def _shape_dtype(n):
    """Shape and dtype name of node ``n``'s first output."""
    if not n.out_meta or n.out_meta[0][0] is None:
        return (), ""
    return tuple(n.out_meta[0][0]), str(n.out_meta[0][1])


# --------------------------------------------------------------------------- the backward pass


class _Seen:
    """What the hooked backward pass saw: each node's output gradients and trace slots."""

    def __init__(self, probe):
        self.grads = {}  # id(node) -> tuple of output gradients
        self.slots = {}  # id(node) -> the TraceSlots a fused recurrent node fills
        self.probe = probe


def _run_backward(loss, graph, grad, retain_graph, detect_underflow):
    seen = _Seen(UnderflowProbe())

    def hook(node, grads_out):
        seen.grads[id(node)] = grads_out
        slots = trace_slots(node)
        if slots:
            seen.slots[id(node)] = slots
        if detect_underflow:
            seen.probe.replay(node, grads_out)

    with backward_hook(hook):
        loss.backward(grad, retain_graph=retain_graph)
    return seen


# --------------------------------------------------------------------------- judging a gradient


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


def _norm_from_log(lg):
    return 10 ** lg if math.isfinite(lg) else (0.0 if lg < 0 else lg)


class _Judge:
    """Gives each gradient its status, remembering every node's (status, all zero) so that a
    zero caused by an underflow further up (nearer the loss) is called an underflow too."""

    def __init__(self, probe, graph, names):
        self.probe, self.graph, self.names = probe, graph, names
        self.status_of = {}  # id(node) -> (status, all_zero)

    def judge(self, keyed_grads, consumers, node=None):
        """``dict`` of NodeRecord fields for the gradients ``[(key, g), ...]`` of one node or leaf."""
        lg, mx, sub, nonfinite, allzero = _stats([g for _, g in keyed_grads])
        flushed = self.probe.flushed(keyed_grads)
        note = ""
        if nonfinite:
            status = "nonfinite"
        elif sub or flushed:
            status = "underflow"
            if flushed:
                where = self.probe.where([k for k, _ in keyed_grads])
                note = "%d flushed to 0 in backward of #%s" % (flushed, ",".join(map(str, where)))
        elif allzero:
            status = "zero"
            ups = [c for c in consumers if self.status_of.get(id(c)) == ("underflow", True)]
            if ups:
                status = "underflow"
                note = "zero because the gradient underflowed upstream (#%s)" % ",".join(str(c.id) for c in ups)
            else:
                note = self.why_zero(node, consumers)
        else:
            status = "ok"
        fields = dict(norm=_norm_from_log(lg), log10_norm=lg, max_abs=mx, subnormal=sub, flushed=flushed,
                      status=status, note=note)
        return fields, allzero

    def why_zero(self, node, consumers):
        """The structural reason for an exact zero: a product with an all-zero factor, or a ReLU that is off."""
        for c in consumers:
            if id(c) in self.graph.dead_relus:
                return "exact zero: %s is off (its input is <= 0 everywhere)" % c.describe()
            for src, t in self.graph.zero_factors.get(id(c), ()):
                if node is not None and src == id(node):
                    continue  # that factor is this node's own output
                if node is not None and node.role == "f" and c.role == "c":
                    return _forget_gate_note(node.step)
                return "exact zero: %s multiplies it by %s, which is all zeros" % (c.describe(), self.describe(t))
        return ""

    def describe(self, t):
        if not isinstance(t, Tensor):
            return "a constant"
        if t._ctx is not None:
            return t._ctx.describe()
        return self.names.get(id(t)) or "a leaf %s" % ("x".join(str(n) for n in t.shape) or "()")


def _forget_gate_note(t):
    """Why the forget gate of step t received no gradient: the cell state it multiplies is 0."""
    if t is None:
        return "exact zero: the forget gate multiplies the incoming cell state c = 0, so no gradient reaches it"
    return ("exact zero: f_%s multiplies c_%s = 0%s, so no gradient reaches the forget gate"
            % (t, "{%d}" % (t - 1), " (the initial cell state)" if t == 0 else ""))


# --------------------------------------------------------------------------- records


def _loss_node_records(graph, seen, judge, modules):
    """The nodes behind the loss in backward order, each followed by the steps of a fused layer."""
    records, expanded = [], set()
    for order, n in enumerate(graph.loss_nodes):
        records.append(_node_record(n, order, graph, seen, judge))
        claimed = [m for m in modules or () if id(m) not in expanded and _module_matches(m, n)]
        for m in claimed:
            expanded.add(id(m))
            records.extend(_trace_records(m))
        if not claimed and id(n) in seen.slots:
            records.extend(_slot_records(n, seen.slots[id(n)]))
    for m in modules or ():
        if id(m) not in expanded:
            records.extend(_trace_records(m))
    return records


def _node_record(n, order, graph, seen, judge):
    shape, dtype = _shape_dtype(n)
    cons = graph.node_consumers(n)
    grads = seen.grads.get(id(n))
    common = dict(id=n.id, consumers=[c.id for c in cons], role=n.role)
    if grads is None:
        judge.status_of[id(n)] = ("zero", True)
        return NodeRecord(order, "node", n.op, n.label, n.step, shape, dtype, 0.0, -math.inf, 0.0, 0, 0, "zero",
                          note="no gradient arrived (a backward returned None)", **common)
    fields, allzero = judge.judge([((id(n), k), g) for k, g in enumerate(grads)], cons, node=n)
    judge.status_of[id(n)] = (fields["status"], allzero)
    return NodeRecord(order, "node", n.op, n.label, n.step, shape, dtype, **fields, **common)


def _no_path_records(graph):
    """Nodes of the extra roots' graphs that the loss does not depend on."""
    out = []
    for n in graph.other_nodes:
        shape, dtype = _shape_dtype(n)
        out.append(NodeRecord(None, "node", n.op, n.label, n.step, shape, dtype, None, None, None, 0, 0, "no-path",
                              id=n.id, note="no path to the loss", role=n.role,
                              consumers=[c.id for c in graph.node_consumers(n)]))
    return out


def _leaf_records(graph, judge, names, first_order):
    """The leaves, with what this backward pass added to their ``.grad``."""
    out, order = [], first_order
    for k, t in graph.leaves.items():
        cons = graph.consumers.get(("leaf", k), [])
        common = dict(name=names.get(k), consumers=[c.id for c in cons])
        if not (t is graph.loss or any(id(c) in graph.loss_ids for c in cons)):
            out.append(NodeRecord(None, "leaf", "leaf", None, None, tuple(t.shape), str(t.dtype), None, None,
                                  None, 0, 0, "no-path", note="no path to the loss", **common))
            continue
        before = graph.leaf_grad_before[k]
        g = t.grad if before is None or t.grad is None else t.grad - before
        fields, _ = judge.judge([(("leaf", k), g)], cons)
        out.append(NodeRecord(order, "leaf", "leaf", None, None, tuple(t.shape), str(t.dtype), **fields, **common))
        order += 1
    return out


# --------------------------------------------------------------------------- fused layers


def _module_label(m):
    return getattr(m, "label", None) or type(m).__name__.lower()


def _module_matches(m, node):
    """Is ``node`` the fused node of layer ``m``?  (A sequence/cell op with the layer's label prefix.)"""
    if not node.op.endswith(("sequence", "cell", "step", "checkpointed")):
        return False
    return (node.label or "").split(".")[0] == _module_label(m).split(".")[0]


def _trace_records(m):
    """One "step" record per (layer, time step) of a layer's grad_trace, h then c."""
    tr = getattr(m, "grad_trace", None)
    if tr is None or getattr(tr, "h", None) is None:
        return []
    return _trace_arrays(_module_label(m), tr.h, getattr(tr, "c", None))


def _slot_records(node, slots):
    """Step records from the trace slots a fused node filled: one slot, or one per layer."""
    filled = [s for s in slots if s.h is not None]
    if not filled:
        return []
    if len(slots) == 1:
        s = filled[0]
        return _trace_arrays(node.label or node.op, s.h[None], None if s.c is None else s.c[None],
                             per_layer_label=False)
    h = np.stack([s.h for s in filled])
    c = None if filled[0].c is None else np.stack([s.c for s in filled])
    return _trace_arrays(node.label or node.op, h, c)


def _trace_arrays(label, h, c, per_layer_label=True):
    """Step records from trace arrays h (and c) of shape (L, T, B, H), last step first."""
    out = []
    for name, arr in [("h", h)] + ([("c", c)] if c is not None else []):
        arr = np.asarray(arr)
        for l in range(arr.shape[0]):
            lab = "%s.l%d" % (label, l) if per_layer_label else label
            out.extend(_steps_of(name, lab, arr[l]))
    return out


def _steps_of(name, label, arr):
    """Records of the (T, B, H) per-step gradients ``arr`` of one state, from t = T-1 down to 0."""
    out, prev_max = [], None
    sqrt_tiny = math.sqrt(np.finfo(arr.dtype).tiny)
    for t in range(arr.shape[0] - 1, -1, -1):
        g = arr[t]
        lg, mx, sub = numerics.log10_norm(g), numerics.max_abs(g), numerics.count_subnormal(g)
        note = ""
        if not np.all(np.isfinite(g)):
            status = "nonfinite"
        elif sub:
            status = "underflow"
        elif mx != 0.0:
            status = "ok"
        elif prev_max is not None and 0.0 < prev_max < sqrt_tiny:  # the step after was already tiny: flushed
            status, note = "underflow", "zero after a gradient of %s at t=%d" % (numerics.fmt_sci(prev_max), t + 1)
        elif prev_max == 0.0 and out and out[-1].status == "underflow":
            status, note = "underflow", "zero because the gradient underflowed at a later step"
        else:
            status = "zero"
        out.append(NodeRecord(None, "step", name, label, t, tuple(g.shape), str(arr.dtype),
                              (10 ** lg if math.isfinite(lg) else 0.0), lg, mx, sub, 0, status, note=note, role=name))
        prev_max = mx
    return out

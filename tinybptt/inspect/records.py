"""What ``walk()`` returns: a ``NodeRecord`` per node, leaf or time step, and the ``Walk`` table.

A record's ``status`` is one of:

``"ok"``         a normal, non-zero gradient arrived;
``"zero"``       the gradient is exactly zero for a structural reason (a ReLU
                 that is off, a multiplication by an exact zero, ...);
``"underflow"``  the gradient holds subnormal numbers, or entries that would be
                 non-zero in exact arithmetic were flushed to zero on the way;
``"no-path"``    there is no path from the node to the loss: no gradient can ever reach it;
``"nonfinite"``  the gradient holds Inf or NaN (see ``detect_anomaly``).
"""
import json
import math
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from . import numerics

STATUSES = ("ok", "zero", "underflow", "no-path", "nonfinite")

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

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
    role: Optional[str] = None  # the node's role in its cell, e.g. "f" for an LSTM's forget gate (see nn.cells_ops)

    def where(self):
        """``sigmoid [lstm.l0, t=3, f] #42``: how messages name the record (a leaf: its name)."""
        if self.kind == "leaf":
            return self.name or "leaf %s" % ("x".join(str(n) for n in self.shape) or "()")
        tags = [str(x) for x in (self.label, None if self.step is None else "t=%s" % self.step, self.role)
                if x is not None]
        return "%s%s%s" % (self.op, " [%s]" % ", ".join(tags) if tags else "",
                           "" if self.id is None else " #%d" % self.id)

    def to_dict(self):
        d = asdict(self)
        d["shape"] = list(self.shape)
        for k in ("norm", "log10_norm", "max_abs"):
            v = d[k]
            if v is not None and not math.isfinite(v):
                d[k] = str(v)  # JSON has no inf/nan
        return d


COLUMNS = ["#", "op", "label", "t", "role", "shape", "|grad|", "status", "subn", "note"]

#: row colours of the HTML table, as in the DOT graphs
HTML_STATUS_STYLE = {"no-path": "color:#7f7f7f", "zero": "background:#f0f0f0", "underflow": "background:#ffc2ef",
                     "nonfinite": "background:#f8b4b4"}


def _row(r):
    """The cells of record ``r`` in the walk table."""
    return ["-" if r.order is None else str(r.order),
            r.op if r.kind != "step" else "  %s" % r.op,
            r.name or (r.label or ""),
            "" if r.step is None else str(r.step),
            r.role or "",
            "x".join(str(n) for n in r.shape) or "()",
            "-" if r.log10_norm is None else numerics.fmt_pow10(r.log10_norm),
            r.status,
            str(r.subnormal) if r.subnormal else "",
            r.note]


class Walk:
    """The result of ``walk()``: a list of ``NodeRecord`` in backward order.

    ``records``      every record (nodes in backward order, then steps of fused
                     layers right after their node, then no-path nodes, then leaves).
    ``table()``      a printable table; ``print(w)`` prints it.
    ``to_dict()``    the walk as plain data; ``to_dicts()`` the records as dicts;
                     ``to_json()`` as JSON text.  In a notebook it shows as an HTML table.
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

    def nodes(self, op=None, label=None, step=None, kind=None, status=None, role=None):
        """Records matching every given field (``op`` may also be a tuple of names)."""
        want = dict(label=label, step=step, kind=kind, status=status, role=role)
        out = []
        for r in self.records:
            if op is not None and (r.op not in op if isinstance(op, tuple) else r.op != op):
                continue
            if all(v is None or getattr(r, k) == v for k, v in want.items()):
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

    def to_dict(self):
        """``{"dtype", "summary", "records"}``: the walk as plain data (JSON-safe)."""
        return {"dtype": self.dtype, "summary": self.summary(), "records": self.to_dicts()}

    def to_json(self, **kw):
        return json.dumps(self.to_dict(), **kw)

    def _rows(self, max_rows, kinds):
        recs = [r for r in self.records if kinds is None or r.kind in kinds]
        shown = recs if max_rows is None else recs[:max_rows]
        return [_row(r) for r in shown], shown, len(recs) - len(shown)

    def _footer(self):
        s = self.summary()
        return "%d records: %s; %d subnormal values met, %d flushed to zero" % (
            s["records"], ", ".join("%d %s" % (s[k], k) for k in STATUSES if s[k]), s["subnormal_values"],
            s["flushed_values"])

    def table(self, max_rows=60, kinds=None):
        """The walk as text: one line per record (the first ``max_rows``; None for all)."""
        from ..display import format_table

        rows, _, more = self._rows(max_rows, kinds)
        text = format_table(COLUMNS, rows, align="rllrlrrlll")
        if more:
            text += "\n... %d more records (table(max_rows=None) shows all)" % more
        return text + "\n" + self._footer()

    def _repr_html_(self, max_rows=200):
        """The table as HTML, each status in its colour (what a notebook shows for a Walk)."""
        from html import escape

        rows, shown, more = self._rows(max_rows, None)
        head = "".join("<th>%s</th>" % escape(c) for c in COLUMNS)
        body = []
        for r, cells in zip(shown, rows):
            style = HTML_STATUS_STYLE.get(r.status, "")
            body.append("<tr style='%s'>%s</tr>" % (style, "".join("<td>%s</td>" % escape(c) for c in cells)))
        tail = "<p>... %d more records</p>" % more if more else ""
        return ("<table><thead><tr>%s</tr></thead><tbody>%s</tbody></table>%s<p>%s</p>"
                % (head, "".join(body), tail, escape(self._footer())))

    def __str__(self):
        return self.table()

    def __repr__(self):
        return "<Walk of %d records: %s>" % (len(self.records), self.summary())

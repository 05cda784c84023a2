"""Pictures of long unrolls: the cell drawn once ("folded"), and a time x node grid.

An unrolled graph of T steps repeats the same few nodes T times; drawn node by
node it is unreadable beyond a handful of steps.  Folding draws each node of the
cell once, for all steps, with what the steps have in common and how they differ:

* a node of the cell is identified across steps by its label, role, op and its
  rank among the nodes of the same (op, role) in its step (an LSTM step has two
  ``mul`` nodes of role ``c``: f*c and i*g);
* its box shows how many steps it stands for ("x T") and the min / median / max
  over those steps of the norm of the gradient that reached it; its colour is
  the median's;
* an edge between two steps (h_{t-1} into step t) becomes a dashed back-edge
  labelled "t-1 -> t"; every edge is labelled with the min / median / max over
  steps of the gradient at its tail (what flows back along it, summed over the
  tail's consumers);
* ``unfold=(t0, t1)`` draws the steps t0..t1-1 node by node, as ``to_dot`` does,
  folded around them.

``to_dot_folded(walk)`` gives Graphviz DOT (``DotSource``); ``grid_svg(walk)`` an
SVG made here, with no Graphviz: one row per node of the cell, one column per
time step, each cell coloured by log10 |grad| (for T in the thousands too).
"""
import math
from collections import defaultdict

import numpy as np

from ..errors import is_integer
from . import numerics
from .dot import RAMP, STATUS_STYLE, _ramp, dot_source
from .records import NodeRecord



def _folded_status(statuses):
    """A folded node is drawn as nonfinite or underflow if any step is; as zero or no-path
    only if every step is (an exact zero at one step is noted, not coloured)."""
    for st in ("nonfinite", "underflow"):
        if st in statuses:
            return st
    return statuses[0] if len(set(statuses)) == 1 else "ok"


def fold_keys(records):
    """``{id(record): (label, role, op, rank)}`` for every record of a time step."""
    by_step = defaultdict(list)
    for r in records:
        if r.kind == "node" and r.step is not None:
            by_step[(r.label, r.step)].append(r)
    keys = {}
    for rs in by_step.values():
        seen = defaultdict(int)
        for r in sorted(rs, key=lambda r: r.id):
            k = (r.label, r.role, r.op)
            keys[id(r)] = k + (seen[k],)
            seen[k] += 1
    return keys


def log10_stats(values):
    """(min, median, max) of the finite values, or None if there are none."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    return (min(v), float(np.median(v)), max(v)) if v else None


def _fmt_stats(st):
    if st is None:
        return "|g| = 0"
    return "|g| %s / %s / %s" % tuple(numerics.fmt_pow10(x) for x in st)


class Folded:
    """The records of a walk with the steps outside ``unfold`` merged into one node per cell node.

    ``nodes``  the records to draw: kept records as they are, and per fold key one
               ``NodeRecord`` whose ``log10_norm`` is the median over steps;
    ``members[id(node)]``  the records a folded node stands for;
    ``edges``  ``(src, dst, members)``: each drawn edge and the record edges it stands for.
    """

    def __init__(self, walk, unfold=None, show_leaves=True):
        recs = [r for r in walk.records if r.kind != "step" and (show_leaves or r.kind != "leaf")]
        keys = fold_keys(recs)
        lo, hi = _steps("to_dot_folded", unfold)
        self.nodes, self.members, self.shown = [], {}, {}
        folded = {}
        for r in recs:
            k = keys.get(id(r))
            if k is None or lo <= r.step < hi:
                self.nodes.append(r)
                self.shown[id(r)] = r
                continue
            if k not in folded:
                folded[k] = NodeRecord(None, "node", r.op, r.label, None, r.shape, r.dtype, None, None, None, 0, 0,
                                       "ok", role=r.role)
                self.nodes.append(folded[k])
                self.members[id(folded[k])] = []
            self.members[id(folded[k])].append(r)
            self.shown[id(r)] = folded[k]
        for node in folded.values():
            self._summarise(node)
        self.edges = self._edges(recs)

    def _summarise(self, node):
        rs = self.members[id(node)]
        st = log10_stats([r.log10_norm for r in rs])
        node.log10_norm = None if st is None else st[1]
        node.norm = None if st is None else 10 ** st[1]
        node.status = _folded_status([r.status for r in rs])
        node.subnormal = sum(r.subnormal for r in rs)
        node.note = "x %d steps (t = %d..%d)" % (len(rs), min(r.step for r in rs), max(r.step for r in rs))

    def exceptions(self, node):
        """Lines such as "zero at 1 step (t = 0)" for the steps whose status is not "ok"."""
        by = defaultdict(list)
        for r in self.members.get(id(node), ()):
            if r.status != "ok":
                by[r.status].append(r.step)
        return ["%s at %d step%s (t = %s)" % (st, len(ts), "" if len(ts) == 1 else "s",
                                             ", ".join(map(str, ts[:3])) + (", ..." if len(ts) > 3 else ""))
                for st, ts in sorted(by.items())]

    def _edges(self, recs):
        by_id = {r.id: r for r in recs if r.id is not None}
        grouped = defaultdict(list)  # (drawn src, drawn dst, back-edge?) -> the record edges' tails
        for r in recs:
            for c in dict.fromkeys(r.consumers):
                if c in by_id:
                    src, dst = self.shown[id(r)], self.shown[id(by_id[c])]
                    back = r.step is not None and by_id[c].step is not None and by_id[c].step != r.step
                    grouped[(id(src), id(dst), back)].append(r)
        node_of = {id(n): n for n in self.nodes}
        return [(node_of[s], node_of[d], back, rs) for (s, d, back), rs in grouped.items()]

    def stats(self, node):
        """(min, median, max) log10 |grad| over the steps ``node`` stands for (one value if not folded)."""
        return log10_stats([r.log10_norm for r in self.members.get(id(node), [node])])


def _folded_text(folded):
    def text(r):
        parts = [r.name or r.op]
        tag = ", ".join(str(x) for x in (r.label if r.kind != "leaf" else None,
                                         None if r.step is None else "t=%s" % r.step, r.role) if x is not None)
        if tag:
            parts.append(tag)
        if id(r) in folded.members:
            parts += [r.note, _fmt_stats(folded.stats(r))] + folded.exceptions(r)
        else:
            parts.append("x".join(str(n) for n in r.shape) or "scalar")
            if r.log10_norm is not None:
                parts.append("|g| = %s" % numerics.fmt_pow10(r.log10_norm))
        if r.status != "ok" and id(r) not in folded.members:
            parts.append(r.status)
        return parts
    return text


def to_dot_folded(walk, unfold=None, title=None, show_leaves=True):
    """DOT of ``walk`` with every node of the recurrent cell drawn once for all its steps.

    ``unfold=(t0, t1)``: draw the steps t0..t1-1 node by node.  The size of the
    drawing does not grow with T (outside the unfolded window).  Returns ``DotSource``.
    """
    folded = Folded(walk, unfold, show_leaves)
    edges = []
    for src, dst, back, rs in folded.edges:
        tails = list({id(r): r for r in rs}.values())  # one tail used at every step counts once
        label = _fmt_stats(log10_stats([r.log10_norm for r in tails])) if len(tails) > 1 else ""
        attrs = []
        if back:
            attrs += ['style="dashed"', 'color="#1f77b4"']
            if len(rs) > 1:
                label = ("t-1 -> t, x %d\\n" % len(rs)) + label
        if label:
            attrs.append('label="%s", fontsize=8' % label)
        edges.append((src, dst, ", ".join(attrs)))
    return dot_source(folded.nodes, edges, title, cluster_steps=True, text=_folded_text(folded))


class SvgImage(str):
    """SVG text (a ``str``) that a notebook shows as a picture; ``save(path)`` writes it."""

    def _repr_svg_(self):
        return str(self)

    def save(self, path):
        with open(path, "w") as f:
            f.write(self)
        return path


def _steps(who, unfold):
    """``unfold``, None or a ``(first, end)`` pair of time steps, as ``(lo, hi)`` ((0, 0): unfold none)."""
    if unfold is None:
        return 0, 0
    if (not isinstance(unfold, (tuple, list)) or len(unfold) != 2
            or not all(is_integer(v) for v in unfold)):
        raise TypeError("%s: unfold must be None or a (first, end) pair of time steps, got %r" % (who, unfold))
    return int(unfold[0]), int(unfold[1])


def grid_svg(walk, width=1000, row_height=10, title=None):
    """An SVG of log10 |grad| for every node of the cell (rows) at every time step (columns).

    No Graphviz needed: the layout is the grid itself.  The columns share ``width``
    pixels (at least 2 each); with more steps than that allows, each column shows the
    median over a run of consecutive steps.
    """
    for name, v in (("width", width), ("row_height", row_height)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not v > 0:
            raise ValueError("grid_svg: %s must be a positive number of pixels, got %r" % (name, v))
    recs = [r for r in walk.records if r.kind == "node" and r.step is not None]
    keys = fold_keys(recs)
    rows = sorted({keys[id(r)] for r in recs}, key=lambda k: (str(k[0]), str(k[1]), k[2], k[3]))
    row_of = {k: i for i, k in enumerate(rows)}
    T = 1 + max((r.step for r in recs), default=-1)
    per = max(1, math.ceil(2 * T / width))
    ncol = math.ceil(T / per) if T else 0
    values = defaultdict(list)  # (row, column) -> log10 norms
    status = {}
    for r in recs:
        at = (row_of[keys[id(r)]], r.step // per)
        values[at].append(r.log10_norm)
        if r.status in STATUS_STYLE:
            status[at] = r.status
    fin = [v for vs in values.values() for v in vs if v is not None and math.isfinite(v)]
    lo, hi = (min(fin), max(fin)) if fin else (0.0, 0.0)
    col_w = max(2, width // max(ncol, 1))
    return SvgImage(_svg(rows, T, per, values, status, lo, hi, (col_w, row_height), title))


def _svg(rows, T, per, values, status, lo, hi, cell, title):
    (cw, ch), left, top = cell, 170, 28 if title else 10
    ncol = math.ceil(T / per)
    w, h = max(left + ncol * cw + 10, left + 12 * len(RAMP) + 330), top + len(rows) * ch + 48
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="Helvetica" '
           'font-size="%d">' % (w, h, max(8, ch - 1))]
    if title:
        out.append('<text x="4" y="16" font-size="12">%s</text>' % _xml(title))
    for i, (label, role, op, rank) in enumerate(rows):
        out.append('<text x="%d" y="%d" text-anchor="end">%s</text>'
                   % (left - 4, top + i * ch + ch - 1, _xml("%s %s %s%s" % (label, role or "", op,
                                                                           "#%d" % rank if rank else ""))))
    fills = {"nonfinite": "#e31a1c", "underflow": "#ff33cc", "zero": "#ffffff", "no-path": "#d9d9d9"}
    for (i, j), vs in values.items():
        st = log10_stats(vs)
        if (i, j) in status:
            fill = fills[status[(i, j)]]
        else:
            fill = _ramp(0.5 if hi <= lo or st is None else (st[1] - lo) / (hi - lo))
        out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>'
                   % (left + j * cw, top + i * ch, cw, ch, fill))
    y = top + len(rows) * ch + 8
    out.append('<text x="%d" y="%d">time step t = 0 .. %d%s</text>'
               % (left, y + 12, T - 1, "" if per == 1 else " (median of %d steps per column)" % per))
    out.append('<text x="%d" y="%d" text-anchor="end">log10 |grad| %s</text>' % (left - 4, y + 26,
                                                                            numerics.fmt_pow10(lo)))
    for k, colour in enumerate(RAMP):
        out.append('<rect x="%d" y="%d" width="12" height="10" fill="%s"/>' % (left + 12 * k, y + 17, colour))
    out.append('<text x="%d" y="%d">%s; white: zero, magenta: underflow, red: NaN/Inf</text>'
               % (left + 12 * len(RAMP) + 4, y + 26, numerics.fmt_pow10(hi)))
    out.append("</svg>")
    return "\n".join(out)


def _xml(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

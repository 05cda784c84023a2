"""Graphviz DOT export of an (unrolled) graph, nodes coloured by log10 |gradient|.

::

    w = tinybptt.inspect.walk(loss, roots=[out])
    src = tinybptt.inspect.to_dot(w, title="tanh RNN, T=5")
    tinybptt.inspect.render_dot(src, "graph.svg")    # needs Graphviz's `dot`; else returns None

Colours: a dark-blue -> green -> yellow ramp from the smallest to the largest
finite gradient norm in the graph; light grey for nodes with no path to the loss;
white with a dashed outline for exact zeros; magenta for underflow (subnormal or
flushed gradients); red for NaN/Inf.  Nodes of one time step are grouped in a box.
"""
import math
import shutil
import subprocess

from ..errors import GraphError
from . import numerics

# viridis-like ramp (dark blue -> teal -> green -> yellow), sampled by hand
RAMP = ["#440154", "#472c7a", "#3b518b", "#2c718e", "#21908d", "#27ad81", "#5cc863", "#aadc32", "#fde725"]
STATUS_STYLE = {
    "no-path": ('fillcolor="#d9d9d9", fontcolor="#7f7f7f", style="filled"'),
    "zero": ('fillcolor="#ffffff", color="#555555", style="filled,dashed"'),
    "underflow": ('fillcolor="#ff33cc", fontcolor="#000000", style="filled,bold"'),
    "nonfinite": ('fillcolor="#e31a1c", fontcolor="#ffffff", style="filled,bold"'),
}


def _ramp(f):
    f = min(max(f, 0.0), 1.0) * (len(RAMP) - 1)
    k = min(int(f), len(RAMP) - 2)
    a, b = RAMP[k], RAMP[k + 1]
    w = f - k
    ca = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#%02x%02x%02x" % tuple(int(round(x + (y - x) * w)) for x, y in zip(ca, cb))


def _esc(s):
    return str(s).replace("\\", "\\\\").replace('"', '\\"')


def to_dot(obj, roots=None, title=None, max_nodes=3000, cluster_steps=True, show_leaves=True):
    """DOT source for a ``Walk`` (or a loss Tensor, which is walked first with ``roots``).

    Each record becomes a box: op, label and step, output shape and |grad|.  Edges
    follow the forward data flow (input -> consumer).
    """
    from .records import Walk
    from .walk import walk

    w = obj if isinstance(obj, Walk) else walk(obj, roots=roots)
    recs = [r for r in w.records if r.kind != "step" and (show_leaves or r.kind != "leaf")]
    if len(recs) > max_nodes:
        raise GraphError("to_dot: the graph has %d nodes (more than max_nodes=%d); Graphviz would not cope. "
                         "Use a shorter sequence or pass max_nodes=" % (len(recs), max_nodes))
    by_id = {r.id: r for r in recs if r.id is not None}
    edges = [(r, by_id[c], "") for r in recs for c in r.consumers if c in by_id]
    return dot_source(recs, edges, title, cluster_steps)


def dot_source(recs, edges, title=None, cluster_steps=True, text=None):
    """DOT text drawing records as boxes and ``edges`` ``(src, dst, attributes)`` between them.

    ``text(r)``: the lines of a record's box (default: op, tags, shape, |grad|, status)."""
    colour = _Colours(recs)
    name = {id(r): ("n%d" % r.id if r.id is not None else "%s%d" % (r.kind, k)) for k, r in enumerate(recs)}
    lines = ["digraph tinybptt {", '  rankdir="BT";', '  node [shape=box, fontname="Helvetica", fontsize=10];',
             '  edge [color="#888888", arrowsize=0.6];']
    if title:
        lines.append('  labelloc="t"; label="%s";' % _esc(title))
    lines += _node_lines(recs, name, colour, cluster_steps, text or _node_text)
    for src, dst, attrs in edges:
        lines.append("  %s -> %s%s;" % (name[id(src)], name[id(dst)], " [%s]" % attrs if attrs else ""))
    lines += colour.legend()
    lines.append("}")
    return DotSource("\n".join(lines) + "\n")


class DotSource(str):
    """DOT source text (a ``str``) that a notebook shows as a picture when Graphviz is installed."""

    def render(self, path, fmt=None):
        """Write the picture to ``path`` (see ``render_dot``); None without Graphviz."""
        return render_dot(self, path, fmt)

    def _repr_svg_(self):
        exe = shutil.which("dot")
        if exe is None:
            return None
        res = subprocess.run([exe, "-Tsvg"], input=self.encode(), capture_output=True, timeout=120)
        return res.stdout.decode() if res.returncode == 0 else None


class _Colours:
    """Node colours: the ramp over the finite log10 |grad| of the "ok" records, or a status style."""

    def __init__(self, recs):
        fin = [r.log10_norm for r in recs if r.log10_norm is not None and math.isfinite(r.log10_norm)
               and r.status == "ok"]
        self.lo, self.hi = (min(fin), max(fin)) if fin else (0.0, 0.0)

    def style(self, r):
        if r.status in STATUS_STYLE:
            return STATUS_STYLE[r.status]
        f = 1.0 if self.hi <= self.lo else (r.log10_norm - self.lo) / (self.hi - self.lo)
        return 'fillcolor="%s", fontcolor="%s", style="filled"' % (_ramp(f), "#ffffff" if f < 0.55 else "#000000")

    def legend(self):
        lines = ['  subgraph cluster_legend { label="log10 |grad|"; fontsize=9; color="#bbbbbb";',
                 '    lg_lo [label="%s", fillcolor="%s", fontcolor="#ffffff", style="filled"];'
                 % (numerics.fmt_pow10(self.lo), RAMP[0]),
                 '    lg_hi [label="%s", fillcolor="%s", style="filled"];' % (numerics.fmt_pow10(self.hi), RAMP[-1])]
        for st, style in STATUS_STYLE.items():
            lines.append('    lg_%s [label="%s", %s];' % (st.replace("-", "_"), st, style))
        lines.append("  }")
        return lines


def _node_text(r):
    """The lines of a node's box: op (or parameter name), label, step and role, shape, |grad|, status."""
    parts = [r.name or r.op]
    tag = ", ".join(x for x in [r.label if r.kind != "leaf" else None,
                                None if r.step is None else "t=%s" % r.step, r.role] if x)
    if tag:
        parts.append(tag)
    parts.append("x".join(str(n) for n in r.shape) or "scalar")
    if r.log10_norm is not None:
        parts.append("|g| = %s" % numerics.fmt_pow10(r.log10_norm))
    if r.status != "ok":
        parts.append(r.status)
    return parts


def _node_lines(recs, name, colour, cluster_steps, text):
    """One line per record; the nodes of one (label, step) grouped in a box when ``cluster_steps``."""
    def line(r):
        shape = ", shape=ellipse" if r.kind == "leaf" else ""
        return '%s [label="%s", %s%s];' % (name[id(r)], "\\n".join(_esc(p) for p in text(r)),
                                           colour.style(r), shape)

    clusters, loose = {}, []
    for r in recs:
        if cluster_steps and r.step is not None and r.kind == "node":
            clusters.setdefault((r.label or "", r.step), []).append(r)
        else:
            loose.append(r)
    lines = []
    for k, ((label, step), rs) in enumerate(sorted(clusters.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))):
        lines.append('  subgraph cluster_%d {' % k)
        lines.append('    label="%s t=%s"; style="rounded"; color="#bbbbbb"; fontsize=9;' % (_esc(label), step))
        lines += ["    " + line(r) for r in rs]
        lines.append("  }")
    return lines + ["  " + line(r) for r in loose]


def dot_available():
    """True if Graphviz's ``dot`` program is on the PATH."""
    return shutil.which("dot") is not None


def render_dot(src, path, fmt=None, timeout=120):
    """Render DOT source ``src`` to ``path`` (format from the extension: svg, png, pdf).

    Returns ``path``, or None (without raising) when Graphviz is not installed.
    """
    exe = shutil.which("dot")
    if exe is None:
        return None
    fmt = fmt or str(path).rsplit(".", 1)[-1].lower()
    if fmt not in ("svg", "png", "pdf", "dot"):
        raise ValueError("render_dot: unsupported format %r (use .svg, .png or .pdf)" % fmt)
    if fmt == "dot":
        with open(path, "w") as f:
            f.write(src)
        return path
    res = subprocess.run([exe, "-T" + fmt, "-o", str(path)], input=src.encode(), capture_output=True,
                         timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError("render_dot: dot failed (%s)" % res.stderr.decode(errors="replace").strip())
    return path

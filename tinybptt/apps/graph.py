"""``tinybptt graph``: draw an unrolled graph, coloured by the gradient that reached each node.

The layer runs in ``mode="ops"`` (one graph node per primitive op), a loss on the
last step is backpropagated, and the walk of the graph (``tinybptt.inspect.walk``,
leaves named by parameter: ``lstm.weight_hh_l0``, ``head.weight``) is drawn:

* node by node as Graphviz DOT (``inspect.to_dot``; the default, for a few steps);
* folded (``--fold``, ``inspect.to_dot_folded``): each node of the cell drawn once
  for all steps with the min / median / max of its gradient norm over them and a
  dashed "t-1 -> t" back-edge, so a long unroll stays readable; ``--unfold T0:T1``
  draws the steps T0..T1-1 node by node inside the folded picture;
* as an SVG grid (``--grid FILE.svg``, ``inspect.grid_svg``): one row per node of
  the cell, one column per time step, made here with no Graphviz.

DOT is rendered to SVG/PNG/PDF when Graphviz's ``dot`` is installed.  Time steps
are t = 0..T-1 (``out[t]`` is h_t).
"""
import argparse
import sys

import numpy as np

from .. import nn
from ..autograd import Tensor
from ..inspect import dot, grid_svg, to_dot_folded, walk
from .train import CELLS, make_layer


def unrolled_walk(cell="rnn", T=4, H=3, I=2, seed=0, every_readout=True):
    """The walk of a ``mode="ops"`` layer unrolled over T steps with a loss on the last step's read-out.

    With ``every_readout`` the read-outs of the other steps are built and listed too
    (as "no-path": the loss ignores them; they are not part of any step, so a folded
    drawing would repeat them T times).  Leaves carry their parameter names
    (``<cell>.weight_hh_l0``, ``head.weight``).
    """
    nn.manual_seed(seed)
    layer = make_layer(cell, I, H, dtype=np.float64, mode="ops")
    head = nn.Linear(H, 1)
    x = np.random.default_rng(seed).standard_normal((T, 1, I))
    out = layer(Tensor(x))[0]
    preds = [head(out[t]) for t in range(T)] if every_readout else [head(out[T - 1])]
    return walk(preds[-1].sum(), roots=preds, params=[("head." + n, p) for n, p in head.named_parameters()],
                model=layer)


def parse_window(text, T):
    """``"T0:T1"`` -> (T0, T1), the steps T0..T1-1, with 0 <= T0 < T1 <= T."""
    try:
        t0, t1 = (int(v) for v in text.split(":"))
    except ValueError:
        raise ValueError("--unfold takes T0:T1 (two integers, e.g. 10:13), got %r" % text) from None
    if not 0 <= t0 < t1 <= T:
        raise ValueError("--unfold %s: need 0 <= T0 < T1 <= T = %d (the steps T0..T1-1 are drawn)" % (text, T))
    return t0, t1


def build_parser(parser=None):
    """The options of ``tinybptt graph`` (on ``parser``, e.g. a sub-command's, or a new one)."""
    p = parser or argparse.ArgumentParser(prog="tinybptt graph")
    p.description = ("Build an unrolled graph in mode='ops' (every intermediate a node), run backward on a loss on "
                     "the last step, and draw it with nodes coloured by log10 |grad|: Graphviz DOT node by node "
                     "(rendered to SVG/PNG when Graphviz's `dot` is installed), folded with --fold (readable for "
                     "long unrolls), or as an SVG grid of cell nodes x time steps with --grid (no Graphviz). "
                     "Time steps are t = 0..T-1.")
    p.add_argument("--cell", default="rnn", choices=CELLS, help="default rnn")
    p.add_argument("--T", type=int, default=4, help="time steps (default 4; use --fold or --grid for long unrolls)")
    p.add_argument("--H", type=int, default=3, help="hidden size (default 3)")
    p.add_argument("--I", type=int, default=2, help="input size (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None,
                   help="DOT output: .dot, .svg, .png or .pdf (default graph.dot; none with only --grid)")
    p.add_argument("--fold", action="store_true",
                   help="draw each node of the cell once for all steps (min/median/max |grad| over the steps)")
    p.add_argument("--unfold", metavar="T0:T1", default=None,
                   help="with the folded drawing (implies --fold), draw steps T0..T1-1 node by node")
    p.add_argument("--grid", metavar="FILE.svg", default=None,
                   help="also write an SVG grid: one row per node of the cell, one column per time step")
    p.add_argument("--table", action="store_true", help="also print the node-by-node walk")
    return p


def main(argv=None):
    """``tinybptt graph [options]``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        window = parse_window(args.unfold, args.T) if args.unfold else None
    except ValueError as exc:
        print("tinybptt graph: %s" % exc, file=sys.stderr)
        return 2
    folded = bool(args.fold or window)
    w = unrolled_walk(args.cell, args.T, args.H, args.I, args.seed, every_readout=not (folded or args.grid))
    if args.table:
        print(w.table(max_rows=None))
    what = "%s, mode='ops', T=%d, H=%d: loss on the last step (grey: no path to the loss)" % (args.cell, args.T, args.H)
    if args.grid:
        grid_svg(w, title=what).save(args.grid)
        print("wrote %s (%d nodes over %d time steps, no Graphviz needed)" % (args.grid, len(w), args.T))
    if args.out is None and args.grid:
        return 0
    if folded:
        src = to_dot_folded(w, unfold=window, title="folded: " + what + (
            "; steps %d..%d unfolded" % (window[0], window[1] - 1) if window else ""))
    else:
        src = dot.to_dot(w, title=what)
    return _write_dot(src, args.out or "graph.dot", len(w))


def _write_dot(src, path, n):
    """Write DOT source to ``path``, rendered by Graphviz for .svg/.png/.pdf (DOT beside it without Graphviz)."""
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else "dot"
    if ext == "dot":
        with open(path, "w") as f:
            f.write(src)
        print("wrote %s (%d nodes); render with: dot -Tsvg %s -o graph.svg" % (path, n, path))
        return 0
    if not dot.dot_available():
        alt = path.rsplit(".", 1)[0] + ".dot"
        with open(alt, "w") as f:
            f.write(src)
        print("Graphviz's `dot` is not installed, so no .%s was made; wrote %s instead "
              "(install graphviz, then: dot -T%s %s -o %s)" % (ext, alt, ext, alt, path))
        return 0
    dot.render_dot(src, path)
    print("wrote %s (%d nodes)" % (path, n))
    return 0

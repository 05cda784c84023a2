"""``tinybptt graph``: draw a small unrolled graph, coloured by the gradient that reached each node.

The layer runs in ``mode="ops"`` (one graph node per primitive op), a loss on the
last step is backpropagated, and the walk of the graph (``tinybptt.inspect.walk``)
is written as Graphviz DOT -- rendered to SVG/PNG/PDF when Graphviz's ``dot`` is
installed.
"""
import argparse

import numpy as np

from .. import nn
from ..autograd import Tensor
from ..inspect import dot, walk
from .train import CELLS, make_layer


def build_parser(parser=None):
    """The options of ``tinybptt graph`` (on ``parser``, e.g. a sub-command's, or a new one)."""
    p = parser or argparse.ArgumentParser(prog="tinybptt graph")
    p.description = ("Build a small unrolled graph in mode='ops' (every intermediate a node), run backward on a "
                     "loss on the last step, and write it as Graphviz DOT with nodes coloured by log10 |grad| "
                     "(rendered to SVG/PNG when Graphviz's `dot` is installed).")
    p.add_argument("--cell", default="rnn", choices=CELLS, help="default rnn")
    p.add_argument("--T", type=int, default=4, help="time steps (default 4; keep it small)")
    p.add_argument("--H", type=int, default=3, help="hidden size (default 3)")
    p.add_argument("--I", type=int, default=2, help="input size (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="graph.dot", help="output file: .dot, .svg, .png or .pdf (default graph.dot)")
    p.add_argument("--table", action="store_true", help="also print the node-by-node walk")
    return p


def main(argv=None):
    """``tinybptt graph [options]``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    nn.manual_seed(args.seed)
    layer = make_layer(args.cell, args.I, args.H, dtype=np.float64, mode="ops")
    head = nn.Linear(args.H, 1)
    x = np.random.default_rng(args.seed).standard_normal((args.T, 1, args.I))
    out = layer(Tensor(x))[0]
    preds = [head(out[t]) for t in range(args.T)]
    loss = preds[-1].sum()
    named = [("rnn." + n, p) for n, p in layer.named_parameters()] + [("head." + n, p) for n, p in
                                                                       head.named_parameters()]
    w = walk(loss, roots=preds, params=named)
    if args.table:
        print(w.table(max_rows=None))
    src = dot.to_dot(w, title="%s, mode='ops', T=%d, H=%d: loss on the last step (grey: no path to the loss)"
                     % (args.cell, args.T, args.H))
    path = args.out
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else "dot"
    if ext == "dot":
        with open(path, "w") as f:
            f.write(src)
        print("wrote %s (%d nodes); render with: dot -Tsvg %s -o graph.svg" % (path, len(w), path))
        return 0
    if not dot.dot_available():
        alt = path.rsplit(".", 1)[0] + ".dot"
        with open(alt, "w") as f:
            f.write(src)
        print("Graphviz's `dot` is not installed, so no .%s was made; wrote %s instead "
              "(install graphviz, then: dot -T%s %s -o %s)" % (ext, alt, ext, alt, path))
        return 0
    dot.render_dot(src, path)
    print("wrote %s (%d nodes)" % (path, len(w)))
    return 0

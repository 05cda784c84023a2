"""The ``tinybptt`` command (also ``python -m tinybptt``).

::

    tinybptt vanish                         RNN vs LSTM vs GRU: ||dL/dh_t|| from t=T back to 0
    tinybptt vanish --init scaled --radius 1.5 --clip 1      exploding gradients, and clipping
    tinybptt vanish --trained --plot vanish.png --json vanish.json
    tinybptt train --task adding --cell lstm --T 100          a long-range task, with test metrics
    tinybptt train --task adding --cell rnn,lstm,gru --T 100  the classical comparison table
    tinybptt graph --cell lstm --T 3 --out graph.svg          the unrolled graph, coloured by |grad|
    tinybptt bench ...                                        timing (tinybptt.bench)

``main(argv=None)`` returns the exit code; the console script calls ``sys.exit`` on it.
"""
import argparse
import importlib
import json
import sys

import numpy as np

SUBCOMMANDS = ("vanish", "train", "graph", "bench")


# --------------------------------------------------------------------------- train


def _train_parser(p):
    from .. import tasks

    p.description = ("Train a recurrent network on a long-range task (Adam, gradient clipping, float32 "
                     "sequence mode), with periodic test metrics and the per-step gradient norms "
                     "||dL/dh_t|| before and after training. Several cells (--cell rnn,lstm,gru) give a "
                     "comparison table.")
    p.add_argument("--task", default="adding", choices=sorted(tasks.TASKS),
                   help="adding (MSE; baseline 1/6), copy (copy-memory), first (remember the first word)")
    p.add_argument("--cell", default="lstm", help="rnn, lstm, gru, or a comma-separated list (default lstm)")
    p.add_argument("--T", type=int, default=100, help="sequence length / delay (default 100)")
    p.add_argument("--H", type=int, default=64, help="hidden size (default 64)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping threshold, 0 for none (default 1)")
    p.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--eval-every", type=int, default=100, help="test metrics every N steps (default 100)")
    p.add_argument("--test-size", type=int, default=1000, help="test sequences (default 1000)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="default float32")
    p.add_argument("--nonlinearity", default="tanh", choices=("tanh", "relu"), help="RNN activation")
    p.add_argument("--forget-bias", type=float, default=None, help="LSTM forget-gate bias")
    p.add_argument("--json", metavar="FILE", help="write configuration, history, final metrics and gradient norms")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no periodic lines")
    return p


def train_main(argv=None):
    """``tinybptt train``; returns the exit code."""
    from . import train as tr
    from ..inspect import numerics
    from .. import display as terminal

    args = _train_parser(argparse.ArgumentParser(prog="tinybptt train")).parse_args(argv)
    cells = [c.strip().lower() for c in args.cell.split(",") if c.strip()]
    bad = [c for c in cells if c not in tr.CELLS]
    if bad or not cells:
        print("tinybptt train: unknown cell %s; choose from %s" % (", ".join(bad) or "''", ", ".join(tr.CELLS)),
              file=sys.stderr)
        return 2
    results = []
    for cell in cells:
        r = tr.train(task=args.task, cell=cell, T=args.T, H=args.H, batch=args.batch, lr=args.lr, clip=args.clip,
                     steps=args.steps, seed=args.seed, eval_every=args.eval_every, test_size=args.test_size,
                     dtype=args.dtype, nonlinearity=args.nonlinearity, forget_bias=args.forget_bias,
                     progress=not args.quiet, log=None if args.quiet else print)
        results.append(r)
        b, a = r["grad_log10_before"], r["grad_log10_after"]
        vals = [v for v in b + a if v is not None]
        lo, hi = (min(vals), max(vals)) if vals else (0, 0)
        name = cell if cell != "rnn" else "rnn (%s)" % args.nonlinearity
        print("%s: log10 ||dL/dh_t|| on a probe batch, t = 0 .. %d (shared scale %s .. %s)" % (
            name, args.T, numerics.fmt_pow10(lo), numerics.fmt_pow10(hi)))
        width = min(64, args.T + 1)
        print("  before  %s" % terminal.sparkline([v if v is not None else float("-inf") for v in b], lo, hi, width))
        print("  after   %s" % terminal.sparkline([v if v is not None else float("-inf") for v in a], lo, hi, width))
    print()
    print("%s, T=%d, H=%d, batch %d, Adam lr %g, clip %g, %d steps, %s, seed %d" % (
        args.task, args.T, args.H, args.batch, args.lr, args.clip, args.steps, args.dtype, args.seed))
    print(tr.summary_table(results))
    if args.json:
        out = [{k: v for k, v in r.items() if k != "model"} for r in results]
        with open(args.json, "w") as f:
            json.dump(out if len(out) > 1 else out[0], f, indent=1)
        print("wrote %s" % args.json)
    return 0


# --------------------------------------------------------------------------- graph


def _graph_parser(p):
    p.description = ("Build a small unrolled graph in mode='ops' (every intermediate a node), run backward on a "
                     "loss on the last step, and write it as Graphviz DOT with nodes coloured by log10 |grad| "
                     "(rendered to SVG/PNG when Graphviz's `dot` is installed).")
    p.add_argument("--cell", default="rnn", choices=("rnn", "lstm", "gru"), help="default rnn")
    p.add_argument("--T", type=int, default=4, help="time steps (default 4; keep it small)")
    p.add_argument("--H", type=int, default=3, help="hidden size (default 3)")
    p.add_argument("--I", type=int, default=2, help="input size (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="graph.dot", help="output file: .dot, .svg, .png or .pdf (default graph.dot)")
    p.add_argument("--table", action="store_true", help="also print the node-by-node walk")
    return p


def graph_main(argv=None):
    """``tinybptt graph``; returns the exit code."""
    from .. import nn
    from ..autograd import Tensor
    from ..inspect import dot, walk

    args = _graph_parser(argparse.ArgumentParser(prog="tinybptt graph")).parse_args(argv)
    nn.manual_seed(args.seed)
    layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[args.cell](args.I, args.H, mode="ops")
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


# --------------------------------------------------------------------------- bench


def bench_main(argv=None):
    """``tinybptt bench``: hands its arguments to ``tinybptt.bench.main``."""
    try:
        bench = importlib.import_module("tinybptt.bench")
    except ImportError as exc:
        print("tinybptt bench: the benchmark module tinybptt.bench is not available (%s)" % exc, file=sys.stderr)
        return 2
    if not hasattr(bench, "main"):
        print("tinybptt bench: tinybptt.bench has no main() yet", file=sys.stderr)
        return 2
    rc = bench.main(list(argv or []))
    return rc if isinstance(rc, int) else 0


# --------------------------------------------------------------------------- main


def build_parser():
    """The top-level parser (sub-commands parse their own options)."""
    from . import vanish

    p = argparse.ArgumentParser(
        prog="tinybptt",
        description="tinybptt: see, test and time backpropagation through time.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  tinybptt vanish                                 how ||dL/dh_t|| decays: RNN vs LSTM vs GRU\n"
               "  tinybptt vanish --init scaled --radius 1.5 --clip 1    exploding gradients and clipping\n"
               "  tinybptt vanish --plot vanish.png --json vanish.json\n"
               "  tinybptt train --task adding --cell rnn,lstm,gru --T 100\n"
               "  tinybptt graph --cell lstm --T 3 --out graph.svg\n"
               "  tinybptt bench --help\n\n"
               "Run 'tinybptt <command> --help' for the options of each command.")
    sub = p.add_subparsers(dest="command", metavar="{vanish,train,graph,bench}")
    vanish.build_parser(sub.add_parser("vanish", help="watch gradients vanish/explode back through time",
                                       add_help=False))
    _train_parser(sub.add_parser("train", help="train on a long-range task (adding, copy, first)", add_help=False))
    _graph_parser(sub.add_parser("graph", help="DOT/SVG of a small unrolled graph coloured by |grad|",
                                 add_help=False))
    sub.add_parser("bench", help="benchmarks (tinybptt.bench)", add_help=False)
    return p


def main(argv=None):
    """Entry point of the ``tinybptt`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        build_parser().print_help()
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        from .. import __version__

        print("tinybptt %s" % __version__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "vanish":
        from . import vanish

        return vanish.main(rest)
    if cmd == "train":
        return train_main(rest)
    if cmd == "graph":
        return graph_main(rest)
    if cmd == "bench":
        return bench_main(rest)
    print("tinybptt: unknown command %r; choose one of %s (tinybptt --help)" % (cmd, ", ".join(SUBCOMMANDS)),
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

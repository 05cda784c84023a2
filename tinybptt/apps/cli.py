"""The ``tinybptt`` command (also ``python -m tinybptt``).

::

    tinybptt vanish                         RNN vs LSTM vs GRU: ||dL/dh_t|| from t=T-1 back to -1
    tinybptt vanish --cells rnn,lstm,gru,attention --wrt input   ||dL/dx_t||: the RNN falls, attention stays flat
    tinybptt vanish --init scaled --radius 1.5 --clip 1      exploding gradients, and clipping
    tinybptt vanish --trained --plot vanish.png --json vanish.json
    tinybptt train --task adding --cell lstm --T 100          a long-range task, with test metrics
    tinybptt train --task adding --cell rnn,lstm,gru --T 100  the classical comparison table
    tinybptt train --cell rnn,gru --T 50 --steps 500 --plot dyn.png   ||dL/dh_t|| while training (heatmap)
    tinybptt graph --cell lstm --T 3 --out graph.svg          the unrolled graph, coloured by |grad|
    tinybptt graph --cell lstm --T 1000 --fold --out fold.svg the cell drawn once (--unfold T0:T1, --grid g.svg)
    tinybptt agreement                                        "the cat ... sits": which words each model reaches
    tinybptt reproduce --list                                 classic results (adding, irnn, copy, cliff, ...)
    tinybptt bench ...                                        timing (tinybptt.bench)

Every sub-command is an application module with the same two functions:
``build_parser(parser=None)`` adds its options (to a sub-command's parser here,
or to a new one) and ``main(argv=None)`` runs it and returns the exit code.
``tinybptt bench`` hands its arguments to ``tinybptt.bench.main(argv)``.
``main(argv=None)`` below returns the exit code; the console script calls
``sys.exit`` on it.
"""
import argparse
import importlib
import sys

from . import agreement, graph, reproduce, train, vanish

#: name -> (application module, one-line help)
APPS = {
    "vanish": (vanish, "watch gradients vanish/explode back through time"),
    "train": (train, "train on a long-range task (adding, copy, first)"),
    "graph": (graph, "DOT/SVG of a small unrolled graph coloured by |grad|"),
    "agreement": (agreement, "subject-verb agreement: RNN, LSTM, GRU, attention and what each decision reaches"),
    "reproduce": (reproduce, "re-run a classic result (NAME, or --list)"),
}
SUBCOMMANDS = tuple(APPS) + ("bench",)

EXAMPLES = """examples (time steps are t = 0..T-1; t = -1 is the initial state):
  tinybptt vanish                                 how ||dL/dh_t|| decays: RNN vs LSTM vs GRU
  tinybptt vanish --init scaled --radius 1.5 --clip 1    exploding gradients and clipping
  tinybptt vanish --plot vanish.png --json vanish.json
  tinybptt vanish --cells rnn,lstm,gru,attention --wrt input    ||dL/dx_t||: RNN vs attention
  tinybptt train --task adding --cell rnn,lstm,gru --T 100
  tinybptt train --cell rnn,gru --T 50 --steps 500 --plot dynamics.png
  tinybptt graph --cell lstm --T 3 --out graph.svg
  tinybptt graph --cell lstm --T 1000 --fold --out fold.svg --grid grid.svg
  tinybptt agreement                              subject-verb agreement: accuracy and connectivity
  tinybptt reproduce --list                       the classic results; tinybptt reproduce adding
  tinybptt bench --help

Run 'tinybptt <command> --help' for the options of each command."""


def bench_main(argv=None):
    """``tinybptt bench``: hands its arguments to ``tinybptt.bench.main``."""
    try:
        bench = importlib.import_module("tinybptt.bench")
    except ImportError as exc:
        print("tinybptt bench: the benchmark module tinybptt.bench is not available (%s)" % exc, file=sys.stderr)
        return 2
    rc = bench.main(list(argv or []))
    return rc if isinstance(rc, int) else 0


def build_parser():
    """The top-level parser, its sub-commands built by each application's ``build_parser``."""
    p = argparse.ArgumentParser(prog="tinybptt", description="tinybptt: see, test and time backpropagation through time.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    sub = p.add_subparsers(dest="command", metavar="{%s}" % ",".join(SUBCOMMANDS))
    for name, (module, help_text) in APPS.items():
        module.build_parser(sub.add_parser(name, help=help_text))
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
    if cmd == "bench":
        return bench_main(rest)
    if cmd not in APPS:
        print("tinybptt: unknown command %r; choose one of %s (tinybptt --help)" % (cmd, ", ".join(SUBCOMMANDS)),
              file=sys.stderr)
        return 2
    return APPS[cmd][0].main(rest)


if __name__ == "__main__":
    sys.exit(main())

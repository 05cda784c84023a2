"""The BPTT benchmark suite: tinybptt against PyTorch and JAX, side by side, in one run.

``tinybptt bench`` (or ``python -m tinybptt.bench``) times forward + backward of
one recurrent layer -- loss ``sum(out**2)`` over all outputs, the input not
requiring grad, zero-grad included, median of repeated runs after warm-up -- for
every cell (lstm, gru, rnn) x config (T, B, I, H) x dtype x thread count, and
reports tinybptt's time as a ratio to the faster peer (lower is better).
``tinybptt bench --section train`` times a whole training loop instead.

Where things are
----------------
problems.py  what is measured: configurations, the shared weights and input
             (``make_problem``), FLOP counts, contender names
runners.py   one runner per contender: tinybptt's modes, torch.nn, a PyTorch op
             loop, jax.jit over lax.scan, tinybptt's NumPy reference kernels
timing.py    how: the garbage-collector protocol, warm-up, repeats and medians,
             the kernel/overhead split, interleaved rounds of one grid row
workers.py   one worker process per library family, thread count and CPU set
grid.py      the layer grid, the agreement check and the ``--check`` run
scaling.py   time and memory against T, H and B; checkpointed BPTT
gemm.py      the GEMM kernel section
train.py     the training-loop section (the adding problem and subject-verb
             agreement, one pinned core); train_loops.py writes each task's loop
             once per library, train_profile.py takes a tinybptt training step apart
machine.py   the machine a run was made on
report.py    ratios, targets, tables and the whole report; plots.py draws them
cli.py       the command line: ``build_parser(parser=None)``, ``main(argv=None)``

How the measurement is kept fair
--------------------------------
* Every contender runs in a worker subprocess started with the thread-count
  variables of every library (and XLA's flags) set before NumPy, PyTorch or JAX
  is imported, optionally pinned to CPUs (``--cpus``).  The parent asks the
  workers in turn to time the same (cell, config), in interleaved rounds, so
  the contenders of one row are measured within seconds of each other.
* Every contender gets the same weights and input and reports its loss and
  gradient norms; one that disagrees with the reference is marked (``!``) and
  never counts as the faster peer.  ``--check`` compares full gradients.
* Only independent libraries are peers.  The NumPy contender calls tinybptt's
  own reference kernels; it is shown as a baseline and never judged against.
"""
from .cli import build_parser, main
from .grid import agree_check, no_peer_message, run_check, run_grid
from .machine import machine_info, machine_text
from .problems import CELLS, CONFIGS, MODES, PARAM_NAMES, PEERS, make_problem, parse_config, workload_flops
from .report import (floor_rates, grid_tables, headline_table, notes_text, render, render_table, seq_target,
                     summarize)
from .runners import NumpyRunner, TinyRunner, make_runner
from .timing import KernelTimer, add_medians, gc_protocol, measure_row, memory_profile, plan_reps
from .workers import thread_env

__all__ = [
    "main", "build_parser", "agree_check", "no_peer_message", "run_check", "run_grid", "machine_info",
    "machine_text", "CELLS", "CONFIGS", "MODES", "PARAM_NAMES", "PEERS", "make_problem", "parse_config",
    "workload_flops", "floor_rates", "grid_tables", "headline_table", "notes_text", "render", "render_table",
    "seq_target", "summarize", "NumpyRunner", "TinyRunner", "make_runner", "KernelTimer", "add_medians",
    "gc_protocol", "measure_row", "memory_profile", "plan_reps", "thread_env",
]

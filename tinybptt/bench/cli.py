"""``tinybptt bench`` / ``python -m tinybptt.bench``: the command line of the benchmark suite."""
import argparse
import json
import os
import shlex
import sys
import tempfile

from .gemm import GEMM_SIZES, gemm_floor_rates, run_gemm
from .grid import available_peers, no_peer_message, run_check, run_grid
from .machine import machine_info
from .problems import CELLS, CONFIGS, MODES, PEERS, parse_config
from .report import FLOOR_GFLOPS, floor_rates, render, summarize
from .scaling import run_scaling
from .train import TRAIN_TASKS, run_train_section
from .workers import json_default, parse_cpus, worker_main

PROG = "tinybptt bench"


def _csv(kind, allowed=None, conv=str):
    def parse(s):
        items = [conv(p.strip()) for p in s.split(",") if p.strip()]
        if allowed is not None:
            bad = [i for i in items if i not in allowed]
            if bad:
                raise argparse.ArgumentTypeError("unknown %s %s; choose from %s" % (kind, ",".join(map(str, bad)),
                                                                                 ",".join(allowed)))
        return items
    return parse


def _cpus(text):
    try:
        return parse_cpus(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_grid_arguments(p):
    p.add_argument("--cells", type=_csv("cell", CELLS), default=list(CELLS), help="lstm,gru,rnn (default all)")
    p.add_argument("--configs", type=_csv("config"), default=list(CONFIGS),
                   help="tiny,small,medium,large,long,published or TxBxIxH (default all six)")
    p.add_argument("--dtype", type=_csv("dtype", ("float32", "float64")), default=["float32"],
                   help="float32 and/or float64 (default float32)")
    p.add_argument("--modes", type=_csv("mode", MODES), default=list(MODES), help="tinybptt modes (C backend)")
    p.add_argument("--backends", type=_csv("backend", ("c", "numpy")), default=["c", "numpy"],
                   help="c: the modes above; numpy: also mode=sequence on the NumPy reference backend")
    p.add_argument("--peers", type=_csv("peer", PEERS), default=list(PEERS),
                   help="torch,jax,torch-ops,numpy (missing ones are skipped with a note; numpy is tinybptt's "
                        "reference kernels called directly, a baseline that never counts as a peer); '' for none")
    p.add_argument("--threads", type=_csv("thread count", conv=int), default=[1], help="e.g. 1,2 (default 1)")
    p.add_argument("--cpus", type=_cpus, default=None,
                   help="pin every worker to these CPUs, e.g. 1 or 0-1 (set before any library starts a thread); "
                        "default: the CPUs this process may use (--section train: the last one of them only)")


def _add_timing_arguments(p):
    p.add_argument("--repeat", type=int, default=20, help="most timed runs per measurement (default 20)")
    p.add_argument("--min-repeat", type=int, default=3, help="fewest timed runs, whatever the budget (default 3)")
    p.add_argument("--rounds", type=int, default=6,
                   help="interleave the contenders of a row over this many rounds of timed runs (default 6: "
                        "on a shared machine a contender's speed can halve for a second at a time, and "
                        "short rounds spread such bursts over every contender)")
    p.add_argument("--settle", type=float, default=0.2,
                   help="with more than one thread, seconds of pause before each contender's batch, so the "
                        "thread pools of the one before stop spinning (default 0.2)")
    p.add_argument("--stat", choices=("median", "min"), default="median",
                   help="statistic of the timed runs used for times and ratios (default median, the protocol; "
                        "min is steadier on a busy machine)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs (JAX gets one more, for compilation)")
    p.add_argument("--budget", type=float, default=2.0,
                   help="seconds of timed runs per measurement: caps the repeats of slow contenders (default 2)")
    p.add_argument("--max-iter-s", type=float, default=20.0,
                   help="a contender whose warm-up iteration takes longer is timed once only (default 20)")
    p.add_argument("--skip-numpy-backend", type=_csv("config"), default=[],
                   help="configs on which to skip the NumPy-backend contender, e.g. large")
    p.add_argument("--grad-trace", action="store_true",
                   help="time tinybptt layers with layer.record_grad_trace on (their default); off by default "
                        "because no peer records per-step gradients")
    p.add_argument("--no-split", action="store_true", help="skip the instrumented kernel/overhead runs")
    p.add_argument("--gc-each-run", action="store_true",
                   help="a full gc.collect() before every timed run (the older protocol, a cold start); "
                        "default: collect once per batch of runs and keep the collector off while they run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds before a measurement is abandoned")


def _add_section_arguments(p):
    p.add_argument("--check", action="store_true",
                   help="compare every contender's loss and full gradients with the reference peer, then exit")
    p.add_argument("--scaling", action="store_true",
                   help="also run the scaling sweeps (T, H, B; checkpointed vs full BPTT) for the first dtype "
                        "and thread count")
    p.add_argument("--scaling-only", action="store_true", help="run only the scaling sweeps")
    p.add_argument("--scaling-repeat", type=int, default=5)
    p.add_argument("--gemm", action="store_true", help="also run benchmarks/bench_gemm.py (GEMM GFLOP/s)")
    p.add_argument("--gemm-only", action="store_true", help="run only the GEMM kernel runs")
    p.add_argument("--floor-from-gemm", action="store_true",
                   help="FLOP floor from this run's best measured GEMM rate instead of the fixed %s/%s GFLOP/s "
                        "(on a busy machine the measured rate is too low to be a floor)"
                   % (FLOOR_GFLOPS["float32"], FLOOR_GFLOPS["float64"]))
    p.add_argument("--gemm-sizes", type=_csv("size", conv=int), default=list(GEMM_SIZES))
    p.add_argument("--gemm-repeat", type=int, default=5)
    p.add_argument("--section", choices=("grid", "train"), default="grid",
                   help="grid (default): the layer grid above; train: the training loops of each task and cell "
                        "in tinybptt, torch and jax, pinned to one core (see --train-*), and a profile of "
                        "tinybptt's training step on the adding problem")
    p.add_argument("--train-tasks", type=_csv("task", TRAIN_TASKS), default=list(TRAIN_TASKS),
                   help="the tasks of --section train: %s (default all)" % ",".join(TRAIN_TASKS))
    p.add_argument("--train-steps", type=int, default=400, help="timed training steps per contender (default 400)")
    p.add_argument("--train-rounds", type=int, default=4,
                   help="split the timed steps over this many interleaved rounds (default 4)")
    p.add_argument("--train-warmup", type=int, default=10, help="untimed steps first (JAX compiles; default 10)")
    p.add_argument("--train-kernel-steps", type=int, default=100,
                   help="after the timed steps, this many more tinybptt steps with its recurrent kernels timed, "
                        "for the table's 'recurrent kernels alone' column (default 100; 0: none)")
    p.add_argument("--no-ftz-run", action="store_true",
                   help="skip the extra tinybptt run with set_flush_to_zero(True)")
    p.add_argument("--profile-steps", type=int, default=100,
                   help="profiled tinybptt training steps per cell, after --profile-warmup steps (default 100; "
                        "0: no profile)")
    p.add_argument("--profile-warmup", type=int, default=300,
                   help="training steps before the profiled ones (default 300)")
    p.add_argument("--profile-fresh-heap", action="store_true",
                   help="profile without the test-set evaluation before the first step: a process that never "
                        "freed a large block, where NumPy's large arrays cost page faults at every step")


def _add_output_arguments(p):
    p.add_argument("--json", metavar="FILE", help="write every measurement (and machine info) as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown")
    p.add_argument("--plot", metavar="FILE.png", help="plot ratios to the best peer (and scaling curves)")
    p.add_argument("--log-dir", help="where worker stderr logs go (default: a new temp dir)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-threads", type=int, default=1, help=argparse.SUPPRESS)


def build_parser(parser=None):
    """The argument parser of ``tinybptt bench``; with ``parser``, its arguments are added to that one."""
    p = parser or argparse.ArgumentParser(prog=PROG)
    p.description = ("Time forward+backward of RNN/LSTM/GRU layers: tinybptt's modes against PyTorch and JAX "
                     "(and tinybptt's own NumPy baseline), all pinned to the same thread count, in one run.")
    p.epilog = "Example: tinybptt bench --cells lstm --configs tiny,small --repeat 5"
    _add_grid_arguments(p)
    _add_timing_arguments(p)
    _add_section_arguments(p)
    _add_output_arguments(p)
    return p


#: The numeric options and their smallest meaningful value; "> 0": any positive number.
#: A count of timed runs or steps of 0 would leave nothing to report, a negative one is a typo.
_LOWEST = (("repeat", 1), ("min_repeat", 1), ("rounds", 1), ("warmup", 0), ("settle", 0),
           ("budget", "> 0"), ("max_iter_s", "> 0"), ("timeout", "> 0"), ("scaling_repeat", 1),
           ("gemm_repeat", 1), ("train_steps", 1), ("train_rounds", 1), ("train_warmup", 0),
           ("train_kernel_steps", 0), ("profile_steps", 0), ("profile_warmup", 0))


def _validate(parser, args):
    for c in args.configs:
        try:
            parse_config(c)
        except ValueError as exc:
            parser.error(str(exc))
    for name, lowest in _LOWEST:
        value, option = getattr(args, name), "--" + name.replace("_", "-")
        if lowest == "> 0" and not value > 0:
            parser.error("%s must be greater than 0 (got %s)" % (option, value))
        if lowest != "> 0" and not value >= lowest:
            parser.error("%s must be at least %s (got %s)" % (option, lowest, value))
    if any(t < 1 for t in args.threads):
        parser.error("--threads: thread counts must be at least 1")
    if any(n < 1 for n in args.gemm_sizes):
        parser.error("--gemm-sizes: sizes must be at least 1")


def _run_sections(args, out):
    """Run what the arguments ask for into ``out``; returns the exit code."""
    if args.section == "train":
        out["train"] = run_train_section(args)
        return 0
    if args.check:
        out["check"] = run_check(args)
        return 1 if any(r["status"] == "ok" and not r["passed"] for r in out["check"]) else 0
    if args.gemm or args.gemm_only:  # first, so the grid's FLOP floor can use the measured rate
        out["gemm"], out["gemm_notes"] = run_gemm(args)
        if args.floor_from_gemm:
            out["floor_gflops"] = [[k[0], k[1], v] for k, v in gemm_floor_rates(out["gemm"]).items()]
    if not (args.scaling_only or args.gemm_only):
        out["results"], out["notes"] = run_grid(args)
    if args.scaling or args.scaling_only:
        out["scaling"] = run_scaling(args)
    if args.plot and (out.get("results") or out.get("scaling")):
        from .plots import plot_results
        try:
            summary = summarize(out["results"], floor_rates(out)) if out.get("results") else None
            out["plots"] = [os.path.abspath(p) for p in plot_results(summary, args.plot, out.get("scaling"))]
        except ImportError:
            out.setdefault("notes", []).append("--plot: matplotlib is not installed; no plot written")
    return 0


def _write_outputs(args, out):
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=json_default)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render(out, md=True, header=True, plot_dir=os.path.dirname(os.path.abspath(args.markdown)))
                    + "\n")


def main(argv=None):
    """Entry point of ``tinybptt bench``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.worker_threads)
        return 0
    _validate(parser, args)
    args.log_dir = args.log_dir or tempfile.mkdtemp(prefix="tinybptt-bench-")
    command = PROG + " " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    out = {"command": command.strip(), "machine": machine_info()}
    if not (args.check or args.gemm_only or args.section == "train"):
        out["no_peer"] = no_peer_message(available_peers(args.peers)[0])
        if out["no_peer"]:
            print(out["no_peer"], file=sys.stderr)
    code = _run_sections(args, out)
    try:
        out["machine"]["loadavg_end"] = " ".join("%.2f" % v for v in os.getloadavg())
    except OSError:
        pass
    if out.get("results"):
        out["summary"] = [{k: v for k, v in r.items() if k != "by"} for r in summarize(out["results"],
                                                                                       floor_rates(out))]
    print(render(out, md=False))
    _write_outputs(args, out)
    return code

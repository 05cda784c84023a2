"""Produce benchmarks/RESULTS.md: every table of the benchmark suite, with the command behind it.

    python benchmarks/run_all.py              # the full run (about 20 minutes on the 2-core machine)
    python benchmarks/run_all.py --quick      # a fast dry run of every section (tiny sizes, 1 repeat),
                                              # written to $TMPDIR/tinybptt-bench-quick/, not over RESULTS.md
    python benchmarks/run_all.py --only grid-f32-1t,gemm   # re-run some sections, keep the others

Each section is one ``tinybptt bench ...`` command (run as ``python -m tinybptt.bench ...``,
which is the same program), writing its JSON to ``benchmarks/results/<section>.json``.
RESULTS.md is then assembled from all the JSON files present: the machine, the date, the
exact command and wall time of every section, a headline of the targets, and every table.
``--only`` re-runs the named sections and re-assembles with the others' stored JSON.

Budget.  The full grid is slow for everyone on the large config (about 0.5-1 s per
iteration for the peers too), so each measurement gets a time budget (``--budget``
seconds of timed runs, split over 6 interleaved rounds, at least 6 runs); the sections
below were sized so that the whole run stays near 20 minutes on the 2-core development
machine.  Increase ``--budget``/``--repeat`` in SECTIONS for steadier numbers.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")
RESULTS_MD = os.path.join(HERE, "RESULTS.md")

#: (name, title, arguments of ``tinybptt bench``).  Order = order in RESULTS.md.
SECTIONS = [
    ("check", "Correctness: every contender against torch, same weights",
     ["--check"]),
    ("grid-f32-1t", "float32, 1 thread: the full grid",
     ["--dtype", "float32", "--threads", "1", "--budget", "1.5", "--repeat", "36",
      "--skip-numpy-backend", "large", "--plot", "benchmarks/results/grid-f32-1t.png"]),
    ("grid-f32-2t", "float32, 2 threads",
     ["--dtype", "float32", "--threads", "2", "--budget", "0.6", "--repeat", "20", "--no-split",
      "--skip-numpy-backend", "large", "--max-iter-s", "2"]),
    ("grid-f64-1t", "float64, 1 thread (mode=\"sequence\" against the peers; the ops target is float32 only)",
     ["--dtype", "float64", "--threads", "1", "--budget", "0.6", "--repeat", "20", "--no-split",
      "--modes", "sequence", "--backends", "c", "--peers", "torch,jax,numpy", "--max-iter-s", "2.5"]),
    ("tiny-gc-each-run", "The tiny config under the older protocol: a full gc.collect() before every timed run",
     ["--configs", "tiny", "--dtype", "float32", "--threads", "1", "--budget", "1", "--repeat", "30",
      "--gc-each-run", "--no-split"]),
    ("scaling", "Scaling with T, H, B and checkpointed BPTT (LSTM, float32, 1 thread)",
     ["--scaling-only", "--cells", "lstm", "--dtype", "float32", "--threads", "1",
      "--plot", "benchmarks/results/scaling.png"]),
    ("gemm", "GEMM kernel: GFLOP/s against torch.matmul and NumPy",
     ["--gemm-only", "--dtype", "float32,float64", "--threads", "1,2", "--gemm-repeat", "5"]),
    ("train", "Training loop: the adding problem in tinybptt, torch and JAX, one pinned core",
     ["--section", "train"]),
]

#: Sections shown in full but kept out of the headline (another protocol, not the one of record).
NOT_IN_HEADLINE = {"tiny-gc-each-run"}

#: --quick: the same sections on tiny work, to check the pipeline end to end.
QUICK = {
    "check": ["--cells", "rnn"],
    "grid": ["--configs", "tiny", "--cells", "rnn", "--repeat", "1", "--rounds", "1", "--budget", "0.1"],
    "scaling": ["--scaling-repeat", "1", "--cells", "rnn"],
    "gemm": ["--gemm-sizes", "32,64", "--gemm-repeat", "1"],
    "train": ["--cells", "rnn", "--train-steps", "8", "--train-rounds", "2", "--train-warmup", "2",
              "--profile-steps", "3", "--profile-warmup", "2"],
}


def quick_args(name, args):
    """The section's arguments shrunk for --quick (later options override earlier ones)."""
    key = "grid" if name.startswith("grid") else name
    args = list(args)
    if key == "gemm":
        args = [a if a != "1,2" else "1" for a in args]
    return args + QUICK.get(key, [])


def run_section(name, args, quick=False):
    os.makedirs(RESULTS_DIR, exist_ok=True)
    js = os.path.join(RESULTS_DIR, name + ".json")
    args = quick_args(name, args) if quick else list(args)
    if quick:  # plots of a dry run go with its JSON, not over the real ones
        args = [os.path.join(RESULTS_DIR, os.path.basename(a)) if a.endswith(".png") else a for a in args]
    cmd = [sys.executable, "-m", "tinybptt.bench"] + args + ["--json", js]
    shown = "tinybptt bench " + " ".join(shlex.quote(a) for a in args)
    print("== %s: %s" % (name, shown), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT)
    wall = time.time() - t0
    if not os.path.exists(js):
        raise SystemExit("section %s failed (exit code %d) and wrote no JSON" % (name, proc.returncode))
    with open(js) as f:
        data = json.load(f)
    data["section"] = {"name": name, "command": shown, "wall_s": wall, "exit_code": proc.returncode,
                       "quick": quick}
    with open(js, "w") as f:
        json.dump(data, f, indent=1)
    print("== %s done in %.0f s (exit code %d)" % (name, wall, proc.returncode), flush=True)
    return data


def load_sections():
    got = []
    for name, title, _ in SECTIONS:
        js = os.path.join(RESULTS_DIR, name + ".json")
        if os.path.exists(js):
            with open(js) as f:
                got.append((name, title, json.load(f)))
    return got


def assemble(sections):
    """RESULTS.md from the stored section JSON files."""
    sys.path.insert(0, ROOT)
    from tinybptt import bench

    lines = ["# tinybptt benchmark results", ""]
    total = sum(d.get("section", {}).get("wall_s", 0) for _, _, d in sections)
    dates = sorted(d["machine"].get("date", "?") for _, _, d in sections)
    quick = any(d.get("section", {}).get("quick") for _, _, d in sections)
    lines += [
        "Produced by `benchmarks/run_all.sh` (= `python benchmarks/run_all.py`), one command; "
        "sections ran %s to %s, %.1f minutes of wall time in total.%s"
        % (dates[0] if dates else "?", dates[-1] if dates else "?", total / 60,
           " **QUICK DRY RUN: tiny sizes, not real measurements.**" if quick else ""),
        "Re-run everything with `benchmarks/run_all.sh`, or some sections with "
        "`python benchmarks/run_all.py --only %s`; each section's raw measurements are in "
        "`benchmarks/results/<section>.json`." % ",".join(n for n, _, _ in SECTIONS[1:3]),
        "How much these ratios move from one run to the next on this shared machine, and where the time goes "
        "on the configs that miss their target (profiles): `benchmarks/README.md`, \"Reading the numbers\".",
        "",
        "## Machine",
        "",
    ]
    if sections:
        lines.append(bench.machine_text(sections[0][2]["machine"], md=True))
        loads = ["%s: %s -> %s" % (n, d["machine"].get("loadavg", "?"), d["machine"].get("loadavg_end", "?"))
                 for n, _, d in sections]
        lines += ["- **load average (1/5/15 min) at start -> end of each section**: " + "; ".join(loads), ""]
    lines += [
        "## How these numbers are made",
        "",
        "- Workload: one recurrent layer, forward + backward, loss "
        "`sum(out**2)` over all outputs, input not requiring grad, zero-grad included. Configs (T, B, I, H): "
        + ", ".join("%s %s" % (k, v) for k, v in bench.CONFIGS.items()) + ".",
        "- Contenders: tinybptt `mode=\"sequence\"` (seq), `\"cell\"`, `\"ops\"` on the C backend and `mode=\"sequence\"` on "
        "the NumPy backend (np-backend); peers `torch.nn.LSTM/GRU/RNN` (torch), `jax.jit(jax.value_and_grad(loss))` "
        "over `lax.scan` with the input projection hoisted (jax), a PyTorch eager loop of primitive ops per step "
        "(torch-ops: the textbook op sequence per step, `x[t] @ W_ih^T + b_ih`, `h @ W_hh^T + b_hh`, "
        "their sum split into gates, nonlinearities and state update op by op; tinybptt's `mode=\"ops\"` runs the "
        "same formulas with leaner nodes: each product-plus-bias is one `linear` node, the RNN and LSTM pre-activation "
        "is one product `[x[t], h] @ [W_ih^T; W_hh^T] + (b_ih + b_hh)` (concat and linear where torch-ops has two "
        "matmuls and three adds), and the GRU update runs as `n + z * (h - n)`), and a "
        "baseline that is not a peer: tinybptt's NumPy reference kernels (`kernels.numpy.seq_forward/seq_backward`) "
        "called directly, without the autograd graph (numpy-ref; tables of runs before it existed show the "
        "hand-written NumPy BPTT it replaced as numpy-bptt).  tinybptt layers run with `layer.record_grad_trace = False` "
        "(no peer records per-step gradients).",
        "- Each contender runs in a worker process started with OMP/MKL/OPENBLAS_NUM_THREADS and XLA_FLAGS "
        "(`--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1` for one thread) set before any "
        "library is imported, plus `torch.set_num_threads` / `tinybptt.set_num_threads`.  The contenders of one "
        "row are measured one after the other, in 6 interleaved rounds, so a burst of load from other users of "
        "this shared machine hits them alike.  With two threads each contender's batch starts after a 0.2 s pause "
        "(`--settle`): thread pools spin for a while after their last job (OpenBLAS about 0.1 s), and on two "
        "cores that starved whichever contender ran next.",
        "- Every contender gets the same weights and input (one seed, PyTorch's names and gate order) and "
        "reports its loss and gradient norms; a contender that disagrees with torch is marked `!` and never "
        "counts as best peer.  The correctness section compares full gradients element by element.",
        "- Garbage collector (timeit's convention, `tinybptt.bench.gc_protocol`): one `gc.collect()` before each "
        "batch of timed runs, the cyclic collector off while the batch runs, restored after.  Until this run the "
        "suite called `gc.collect()` before every single run; that measures a cold start (the first Python and "
        "NumPy operations after a full collection run several times slower, for every contender) and dominated "
        "the tiny config.  The section \"tiny-gc-each-run\" below keeps that protocol for comparison "
        "(`--gc-each-run`); it is left out of the headline.",
        "- Times are medians of the timed runs after warm-up.  Budget: per measurement, `--budget` seconds of "
        "timed runs (at least one per round, at most `--repeat` in all), so slow contenders on the large config get "
        "6 runs; "
        "in the 2-thread and float64 sections a contender whose warm-up iteration exceeds `--max-iter-s` gets a "
        "single timed run (`*`).  The NumPy-backend contender is skipped on the large config (too slow for the "
        "budget; noted under each table), and the float64 section times mode=\"sequence\" against torch, jax and "
        "numpy-ref only (the ops target is a float32 one).  "
        "`spread` (interquartile range / median) tells how noisy each one was, `~` flags ratios where it "
        "exceeds 50%.",
        "- `kernel` / `overhead`: extra runs with every `tinybptt.kernels.backend` function wrapped in a timer; "
        "kernel = time inside kernel calls, overhead = everything else (graph, autograd, Python).  "
        "`seq kernel / floor` compares the sequence kernels' time with the FLOP floor (GEMM FLOPs at "
        "135 GFLOP/s float32, 66 float64 per thread).",
        "",
    ]
    summaries = []
    for name, title, d in sections:
        if d.get("results") and name not in NOT_IN_HEADLINE:
            summaries += bench.summarize(d["results"], bench.floor_rates(d))
    if summaries:
        lines += ["## Headline", "", bench.headline_table(summaries, md=True), ""]
    for name, title, d in sections:
        sec = d.get("section", {})
        lines += ["## %s" % title, "",
                  "Command: `%s` (wall time %.0f s%s)." % (sec.get("command", d.get("command")), sec.get("wall_s", 0),
                                                           ", exit code %d" % sec["exit_code"]
                                                           if sec.get("exit_code") else ""),
                  "", bench.render(d, md=True, headline=False, plot_dir=os.path.dirname(RESULTS_MD), embed_plots=False), ""]
    with open(RESULTS_MD, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    print("wrote %s" % RESULTS_MD)


def main(argv=None):
    p = argparse.ArgumentParser(description="Run the benchmark sections and write benchmarks/RESULTS.md.")
    p.add_argument("--only", help="comma-separated sections to run (%s); the others' stored JSON is reused"
                   % ",".join(n for n, _, _ in SECTIONS))
    p.add_argument("--quick", action="store_true", help="tiny sizes and 1 repeat: check the pipeline only")
    p.add_argument("--assemble-only", action="store_true", help="only rebuild RESULTS.md from stored JSON")
    args = p.parse_args(argv)
    global RESULTS_DIR, RESULTS_MD
    if args.quick:  # a dry run never overwrites the real results
        import tempfile
        RESULTS_DIR = os.path.join(tempfile.gettempdir(), "tinybptt-bench-quick")
        RESULTS_MD = os.path.join(RESULTS_DIR, "RESULTS.md")
        print("--quick: writing to %s" % RESULTS_DIR)
    names = [n for n, _, _ in SECTIONS]
    only = names if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in names]
    if bad:
        p.error("unknown section(s) %s; choose from %s" % (",".join(bad), ",".join(names)))
    if not args.assemble_only:
        for name, title, sargs in SECTIONS:
            if name in only:
                run_section(name, sargs, args.quick)
    assemble(load_sections())
    return 0


if __name__ == "__main__":
    sys.exit(main())

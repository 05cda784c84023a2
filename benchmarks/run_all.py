"""Produce benchmarks/RESULTS.md: every target of the benchmark suite, with the command behind each table.

    python benchmarks/run_all.py              # the targets (about 25 minutes on the 2-core machine)
    python benchmarks/run_all.py --quick      # a fast dry run of every section (tiny sizes, 1 repeat),
                                              # written to $TMPDIR/tinybptt-bench-quick/, not over RESULTS.md
    python benchmarks/run_all.py --only seq-2t,train   # re-run some sections, keep the others
    python benchmarks/run_all.py --extras     # also the further grids (every mode, float64, GEMM, scaling)

Each section is one ``tinybptt bench ...`` command (run as ``python -m tinybptt.bench ...``,
which is the same program) or one script of this folder (frontier.py, million_steps.py),
writing its JSON to ``benchmarks/results/<section>.json``.  RESULTS.md is then assembled
from the JSON files present: the machine, the headline of the targets, and for every section
its exact command, wall time, commit and tables.  ``--only`` re-runs the named sections and
re-assembles with the others' stored JSON.

Budget.  The large config is slow for everyone (about 0.5-1 s per iteration for the peers
too), so each measurement gets a time budget (``--budget`` seconds of timed runs, split
over 6 interleaved rounds).  Increase ``--budget``/``--repeat`` for steadier numbers.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")
RESULTS_MD = os.path.join(HERE, "RESULTS.md")
sys.path[:0] = [ROOT, HERE]  # tinybptt from this checkout, and the scripts beside this one (their tables)

#: The sequence-mode grid against the peers, one pinned core: run four times, because on this
#: shared machine a ratio moves by 0.1-0.2 from one run to the next and the targets hold only if
#: they hold in every run.  The first run also splits the time into kernels and the rest.  At most 120
#: timed runs (20 per round) where the budget allows.  With 24 (4 per round, and the collection
#: before each batch that gc_protocol no longer makes) the tiny config's ratios ranged over 0.95-1.41
#: (RNN) and 0.51-0.83 (LSTM) in four runs; with 120, over 1.04-1.07 and 0.50-0.53 in three.
SEQ_1T = ["--modes", "sequence", "--backends", "c", "--peers", "torch,jax", "--dtype", "float32",
          "--threads", "1", "--cpus", "1", "--budget", "1", "--repeat", "120"]
SEQ_RUNS = 4

#: The training loop on one core: run three times (the first with the flush-to-zero run and the
#: per-phase profile), because a worker process's step time moves by about 5% from one process to
#: the next and the 0.5x target is decided in that range.
TRAIN_RUNS = 3

#: (name, title, kind, arguments).  kind "bench": arguments of ``tinybptt bench``;
#: kind "script": a script of benchmarks/ and its arguments (it writes the JSON given by OUT_FLAG).
#: Order = order in RESULTS.md.  These are the sections of the default run: one per target.
SECTIONS = [
    ("check", "Correctness: every contender against torch, same weights", "bench", ["--check"]),
] + [
    ("seq-1t-run%d" % k, "mode=\"sequence\" against torch and JAX, 1 thread, run %d of %d" % (k, SEQ_RUNS), "bench",
     SEQ_1T + ([] if k == 1 else ["--no-split"]))
    for k in range(1, SEQ_RUNS + 1)
] + [
    ("seq-2t", "mode=\"sequence\" against torch and JAX, 2 threads, every contender pinned to CPUs 0-1", "bench",
     ["--modes", "sequence", "--backends", "c", "--peers", "torch,jax", "--dtype", "float32", "--threads", "2",
      "--cpus", "0-1", "--budget", "0.6", "--repeat", "20", "--no-split", "--max-iter-s", "2"]),
    ("train", "Training loop: the adding problem and subject-verb agreement in tinybptt, torch and JAX, one "
     "pinned core", "bench",
     ["--section", "train", "--cpus", "1"]),
] + [
    ("train-run%d" % k, "Training loop, one pinned core, run %d of %d" % (k, TRAIN_RUNS), "bench",
     ["--section", "train", "--cpus", "1", "--no-ftz-run", "--profile-steps", "0"])
    for k in range(2, TRAIN_RUNS + 1)
] + [
    ("train-2t", "Training loop, 2 threads, every contender pinned to CPUs 0-1", "bench",
     ["--section", "train", "--threads", "2", "--cpus", "0-1", "--no-ftz-run", "--profile-steps", "0"]),
    ("frontier", "Memory against time: full BPTT, every-k checkpointing and binomial checkpointing", "script",
     ["benchmarks/frontier.py", "--repeat", "5", "--cpu", "1", "--out", "benchmarks/results/frontier"]),
    ("million", "A million steps in bounded memory", "script",
     ["benchmarks/million_steps.py", "--cpu", "1", "--json", "benchmarks/results/million.json"]),
]

#: More measurements, run only when named with --only (or with --extras); their tables follow the
#: targets', each with the date and commit it was measured on.
EXTRAS = [
    ("grid-f32-1t", "float32, 1 thread: every mode of tinybptt against every peer", "bench",
     ["--dtype", "float32", "--threads", "1", "--budget", "1.5", "--repeat", "36",
      "--skip-numpy-backend", "large", "--plot", "benchmarks/results/grid-f32-1t.png"]),
    ("grid-f32-2t", "float32, 2 threads: every mode", "bench",
     ["--dtype", "float32", "--threads", "2", "--budget", "0.6", "--repeat", "20", "--no-split",
      "--skip-numpy-backend", "large", "--max-iter-s", "2"]),
    ("grid-f64-1t", "float64, 1 thread (mode=\"sequence\" against the peers)", "bench",
     ["--dtype", "float64", "--threads", "1", "--budget", "0.6", "--repeat", "20", "--no-split",
      "--modes", "sequence", "--backends", "c", "--peers", "torch,jax,numpy", "--max-iter-s", "2.5"]),
    ("tiny-gc-each-run", "The tiny config under the older protocol: a full gc.collect() before every timed run",
     "bench", ["--configs", "tiny", "--dtype", "float32", "--threads", "1", "--budget", "1", "--repeat", "30",
               "--gc-each-run", "--no-split"]),
    ("scaling", "Scaling with T, H, B and checkpointed BPTT (LSTM, float32, 1 thread)", "bench",
     ["--scaling-only", "--cells", "lstm", "--dtype", "float32", "--threads", "1",
      "--plot", "benchmarks/results/scaling.png"]),
    ("gemm", "GEMM kernel: GFLOP/s against torch.matmul and NumPy", "bench",
     ["--gemm-only", "--dtype", "float32,float64", "--threads", "1,2", "--gemm-repeat", "5"]),
]

#: Sections shown in full but kept out of the headline (another protocol, not the one of record).
NOT_IN_HEADLINE = {"tiny-gc-each-run", "grid-f32-1t", "grid-f32-2t", "grid-f64-1t"}

#: --quick: the same sections on tiny work, to check the pipeline end to end.
QUICK = {
    "check": ["--cells", "rnn"],
    "grid": ["--configs", "tiny", "--cells", "rnn", "--repeat", "1", "--rounds", "1", "--budget", "0.1"],
    "scaling": ["--scaling-repeat", "1", "--cells", "rnn"],
    "gemm": ["--gemm-sizes", "32,64", "--gemm-repeat", "1"],
    "train": ["--cells", "rnn", "--train-steps", "8", "--train-rounds", "2", "--train-warmup", "2",
              "--profile-steps", "3", "--profile-warmup", "2", "--train-kernel-steps", "3"],
    "frontier": ["--config", "60x2x4x8", "--ks", "5,20", "--budgets", "2,8", "--repeat", "1"],
    "million": ["--T", "2000", "--peers-T", "1000,2000", "--peers", "tinybptt"],
}


def quick_args(name, args):
    """The section's arguments shrunk for --quick (later options override earlier ones)."""
    key = "grid" if name.startswith(("grid", "seq")) else "train" if name.startswith("train") else name
    args = list(args)
    if key == "gemm":
        args = [a if a != "1,2" else "1" for a in args]
    return args + QUICK.get(key, [])


def _git_head():
    try:
        return subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return "?"


def run_section(section, quick=False):
    """Run one section and store its JSON (with the command, wall time and commit) in RESULTS_DIR."""
    name, _, kind, args = section
    os.makedirs(RESULTS_DIR, exist_ok=True)
    js = os.path.join(RESULTS_DIR, name + ".json")
    args = quick_args(name, args) if quick else list(args)
    # outputs of the section (plots, a script's JSON) go to RESULTS_DIR, so a dry run never overwrites
    args = [os.path.join(RESULTS_DIR, os.path.basename(a)) if a.startswith("benchmarks/results/") else a
            for a in args]
    if kind == "bench":
        cmd = [sys.executable, "-m", "tinybptt.bench"] + args + ["--json", js]
        shown = "tinybptt bench " + " ".join(shlex.quote(a) for a in args)
    else:
        cmd = [sys.executable] + args
        shown = "python " + " ".join(shlex.quote(os.path.relpath(a, ROOT) if a.startswith(RESULTS_DIR) else a)
                                     for a in args)
    print("== %s: %s" % (name, shown), flush=True)
    from tinybptt import bench
    machine = bench.machine_info()  # a script section's machine, as a bench section records it
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT)
    wall = time.time() - t0
    if kind == "script":  # the script wrote its own JSON where its --out/--json said
        out_js = next(a for a in args if a.startswith(RESULTS_DIR))
        out_js = out_js if out_js.endswith(".json") else out_js + ".json"
        if os.path.exists(out_js) and out_js != js:
            os.replace(out_js, js)
    if not os.path.exists(js):
        raise SystemExit("section %s failed (exit code %d) and wrote no JSON" % (name, proc.returncode))
    with open(js) as f:
        data = json.load(f)
    if "machine" not in data:
        data["machine"] = dict(machine, loadavg_end=bench.machine_info().get("loadavg"))
    data["section"] = {"name": name, "kind": kind, "command": shown, "wall_s": wall, "exit_code": proc.returncode,
                       "quick": quick, "commit": _git_head(), "finished": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                        time.gmtime())}
    with open(js, "w") as f:
        json.dump(data, f, indent=1)
    print("== %s done in %.0f s (exit code %d)" % (name, wall, proc.returncode), flush=True)
    return data


def load_sections(sections):
    got = []
    for name, title, kind, _ in sections:
        js = os.path.join(RESULTS_DIR, name + ".json")
        if os.path.exists(js):
            with open(js) as f:
                got.append((name, title, json.load(f)))
    return got


# --------------------------------------------------------------------------- the headline of the targets


def spread_table(runs, report):
    """mode="sequence" / the faster peer in each of the runs: median, lowest-highest, runs that met the target."""
    per = {}  # (threads, cell, config) -> [summary row of each run]
    for summary in runs:
        for r in summary:
            if r["seq_ratio"] is not None:
                per.setdefault((r["threads"], r["cell"], r["config"]), []).append(r)
    configs = list(dict.fromkeys(k[2] for k in per))
    groups = list(dict.fromkeys(k[:2] for k in per))
    lines = ["| threads | cell | " + " | ".join(configs) + " |", "|---|---|" + "---:|" * len(configs)]
    for g in groups:
        cells = []
        for c in configs:
            rows = per.get(g + (c,), [])
            if not rows:
                cells.append("-")
                continue
            v = sorted(r["seq_ratio"] for r in rows)
            met = sum(bool(r["seq_pass"]) for r in rows)
            peers = sorted(set(report.SHORT.get(r["best_peer"], r["best_peer"]) for r in rows))
            cells.append("%.2fx (%.2f-%.2f) %d/%d %s" % (statistics.median(v), v[0], v[-1], met, len(rows),
                                                         "/".join(peers)))
        lines.append("| %d | %s | " % (g[0], g[1].upper()) + " | ".join(cells) + " |")
    return "\n".join(lines)


def overhead_table(data):
    """Time outside the kernels per layer call, from the kernel/overhead split of one run (tiny and small)."""
    lines = ["| cell | config | total ms | in kernels ms | outside the kernels, us per call |", "|---|---|---:|---:|---:|"]
    for r in data.get("results", []):
        if r["contender"] == "tinybptt:sequence" and r.get("kernel_ms") is not None and r["config"] in ("tiny", "small"):
            lines.append("| %s | %s | %.3f | %.3f | %.0f |" % (r["cell"].upper(), r["config"], r["split_total_ms"],
                                                              r["kernel_ms"], 1e3 * (r["split_total_ms"] - r["kernel_ms"])))
    return "\n".join(lines)


def _train_tasks(rows):
    from tinybptt.bench.train import train_tasks
    return train_tasks(rows)


def train_headline(data, report):
    """Training loop: tinybptt / the faster peer for each task and cell, and the default run against
    the flush-to-zero run."""
    from tinybptt.bench.train import floor_ratios, kernel_ratios, train_ratios
    rows = data["train"]["rows"]
    floors = floor_ratios(data["train"])  # the adding problem's (its profile's)
    lines = ["| threads | task | cell | tinybptt / faster peer | target <=0.5x | matrix products alone / faster peer "
             "| recurrent kernels alone / faster peer | default / flush-to-zero |", "|---:|---|---|---:|---|---:|---:|---:|"]
    threads = len(rows[0].get("cpus", ())) if rows else "?"  # each section uses as many threads as CPUs
    # one thread: CPU time (not inflated when other processes take turns on the core); more threads:
    # wall time, since CPU time adds up the threads and would penalise the one that uses both cores
    key = "cpu_s" if threads == 1 else "wall_s"
    for task in _train_tasks(rows):
        kernels = kernel_ratios(rows, task)  # (one thread only)
        for cell, (ratio, best, ftz) in train_ratios(rows, key, task).items():
            lines.append("| %s | %s | %s | %s (%s) | %s | %s | %s | %s |" % (
                threads, task, cell.upper(), report.fmt_ratio(ratio), best,
                report.passfail(ratio is not None and ratio <= 0.5),
                report.fmt_ratio(floors.get(cell)) if threads == 1 and task == "adding" else "-",
                report.fmt_ratio(kernels.get(cell)), report.fmt_ratio(ratio / ftz) if ratio and ftz else "-"))
    return "\n".join(lines)


def train_spread(runs):
    """The training loop's ratio in each of the runs: median, lowest-highest, runs that met 0.5x; and
    the same for tinybptt's recurrent kernels alone against the faster peer's step."""
    from tinybptt.bench.train import kernel_ratios, train_ratios
    per, kern = {}, {}  # (task, cell) -> [(ratio, faster peer) of each run], [kernels' ratio of each run]
    for d in runs:
        rows = d["train"]["rows"]
        for task in _train_tasks(rows):
            for cell, ratio in kernel_ratios(rows, task).items():
                kern.setdefault((task, cell), []).append(ratio)
            for cell, (ratio, best, _) in train_ratios(rows, "cpu_s", task).items():
                if ratio is not None:
                    per.setdefault((task, cell), []).append((ratio, best))

    def spread(v):
        v = sorted(v)
        return "%.2fx (%.2f-%.2f)" % (statistics.median(v), v[0], v[-1]) if v else "-"

    lines = ["| task | cell | tinybptt / faster peer | runs met | faster peer | recurrent kernels alone / faster peer |",
             "|---|---|---:|---:|---|---:|"]
    for (task, cell), got in per.items():
        v = [r for r, _ in got]
        lines.append("| %s | %s | %s | %d/%d | %s | %s |" % (
            task, cell.upper(), spread(v), sum(r <= 0.5 for r in v), len(v),
            "/".join(sorted(set(b for _, b in got))), spread(kern.get((task, cell), []))))
    return "\n".join(lines)


def assemble(targets, extras):
    """RESULTS.md from the stored section JSON files: the targets' headline, then every table."""
    from tinybptt import bench
    from tinybptt.bench import report
    import frontier
    import million_steps

    sections = targets + extras
    lines = ["# tinybptt benchmark results", ""]
    total = sum(d.get("section", {}).get("wall_s", 0) for _, _, d in targets)
    finished = sorted(d.get("section", {}).get("finished", "?") for _, _, d in targets)
    commits = sorted(set(d.get("section", {}).get("commit", "?") for _, _, d in targets))
    quick = any(d.get("section", {}).get("quick") for _, _, d in sections)
    lines += [
        "Produced by `benchmarks/run_all.sh` (= `python benchmarks/run_all.py`), one command, on commit %s; "
        "the sections finished between %s and %s, %.1f minutes of wall time in all.%s"
        % (" / ".join(commits), finished[0] if finished else "?", finished[-1] if finished else "?", total / 60,
           " **QUICK DRY RUN: tiny sizes, not real measurements.**" if quick else ""),
        "Re-run everything with `benchmarks/run_all.sh`, or some sections with "
        "`python benchmarks/run_all.py --only seq-2t,train`; each section's raw measurements are in "
        "`benchmarks/results/<section>.json`.  The further measurements at the end (`--extras`) are older runs, "
        "each labelled with its date and commit.",
        "How much these ratios move from one run to the next on this shared machine, and where the time goes "
        "(profiles): `benchmarks/README.md`, \"Reading the numbers\".",
        "",
        "## Machine",
        "",
    ]
    if targets:
        lines.append(bench.machine_text(targets[0][2]["machine"], md=True))
        loads = ["%s: %s -> %s" % (n, d["machine"].get("loadavg", "?"), d["machine"].get("loadavg_end", "?"))
                 for n, _, d in targets]
        lines += ["- **load average (1/5/15 min) at start -> end of each section**: " + "; ".join(loads), ""]
    lines += headline(dict((n, d) for n, _, d in targets), report)
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
        "- Garbage collector (timeit's convention, `tinybptt.bench.gc_protocol`): the cyclic collector off while a "
        "batch of timed runs runs, restored after, and no collection forced on the way in.  A full `gc.collect()` "
        "leaves the next runs cold (the Python and NumPy operations after it run several times slower, for every "
        "contender): the oldest protocol called it before every run, and the section \"tiny-gc-each-run\" keeps "
        "that protocol for comparison (`--gc-each-run`, left out of the headline); the next one called it before "
        "each batch, which still slowed the first runs of every batch.  Where a run is cheap, each batch starts "
        "with one untimed run, since another contender has just had the core.",
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
    for part, group in (("", targets), ("Further measurements (older runs; not re-run by default)", extras)):
        if part and group:
            lines += ["# " + part, ""]
        for name, title, d in group:
            lines += section_text(name, title, d, bench, frontier, million_steps)
    with open(RESULTS_MD, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    print("wrote %s" % RESULTS_MD)


def headline(by_name, report):
    """The targets, each with its ratio: sequence mode in every run, the per-call overhead, the loops."""
    out = []
    runs = [report.summarize(d["results"], report.floor_rates(d)) for n, d in sorted(by_name.items())
            if n.startswith("seq-1t") and d.get("results")]
    if runs:
        out += ["## Headline", "",
                "**mode=\"sequence\" forward+backward, float32: tinybptt time / the faster peer's time over %d runs: "
                "median (lowest-highest), the runs that met the target (at most 0.8x; 1.1x on large), the faster "
                "peer**" % len(runs), "", spread_table(runs, report), ""]
    if by_name.get("seq-2t", {}).get("results"):
        two = report.summarize(by_name["seq-2t"]["results"], report.floor_rates(by_name["seq-2t"]))
        out += ["**The same with 2 threads, every contender pinned to CPUs 0-1 (one run)**", "",
                spread_table([two], report), ""]
    if by_name.get("seq-1t-run1", {}).get("results"):
        out += ["**Fixed cost: time outside the kernels per forward+backward call, from run 1's split (the kernel "
                "functions timed from Python, so their wrappers count as kernel time; outside them: the layer call, "
                "the graph, the backward pass, zero_grad, and the loss `sum(out**2)` with its gradient, a few us at "
                "tiny and most of the rest at small). Target: about 30 us**",
                "", overhead_table(by_name["seq-1t-run1"]), ""]
    train_runs = [d for n, d in sorted(by_name.items())
                  if (n == "train" or n.startswith("train-run")) and d.get("train")]
    if len(train_runs) > 1:
        out += ["**Training loop, one pinned core, over %d runs: tinybptt / the faster peer (CPU time per step): "
                "median (lowest-highest), the runs that met the target (at most 0.5x), the faster peer**"
                % len(train_runs), "", train_spread(train_runs), ""]
    for n in ("train", "train-2t"):
        if by_name.get(n, {}).get("train"):
            out += ["**Training loop (%s): tinybptt / the faster peer (CPU time per step with one thread, "
                    "wall time with two); default float32 run against the same run with flush-to-zero (target: within "
                    "1.2x)**" % n, "", train_headline(by_name[n], report), ""]
    return out


def section_text(name, title, d, bench, frontier, million_steps):
    """One section of RESULTS.md: its command, then its tables."""
    sec = d.get("section", {})
    when = (", commit %s, finished %s" % (sec["commit"].split()[0], sec.get("finished", "?")) if sec.get("commit")
            else ", %s" % d.get("machine", {}).get("date", d.get("date", "")))
    head = ["## %s" % title, "",
            "Command: `%s` (wall time %.0f s%s%s)." % (
                sec.get("command", d.get("command")), sec.get("wall_s", 0),
                ", exit code %d" % sec["exit_code"] if sec.get("exit_code") else "", when), ""]
    if name == "frontier":
        return head + [frontier.markdown(d), "", "Plot: `benchmarks/results/frontier.png`.", ""]
    if name == "million":
        return head + [million_steps.markdown(d), ""]
    return head + [bench.render(d, md=True, headline=False, plot_dir=os.path.dirname(RESULTS_MD),
                                embed_plots=False), ""]


def main(argv=None):
    p = argparse.ArgumentParser(description="Run the benchmark sections and write benchmarks/RESULTS.md.")
    p.add_argument("--only", help="comma-separated sections to run (%s); the others' stored JSON is reused"
                   % ",".join(n for n, _, _, _ in SECTIONS + EXTRAS))
    p.add_argument("--extras", action="store_true", help="also run the further sections (%s)"
                   % ",".join(n for n, _, _, _ in EXTRAS))
    p.add_argument("--quick", action="store_true", help="tiny sizes and 1 repeat: check the pipeline only")
    p.add_argument("--assemble-only", action="store_true", help="only rebuild RESULTS.md from stored JSON")
    args = p.parse_args(argv)
    global RESULTS_DIR, RESULTS_MD
    if args.quick:  # a dry run never overwrites the real results
        import tempfile
        RESULTS_DIR = os.path.join(tempfile.gettempdir(), "tinybptt-bench-quick")
        RESULTS_MD = os.path.join(RESULTS_DIR, "RESULTS.md")
        print("--quick: writing to %s" % RESULTS_DIR)
    every = SECTIONS + EXTRAS
    names = [s[0] for s in every]
    default = [s[0] for s in SECTIONS + (EXTRAS if args.extras else [])]
    only = default if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in names]
    if bad:
        p.error("unknown section(s) %s; choose from %s" % (",".join(bad), ",".join(names)))
    if not args.assemble_only:
        for section in every:
            if section[0] in only:
                run_section(section, args.quick)
    assemble(load_sections(SECTIONS), load_sections(EXTRAS))
    return 0


if __name__ == "__main__":
    sys.exit(main())

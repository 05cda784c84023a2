"""The training-loop section: two tasks trained by tinybptt, PyTorch and JAX, one core each.

``tinybptt bench --section train`` trains each task for each cell, in each library,
from the same starting weights and on the same batches (one seed), and times the
steps: making or drawing the batch, forward, loss, zero-grad, backward, clip and
Adam, with the loss read back every step.  The tasks (``train_loops``):

``adding``     the adding problem (T=100, B=32, H=64, Adam lr 1e-2, gradient-norm
               clip 1.0, float32), batches from ``tinybptt.tasks.adding_problem``;
``agreement``  subject-verb agreement (B=64, embeddings E=32, H=64, Adam lr 3e-3,
               clip 1.0, float32), batches drawn from a pool of sentences made once,
               each padded to the pool's longest prefix.

Evaluation on a test set runs between rounds, outside the timed steps.  Every
worker is pinned to the same single core before any library starts a thread, and
the contenders of a cell take turns in interleaved rounds, each in its own worker
process started afresh for each cell and task.  Like ``tinybptt train``, every loop
evaluates the test set once before its first step: besides the baseline it gives,
this matters for speed, because how much memory a process has freed before
decides whether NumPy's large arrays come fresh from the OS, page fault by page
fault, at every step (glibc keeps freed memory for reuse once it has handed back a
large block, such as the test set's activations).  The layer forward's arrays do
not depend on it: they come from tinybptt's workspace (``kernels.workspace``),
reused from step to step.

tinybptt runs with its default settings (``mode="sequence"``, the layer's
gradient trace recorded, subnormal numbers kept).  A second tinybptt row,
``tinybptt-ftz``, runs with ``tinybptt.set_flush_to_zero(True)``: shown for
information, never the default.  After its timed steps, tinybptt's loop takes a few more
with its two recurrent kernels timed, for each task: the share of the faster peer's step that
those kernels alone take, below which no change outside them can bring the loop
(``kernel_ratios``).  The per-phase profile that follows the table (``train_profile``) takes
the adding problem's step apart.
"""
import os
import statistics
import time

import numpy as np

from ..display import Progress
from .machine import cpu_model
from .problems import INSTALL_HINT, peer_available
from .report import fmt_ratio, render_table
from .train_loops import TASKS, make_loop
from .train_profile import profile_tables, recurrent_kernel_steps
from .workers import pool_for

#: The adding problem's configuration: the README's adding-problem run (the profile's too).
TRAIN_CONFIG = TASKS["adding"].config
#: The tasks of the section, in order.
TRAIN_TASKS = tuple(TASKS)
TRAIN_CONTENDERS = ("tinybptt", "torch", "jax", "tinybptt-ftz")
#: Target: tinybptt's training loop at most this fraction of the faster peer's time, every cell.
TRAIN_TARGET = 0.5
#: Worker process of each contender: one each, so no contender inherits another's heap.
FAMILY = {"tinybptt": "tinybptt", "tinybptt-ftz": "tinybptt-ftz", "torch": "torch", "jax": "jax"}

# --------------------------------------------------------------------------- worker side

_LOOPS = {}  # the loop of each (contender, task, cell) between rounds: training continues where it stopped
_TASKS = {}  # each task's data (the agreement pool takes a moment to make), per (task, seed)


def _set_ftz(contender, on):
    if contender == "tinybptt-ftz":
        import tinybptt
        tinybptt.set_flush_to_zero(on)


def _task(name, seed):
    if (name, seed) not in _TASKS:
        _TASKS[name, seed] = TASKS[name](seed)
    return _TASKS[name, seed]


def _loop_state(req):
    task = _task(req.get("task", "adding"), req["seed"])
    key = (req["contender"], task.name, req["cell"])
    if req.get("first") or key not in _LOOPS:
        loop = make_loop(req["contender"], req["cell"], task)
        test = task.test_set()
        loop.evaluate(*test)  # untimed, as `tinybptt train` measures the test loss before step 1 (see above)
        _LOOPS[key] = {"loop": loop, "task": task, "rng": np.random.default_rng(req["seed"]), "test": test,
                       "step": 0}
    return key, _LOOPS[key]


def _timed_steps(state, n, timed):
    """``n`` training steps; returns (per-step wall seconds, per-step CPU seconds, losses), the
    times empty unless ``timed``."""
    loop, task, rng = state["loop"], state["task"], state["rng"]
    wall, cpu, losses = [], [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(loop.step(*task.batch(rng)))
        if timed:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    state["step"] += n
    return wall, cpu, losses


def train_run(req):
    """Worker side: ``warmup`` untimed steps when ``first``, then ``steps`` timed steps, then
    the test metric (untimed).  The loop is kept for the next round unless ``final``; after the
    final round, tinybptt's loop takes ``kernel_steps`` more steps with its recurrent kernels timed
    (``train_profile.recurrent_kernel_steps``)."""
    key, state = _loop_state(req)
    _set_ftz(req["contender"], True)
    try:
        if req.get("first"):
            _timed_steps(state, req.get("warmup", 0), timed=False)
        wall, cpu, losses = _timed_steps(state, req["steps"], timed=True)
        test_metric = state["loop"].evaluate(*state["test"])
        kernel_cpu = []
        if req.get("final") and req["contender"] == "tinybptt" and req.get("kernel_steps", 0) > 0:
            kernel_cpu = recurrent_kernel_steps(state["loop"], state["task"], state["rng"], req["kernel_steps"])
    finally:
        _set_ftz(req["contender"], False)
    if req.get("final"):
        _LOOPS.pop(key, None)
    return {"step_s": wall, "cpu_s": cpu, "first_loss": losses[0], "last_loss": losses[-1],
            "test_metric": test_metric, "step": state["step"], "cpus": sorted(os.sched_getaffinity(0)),
            "kernel_cpu_s": kernel_cpu}


# --------------------------------------------------------------------------- parent side


def train_cpus(args):
    """The CPUs of the section: ``--cpus``, else one core (the last this process may use)."""
    if args.cpus:
        return args.cpus
    return [max(os.sched_getaffinity(0))]


def train_contenders(args):
    """(contenders, notes): tinybptt (and its flush-to-zero run) and the installed peers asked for."""
    notes = []
    out = ["tinybptt"]
    for p in ("torch", "jax"):
        if p not in args.peers:
            continue
        if peer_available(p):
            out.append(p)
        else:
            notes.append("peer %s skipped: it is not installed (%s)" % (p, INSTALL_HINT))
    if not args.no_ftz_run:
        out.append("tinybptt-ftz")
    return out, notes


def _round_plan(steps, rounds):
    """Timed steps per round: ``steps`` split as evenly as possible over ``rounds``."""
    rounds = max(1, min(rounds, steps))
    return [steps // rounds + (1 if k < steps % rounds else 0) for k in range(rounds)]


def _merge(acc, res):
    if acc is None:
        return dict(res, rounds=1, evals=[(res["step"], res["test_metric"])])
    acc["step_s"] += res["step_s"]
    acc["cpu_s"] += res["cpu_s"]
    acc["evals"].append((res["step"], res["test_metric"]))
    acc.update(last_loss=res["last_loss"], test_metric=res["test_metric"], step=res["step"],
               rounds=acc["rounds"] + 1, kernel_cpu_s=acc["kernel_cpu_s"] + res["kernel_cpu_s"])
    return acc


def _train_cell(pool, args, task, cell, contenders, prog):
    plan = _round_plan(args.train_steps, args.train_rounds)
    got = {c: None for c in contenders}
    for k, n in enumerate(plan):
        for c in contenders:
            if got[c] is not None and not got[c].get("ok", True):
                continue
            req = {"op": "train", "contender": c, "task": task, "cell": cell, "seed": args.seed, "steps": n,
                   "warmup": args.train_warmup, "first": k == 0, "final": k == len(plan) - 1,
                   "kernel_steps": args.train_kernel_steps}
            res = pool.request(FAMILY[c], req, timeout=args.timeout)
            got[c] = _merge(got[c], res) if res.get("ok") else res
            prog.update(desc="train %s %s %s round %d/%d" % (task, cell, c, k + 1, len(plan)))
    return got


def _summarise(task, cell, got):
    rows = []
    for c, r in got.items():
        row = {"task": task, "cell": cell, "contender": c, "ok": bool(r and r.get("ok", True) and "step_s" in r)}
        if not row["ok"]:
            row["error"] = (r or {}).get("error", "not measured")
        else:
            ms = [1e3 * s for s in r["step_s"]]
            row.update(steps=len(ms), wall_s=sum(r["step_s"]), cpu_s=sum(r["cpu_s"]),
                       median_ms=statistics.median(ms), first_loss=r["first_loss"], last_loss=r["last_loss"],
                       test_metric=r["test_metric"], evals=r["evals"], cpus=r["cpus"], rounds=r["rounds"])
            if r["kernel_cpu_s"]:  # tinybptt's recurrent kernels in the steps after the timed ones
                row.update(kernel_cpu_s=sum(r["kernel_cpu_s"]), kernel_steps=len(r["kernel_cpu_s"]))
        rows.append(row)
    return rows


def run_train(args, progress_enabled=True):
    """The training-loop section: returns (rows, notes), one row per (task, cell, contender)."""
    contenders, notes = train_contenders(args)
    cpus = args.cpus = train_cpus(args)  # the profile that follows runs on the same core
    rows = []
    total = (len(args.train_tasks) * len(args.cells) * len(contenders)
             * len(_round_plan(args.train_steps, args.train_rounds)))
    with Progress(total, enabled=progress_enabled and not args.quiet, lines=True) as prog:
        for task in args.train_tasks:
            for cell in args.cells:  # fresh workers for each cell: a process that trained one model before
                with pool_for(args, args.threads[0]) as pool:  # has a grown heap and a different speed
                    rows += _summarise(task, cell, _train_cell(pool, args, task, cell, contenders, prog))
    notes.append("every worker pinned to CPU %s (%s), %d thread%s" % (
        ",".join(map(str, cpus)), cpu_model(), args.threads[0], "" if args.threads[0] == 1 else "s"))
    return rows, notes


# --------------------------------------------------------------------------- tables


def task_of(row):
    """The task a row measured (rows stored before the agreement loop existed have no "task": the adding problem)."""
    return row.get("task", "adding")


def train_tasks(rows):
    """The tasks the rows measured, in order."""
    return list(dict.fromkeys(map(task_of, rows)))


def train_ratios(rows, key="cpu_s", task="adding"):
    """{cell: (tinybptt / faster peer, the faster peer, tinybptt-ftz / faster peer)} of the total
    ``key`` ("cpu_s": process CPU time, "wall_s": wall time) of ``task``'s timed steps."""
    rows = [r for r in rows if task_of(r) == task]
    out = {}
    for cell in dict.fromkeys(r["cell"] for r in rows):
        by = {r["contender"]: r for r in rows if r["cell"] == cell and r["ok"]}
        peers = {c: by[c][key] for c in ("torch", "jax") if c in by}
        best = min(peers, key=peers.get) if peers else None
        ratio = by["tinybptt"][key] / peers[best] if best and "tinybptt" in by else None
        ftz = by["tinybptt-ftz"][key] / peers[best] if best and "tinybptt-ftz" in by else None
        out[cell] = (ratio, best, ftz)
    return out


PRODUCTS = "input and recurrent projections forward; dW_ih, dW_hh and dh = dgates @ W_hh backward"

TIME_NOTE = ("ms/step = the timed steps' total process CPU time / steps (wall time in brackets). On one pinned core "
             "CPU time is the time the contender itself ran: equal to wall time on an idle machine, and not "
             "inflated when other processes take turns on the core, as they did here whenever wall > CPU. Ratios "
             "use CPU time; the wall-time ratio is shown beside them.")


def _floors(train):
    """{cell: (floor ms, GFLOP/s)} from the profile's default-settings rows (see
    ``train_profile.product_floor``)."""
    return {r["cell"]: (r["floor_ms"], r["floor_gflops"]) for r in train.get("profile") or ()
            if not r.get("ftz") and "floor_ms" in r}


def floor_ratios(train):
    """{cell: the matrix-product floor / the faster peer's CPU time per step} of the adding problem,
    the task the profile measures (see ``_floors``)."""
    rows, floors = [r for r in train["rows"] if task_of(r) == "adding"], _floors(train)
    out = {}
    for cell, (_, best, _) in train_ratios(rows).items():
        by = {r["contender"]: r for r in rows if r["cell"] == cell and r["ok"]}
        if best and cell in floors:
            out[cell] = floors[cell][0] / (1e3 * by[best]["cpu_s"] / by[best]["steps"])
    return out


def kernel_ratios(rows, task="adding"):
    """{cell: tinybptt's recurrent kernels' CPU time per step / the faster peer's whole step} of ``task``,
    where the kernels were timed (``train_run``'s ``kernel_steps``) on one core.  The loop cannot get
    below this ratio by any change outside the kernels."""
    rows = [r for r in rows if task_of(r) == task]
    out = {}
    for cell, (_, best, _) in train_ratios(rows, task=task).items():
        by = {r["contender"]: r for r in rows if r["cell"] == cell and r["ok"]}
        tiny = by.get("tinybptt", {})
        if best and tiny.get("kernel_steps") and len(tiny.get("cpus", ())) == 1:
            out[cell] = (tiny["kernel_cpu_s"] / tiny["kernel_steps"]) / (by[best]["cpu_s"] / by[best]["steps"])
    return out


def _train_row(cell, by, contenders, ratio, best, ftz, wall_ratio, floor, kernels):
    times = ["%.2f (%.2f)" % (1e3 * by[c]["cpu_s"] / by[c]["steps"], 1e3 * by[c]["wall_s"] / by[c]["steps"])
             if by.get(c, {}).get("ok") else "err" for c in contenders]
    metric = "/".join("%.4g" % by[c].get("test_metric", by[c].get("test_mse")) if by.get(c, {}).get("ok") else "-"
                      for c in ("tinybptt", "torch", "jax"))  # (stored rows of the adding problem say "test_mse")
    return ([cell.upper()] + times + [fmt_ratio(ratio) + ("" if best is None else " (%s)" % best),
                                      "<=%.1fx" % TRAIN_TARGET,
                                      "-" if ratio is None else ("PASS" if ratio <= TRAIN_TARGET else "FAIL"),
                                      fmt_ratio(floor), fmt_ratio(kernels), fmt_ratio(wall_ratio), fmt_ratio(ftz),
                                      metric])


def _task_table(train, task, md):
    """One task's table: a row per cell."""
    rows = [r for r in train["rows"] if task_of(r) == task]
    contenders = list(dict.fromkeys(r["contender"] for r in rows))
    ratios, wall = train_ratios(rows, task=task), train_ratios(rows, "wall_s", task=task)
    spec = TASKS[task]
    head = (["cell"] + ["%s ms/step" % c for c in contenders]
            + ["tinybptt / faster peer", "target", "met", "matrix products alone / faster peer",
               "recurrent kernels alone / faster peer", "same, wall time",
               "tinybptt-ftz / faster peer", "%s (tinybptt/torch/jax)" % spec.metric])
    floor = floor_ratios(train) if task == "adding" else {}
    kernels = kernel_ratios(rows, task)
    body = [_train_row(cell, {r["contender"]: r for r in rows if r["cell"] == cell}, contenders, ratio, best, ftz,
                       wall[cell][0], floor.get(cell), kernels.get(cell)) for cell, (ratio, best, ftz) in ratios.items()]
    steps = next((r["steps"] for r in rows if r["ok"]), 0)
    config = (train.get("configs") or {}).get(task)
    title = ("Training loop, %s%s: ms per training step over %d timed steps after %d untimed ones, lower is better"
             % (spec.title, " (%s, outside the timed steps)" % config if config else "", steps,
                train.get("warmup", 0)))
    return render_table(head, body, md, title=title), ratios


def train_tables(train, md=False):
    """The section's tables (times, ratios, target; one per task), their notes, and the profile's tables."""
    rows, notes = train["rows"], list(train.get("notes") or [])
    blocks, judged = [], False
    for task in train_tasks(rows):
        text, ratios = _task_table(train, task, md)
        blocks.append(text)
        judged = judged or any(b is not None for _, b, _ in ratios.values())
    text = "\n\n".join(blocks)
    if not judged:
        notes.insert(0, "No peer to compare with, so no ratio and no target is judged; " + INSTALL_HINT)
    notes += ["%s %s %s: error: %s" % (task_of(r), r["cell"], r["contender"], r["error"]) for r in rows if not r["ok"]]
    floors = _floors(train)
    if floors:
        notes.append("matrix products alone (adding problem): the layer's matrix products (%s) at the rate "
                     "tinybptt's per-step product reached in this run on the same core, %s GFLOP/s, as a share of "
                     "the faster peer's whole step; a lower bound: the gate nonlinearities, read-out, loss, "
                     "clipping, Adam and Python come on top" % (PRODUCTS, ", ".join("%s %.0f" % (c.upper(), g)
                                                                                   for c, (_, g) in floors.items())))
    kernel_steps = next((r["kernel_steps"] for r in rows if r.get("kernel_steps")), 0)
    if kernel_steps:
        notes.append("recurrent kernels alone: the CPU time of tinybptt's two recurrent kernels (the layer's "
                     "seq_forward and seq_backward, timed from Python) per step, over %d training steps taken "
                     "after the timed ones, as a share of the faster peer's whole step: how close the loop can "
                     "come to the peer with everything outside those kernels (the read-out, loss, graph, "
                     "clipping, Adam and batch) made free" % kernel_steps)
    notes += [TIME_NOTE, "target: tinybptt's loop at most %.1fx the faster peer's, with default settings; "
              "tinybptt-ftz is the same loop after tinybptt.set_flush_to_zero(True), shown for information "
              "(not the default)" % TRAIN_TARGET]
    text += "\n\n" + "\n".join(("- " if md else "  ") + n for n in notes)
    if train.get("profile"):
        text += "\n\n" + profile_tables(train["profile"], md)
    return text


def run_profile(args):
    """The profile of tinybptt's training step for each cell, default settings and flush-to-zero,
    each in a fresh worker process (as a user's training run starts)."""
    rows = []
    for cell in args.cells if args.profile_steps > 0 else ():
        for ftz in (False, True):
            req = {"op": "train_profile", "cell": cell, "seed": args.seed, "ftz": ftz,
                   "warmup": args.profile_warmup, "steps": args.profile_steps, "fresh_heap": args.profile_fresh_heap}
            with pool_for(args, args.threads[0]) as pool:
                res = pool.request("tinybptt", req, timeout=args.timeout)
            rows.append(res if res.get("ok") else dict(res, cell=cell, ftz=ftz))
    return rows


def run_train_section(args):
    """``--section train``: the training-loop table, then the profile (same pinned core)."""
    rows, notes = run_train(args)
    profile = run_profile(args)
    configs = {t: _task(t, args.seed).describe() for t in args.train_tasks}
    return {"rows": rows, "notes": notes, "profile": profile, "config": dict(TRAIN_CONFIG), "configs": configs,
            "steps": args.train_steps, "rounds": args.train_rounds, "warmup": args.train_warmup}

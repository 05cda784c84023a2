"""Worker processes: one per library family (tinybptt + NumPy, PyTorch, JAX) and thread count.

A worker is ``python -m tinybptt.bench --worker FAMILY --worker-threads N``,
started with the thread-count variables of every library set before anything is
imported (``thread_env``) and, when asked, pinned to given CPUs (the affinity is
set in the child before it starts Python, so before any library can start a
thread).  It serves JSON-line requests on stdin; the parent asks each worker in
turn, so a worker is idle (blocked on its pipe) while another one measures.
"""
import gc
import importlib.util
import json
import os
import select
import subprocess
import sys

import numpy as np

from . import timing
from .problems import family_of, make_problem
from .runners import NumpyRunner, TinyRunner, make_runner

# --------------------------------------------------------------------------- worker side

_RUNNERS = {}  # runners kept between the rounds of one grid row


def _runner_key(req):
    return json.dumps([req["contender"], req["cell"], req["shape"], req["dtype"], req.get("seed", 0),
                       req.get("layer_kwargs"), req.get("grad_trace", False)], sort_keys=True)


def _get_runner(req, key):
    runner = _RUNNERS.get(key)
    if runner is None:
        T, B, I, H = req["shape"]
        x, params = make_problem(req["cell"], T, B, I, H, req["dtype"], req.get("seed", 0))
        runner = make_runner(req["contender"], req["cell"], x, params, req.get("layer_kwargs"),
                             req.get("grad_trace", False))
        if req.get("keep"):
            _RUNNERS[key] = runner
    return runner


def _first_round(runner, req, gc_each):
    """Warm up, plan the number of timed runs from the warm-up time, time them."""
    res = timing.warm_up(runner, req.get("warmup", 1), gc_each)
    reps = timing.plan_reps(res["warmup_s"], req.get("repeat", 10), req.get("budget", 2.0),
                            req.get("max_iter_s", 20.0), req.get("min_repeat", 3))
    if reps == 0:  # too slow for the budget: one timed run, and no further rounds
        res["note"] = "a single timed run (%.1f s per iteration > --max-iter-s)" % res["warmup_s"]
        res["single"] = True
    res.update(timing.timed_runs(runner, max(reps, 1), gc_each))
    return res


def _layer_bytes(runner):
    """The layer's own count of the activations it keeps (tinybptt.bptt.activation_bytes)."""
    try:
        from tinybptt.bptt import activation_bytes
        ab = activation_bytes(runner.layer, runner.x, checkpoint=getattr(runner.layer, "checkpoint", None))
        return {"layer_stored_bytes": int(ab["stored"]), "layer_peak_bytes": int(ab["peak"])}
    except Exception as exc:  # noqa: BLE001 - optional instrumentation
        return {"layer_bytes_error": "%s: %s" % (type(exc).__name__, exc)}


def _final_extras(runner, req, gc_each):
    """What the last round adds: the kernel split, the memory profile, the full gradients."""
    res = {}
    if req.get("kernel_split") and runner.kernel_module is not None:
        res.update(timing.kernel_split(runner, req.get("split_repeat", 3), gc_each))
    if req.get("memory") and isinstance(runner, (TinyRunner, NumpyRunner)):
        res.update(timing.memory_profile(runner))
        if isinstance(runner, TinyRunner):
            res.update(_layer_bytes(runner))
    if req.get("return_grads"):
        g = runner.grads()
        res["grads"] = {n: np.asarray(v, dtype=np.float64).tolist() for n, v in g.items()}
    return res


def measure(req):
    """Worker side of one measurement request.

    Without ``reps``: the first round (see ``_first_round``).  With ``reps``:
    time that many runs of the runner kept from the first round (``keep``),
    after one more warm-up iteration when ``rewarm`` is set.  ``final`` adds
    the kernel split, the memory profile and/or the gradients.
    """
    gc_each = bool(req.get("gc_each_run", False))
    key = _runner_key(req)
    runner = _get_runner(req, key)
    if req.get("reps") is None:
        res = _first_round(runner, req, gc_each)
    else:
        res = timing.timed_runs(runner, req["reps"], gc_each, warm=1 if req.get("rewarm") else 0)
    if req.get("final", True):
        res.update(_final_extras(runner, req, gc_each))
        _RUNNERS.pop(key, None)
    return res


def gemm_run(req):
    """Worker side of the kernel runs: benchmarks/bench_gemm.py's run()."""
    spec = importlib.util.spec_from_file_location("bench_gemm", req["bench_gemm"])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.run(req["sizes"], req["dtype"], req["threads"], req["repeat"])
    return {"rows": json.loads(json.dumps(list(rows), default=json_default))}


def json_default(o):
    """JSON for NumPy scalars and arrays (anything else as its str)."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def set_threads(family, threads):
    """The libraries' own thread settings, on top of the environment the worker started with."""
    try:
        if family == "torch":
            import torch
            torch.set_num_threads(threads)
            try:
                torch.set_num_interop_threads(threads)
            except RuntimeError:
                pass
        elif family.startswith("tinybptt"):  # "tinybptt", or a second tinybptt worker such as "tinybptt-ftz"
            import tinybptt
            tinybptt.set_num_threads(threads)
    except Exception:  # noqa: BLE001 - a missing library is reported per request instead
        pass


def worker_info(family):
    info = {"numpy": np.__version__, "cpus": sorted(os.sched_getaffinity(0))}
    if family == "torch":
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    if family == "jax":
        import jax
        info["jax"] = jax.__version__
    if family.startswith("tinybptt"):
        import tinybptt
        info["tinybptt_threads"] = tinybptt.get_num_threads()
    return info


def train_run(req):
    """Worker side of the training-loop section (train.py)."""
    from .train import train_run as run
    return run(req)


def train_profile(req):
    """Worker side of the training-step profile (train_profile.py)."""
    from .train_profile import profile_run
    return profile_run(req)


#: Request ops a worker serves (besides "drop" and "info").
HANDLERS = {"measure": measure, "gemm": gemm_run, "train": train_run, "train_profile": train_profile}


def handle(req, family):
    if req["op"] == "drop":  # end of a grid row: forget the kept runners
        _RUNNERS.clear()
        gc.collect()
        return {}
    if req["op"] == "info":
        return worker_info(family)
    if req["op"] not in HANDLERS:
        raise ValueError("unknown op %r" % req["op"])
    return HANDLERS[req["op"]](req)


def worker_main(family, threads):
    """Serve JSON-line requests on stdin until EOF; replies go to the original stdout.

    Anything else printed (library warnings) is sent to stderr so it cannot
    corrupt the protocol.
    """
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    set_threads(family, threads)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            res = handle(json.loads(line), family)
            res["ok"] = True
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the parent
            res = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
        proto.write(json.dumps(res, default=json_default) + "\n")
        proto.flush()


# --------------------------------------------------------------------------- parent side


def thread_env(threads):
    """Environment that pins every library to ``threads`` threads (set before import)."""
    s = str(threads)
    env = {k: s for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                          "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}
    xla = "--xla_cpu_multi_thread_eigen=%s intra_op_parallelism_threads=%d" % (
        "false" if threads == 1 else "true", threads)
    env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + xla).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def parse_cpus(text):
    """``"1"``, ``"0,1"`` or ``"0-3"`` -> a sorted list of CPU numbers."""
    cpus = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    if not cpus:
        raise ValueError("no CPU numbers in %r" % text)
    return sorted(cpus)


class Worker:
    """A subprocess serving measurement requests for one library family and thread count.

    ``cpus``: the CPUs it may run on, set in the child before Python starts
    (``sched_setaffinity``), so every thread any library starts inherits it.
    """

    def __init__(self, family, threads, log_dir, cpus=None):
        self.family, self.threads = family, threads
        env = dict(os.environ)
        env.update(thread_env(threads))
        self.log_path = os.path.join(log_dir, "worker-%s-%dt.log" % (family, threads))
        self.log = open(self.log_path, "a")
        pin = None if not cpus else (lambda: os.sched_setaffinity(0, cpus))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tinybptt.bench", "--worker", family, "--worker-threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env, text=True, bufsize=1,
            preexec_fn=pin)

    def request(self, req, timeout):
        if self.proc.poll() is not None:
            return {"ok": False, "error": "worker exited (code %s); see %s" % (self.proc.returncode, self.log_path)}
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"ok": False, "error": "worker died; see %s" % self.log_path}
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close(kill=True)
            return {"ok": False, "error": "timed out after %.0f s" % timeout, "timeout": True}
        line = self.proc.stdout.readline()
        if not line:
            tail = self._log_tail()
            self.close(kill=True)
            return {"ok": False, "error": "worker crashed: %s" % tail}
        return json.loads(line)

    def _log_tail(self):
        try:
            with open(self.log_path) as f:
                return " | ".join(f.read().strip().splitlines()[-3:])
        except OSError:
            return "(no log)"

    def close(self, kill=False):
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                try:
                    self.proc.stdin.close()
                    self.proc.wait(timeout=30)
                except Exception:  # noqa: BLE001
                    self.proc.kill()
        self.proc.wait()
        self.log.close()


class WorkerPool:
    """Lazily started workers, one per family, all with one thread count (and CPU set)."""

    def __init__(self, threads, log_dir, cpus=None):
        self.threads, self.log_dir, self.cpus = threads, log_dir, cpus
        self.workers = {}

    def request(self, family, req, timeout=900.0):
        w = self.workers.get(family)
        if w is None or w.proc.poll() is not None:
            w = self.workers[family] = Worker(family, self.threads, self.log_dir, self.cpus)
        return w.request(req, timeout)

    def broadcast(self, req, timeout=60.0):
        """Send ``req`` to every live worker (e.g. ``{"op": "drop"}``)."""
        for w in self.workers.values():
            if w.proc.poll() is None:
                w.request(req, timeout)

    def close(self):
        for w in self.workers.values():
            w.close()
        self.workers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def measure_one(pool, req, timeout):
    """One request, medians added: for the scaling and check runs."""
    res = pool.request(family_of(req["contender"]), req, timeout=timeout)
    if res.get("ok"):
        timing.add_medians(res)
    return res


def pool_for(args, threads):
    """The worker pool of one section at ``threads`` threads, with the run's log directory and CPUs."""
    return WorkerPool(threads, args.log_dir, getattr(args, "cpus", None))

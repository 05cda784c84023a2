"""How a contender is timed: the garbage-collector protocol, warm-up, repeats, medians,
the kernel/overhead split, the memory profile, and the interleaved rounds of a grid row.

The functions up to ``memory_profile`` run inside a worker process, on a runner;
``measure_row`` runs in the parent and asks the workers in turn.
"""
import gc
import statistics
import time
import types

import numpy as np

from .problems import PARAM_NAMES, family_of, is_tinybptt


class KernelTimer:
    """Wrap every public function of a kernels backend module in a timer.

    Functions the backend module re-exports from its helpers (``c.py`` takes
    ``seq_forward`` etc. from ``c_rnn.py``) are wrapped too; the validation
    helpers are not.  Only the outermost kernel call is timed (a C-backend ``seq_forward`` that
    calls ``matmul`` internally counts once).  ``phase`` ("fwd"/"bwd") says
    which bucket the time goes to; ``by_name`` adds the seconds up per function.
    ``clock`` is ``time.perf_counter`` (wall time) unless given, e.g. ``time.process_time``.
    Modules read ``kernels.backend.<fn>`` at call time, so patching the module's
    attributes is seen by every caller.
    """

    SKIP = {"ptr", "fn", "build_info", "set_num_threads", "get_num_threads",
            "set_flush_to_zero", "get_flush_to_zero"}

    def __init__(self, module, clock=time.perf_counter):
        self.module, self.clock = module, clock
        self.saved = {}
        self.depth = 0
        self.phase = "fwd"
        self.seconds = {"fwd": 0.0, "bwd": 0.0}
        self.calls = {"fwd": 0, "bwd": 0}
        self.by_name = {}

    def _wrap(self, name, f):
        def timed(*args, **kwargs):
            if self.depth:
                return f(*args, **kwargs)
            self.depth = 1
            t0 = self.clock()
            try:
                return f(*args, **kwargs)
            finally:
                dt = self.clock() - t0
                self.seconds[self.phase] += dt
                self.by_name[name] = self.by_name.get(name, 0.0) + dt
                self.calls[self.phase] += 1
                self.depth = 0
        timed.__wrapped__ = f
        return timed

    def _is_kernel(self, name, f):
        mod = getattr(f, "__module__", "") or ""
        return (not name.startswith("_") and name not in self.SKIP and isinstance(f, types.FunctionType)
                and mod.startswith("tinybptt.kernels") and not mod.endswith(".validate"))

    def __enter__(self):
        for name, f in list(vars(self.module).items()):
            if self._is_kernel(name, f):
                self.saved[name] = f
                setattr(self.module, name, self._wrap(name, f))
        return self

    def __exit__(self, *exc):
        for name, f in self.saved.items():
            setattr(self.module, name, f)
        self.saved.clear()


class gc_protocol:
    """The garbage collector during a batch of timed runs: timeit's convention.

    The cyclic collector is off while the batch runs (so no collection pause
    lands inside one contender's timing) and restored after; nothing is
    collected on the way in.  Collections happen where a program's own would,
    between batches, when the collector's thresholds say so.

    ``each_run=True`` is the oldest protocol: a full ``gc.collect()`` before
    every run.  That measures a cold start: a full collection walks the whole
    heap (about 10 ms with NumPy alone, more with PyTorch or JAX loaded), and
    the Python and NumPy operations after it run several times slower (a
    1600-element NumPy multiply: about 1 us warm, 40 us right after a
    collection), which swamps the tiny configs for every contender and most for
    the ones that do more in Python.  A training loop never collects between steps.

    One full collection before each batch (the protocol before this one) has
    the same effect on the first runs of a batch: tinybptt's RNN ``tiny`` step
    (T=50, B=1, H=32, one Zen 4 core) took 0.32-0.47 ms right after one, 0.10-0.18
    ms in the next run and 0.08-0.12 ms ten runs later, against 0.070-0.073 ms in
    a row; after a young-generation collection, or none, the next run took
    0.070-0.073 ms.  A grid row times as few as 4 runs per round.
    """

    def __init__(self, each_run=False):
        self.each_run = bool(each_run)
        self.was_enabled = None

    def __enter__(self):
        self.was_enabled = gc.isenabled()
        gc.disable()
        return self

    def before_run(self):
        if self.each_run:
            gc.collect()

    def __exit__(self, *exc):
        if self.was_enabled:
            gc.enable()


def grad_norms(runner):
    """{parameter name: L2 norm of its gradient} in float64, for the agreement check."""
    grads = runner.grads()
    return {n: float(np.linalg.norm(np.asarray(grads[n], dtype=np.float64))) for n in PARAM_NAMES}


def warm_up(runner, warmup=1, gc_each_run=False):
    """Run ``warmup`` untimed iterations; returns the fastest one's time, the loss and gradient norms."""
    first = handle = None
    with gc_protocol(gc_each_run) as gcp:
        for _ in range(max(1, warmup)):
            gcp.before_run()
            _, _, total, handle = runner.step()
            first = total if first is None else min(first, total)
    return {"loss": runner.loss_value(handle), "warmup_s": first, "grad_norms": grad_norms(runner)}


def timed_runs(runner, reps, gc_each_run=False, warm=0):
    """``reps`` timed iterations -> lists of forward, backward and total times in ms (see gc_protocol).

    ``warm`` untimed iterations come first, in the same batch: after another
    contender has had the core, the first run finds the caches cold."""
    f, b, t = [], [], []
    with gc_protocol(gc_each_run) as gcp:
        for _ in range(warm):
            gcp.before_run()
            runner.step()
        for _ in range(reps):
            gcp.before_run()
            fwd, bwd, total, _ = runner.step()
            f.append(1e3 * fwd)
            b.append(1e3 * bwd)
            t.append(1e3 * total)
    return {"fwd_samples": f, "bwd_samples": b, "total_samples": t}


def plan_reps(first_s, repeat, budget=2.0, max_iter_s=20.0, min_repeat=3):
    """How many timed runs: ``repeat`` capped so they take about ``budget`` seconds, at least
    ``min_repeat``; 0 past ``max_iter_s`` per iteration (the caller then times a single run)."""
    if first_s > max_iter_s:
        return 0
    return max(1, min(repeat, max(min_repeat, int(budget / max(first_s, 1e-6)))))


def spread(samples):
    """Interquartile range / median (the range / median below 4 samples; None for one)."""
    med = statistics.median(samples)
    if len(samples) >= 4:
        q = statistics.quantiles(samples, n=4)
        return (q[2] - q[0]) / med
    return (max(samples) - min(samples)) / med if len(samples) > 1 else None


def add_medians(res, stat="median"):
    """fwd/bwd/total ms (the median, or with ``stat="min"`` the fastest run) and the spread
    (interquartile range / median) from the samples; ``total_median_ms`` and ``total_min_ms`` both kept."""
    t = res["total_samples"]
    pick = min if stat == "min" else statistics.median
    res["stat"] = stat
    res["reps"] = len(t)
    res["fwd_ms"] = pick(res["fwd_samples"]) if res["fwd_samples"] else None
    res["bwd_ms"] = pick(res["bwd_samples"]) if res["bwd_samples"] else None
    res["total_median_ms"] = statistics.median(t)
    res["total_min_ms"] = min(t)
    res["total_ms"] = pick(t)
    res["spread"] = spread(t)
    return res


def kernel_split(runner, reps, gc_each_run=False):
    """Kernel time (fwd, bwd), whole-step time and kernel calls of an instrumented iteration.

    Of ``reps`` instrumented iterations the fastest is reported, so the kernel
    share and the overhead (step minus kernels) come from one undisturbed run.
    """
    k_fwd, k_bwd, calls, totals = [], [], [], []
    with gc_protocol(gc_each_run) as gcp:
        for _ in range(max(1, reps)):
            gcp.before_run()
            with KernelTimer(runner.kernel_module) as kt:
                t0 = time.perf_counter()
                kt.phase = "fwd"
                h = runner.forward()
                kt.phase = "bwd"
                runner.backward(h)
                totals.append(time.perf_counter() - t0)
            k_fwd.append(kt.seconds["fwd"])
            k_bwd.append(kt.seconds["bwd"])
            calls.append(kt.calls["fwd"] + kt.calls["bwd"])
    best = min(range(len(totals)), key=totals.__getitem__)  # the least disturbed instrumented run
    return {"kernel_fwd_ms": 1e3 * k_fwd[best], "kernel_bwd_ms": 1e3 * k_bwd[best],
            "kernel_ms": 1e3 * (k_fwd[best] + k_bwd[best]), "split_total_ms": 1e3 * totals[best],
            "kernel_calls": calls[best]}


def memory_profile(runner):
    """Bytes NumPy allocated (seen by tracemalloc): held after forward, and peak over the step.

    NumPy reports its allocations to tracemalloc; memory that C code mallocs
    itself, or that PyTorch/JAX allocate, is not seen.
    """
    import tracemalloc
    gc.collect()
    h = runner.forward()  # one untraced step so gradient buffers exist at the baseline
    runner.backward(h)
    del h
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        h = runner.forward()
        held, peak_fwd = tracemalloc.get_traced_memory()
        runner.backward(h)
        del h
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return {"saved_bytes": held - base, "peak_fwd_bytes": peak_fwd - base, "peak_bytes": peak - base}


# --------------------------------------------------------------------------- parent side: one grid row

SAMPLE_KEYS = ("fwd_samples", "bwd_samples", "total_samples")


def _round_request(base, c, rnd, rounds, first):
    """The request for contender ``c`` in round ``rnd``; ``first`` is its round-1 result (or None)."""
    last = rnd == rounds - 1
    req = dict(base, contender=c, keep=not last, final=last)
    if c == "jax":
        req["warmup"] = base.get("warmup", 1) + 1  # the first call compiles
    req["kernel_split"] = base.get("kernel_split", False) and is_tinybptt(c)
    if rnd > 0:
        req["reps"] = first["round_reps"]
        req["rewarm"] = first["warmup_s"] < 0.25
    if last and rnd > 0:  # instrumented runs: 3 when cheap, 1 for slow configs
        req["split_repeat"] = 3 if first["warmup_s"] < 0.3 else 1
    return req


def _finish_single(pool, c, req, res, timeout):
    """A contender too slow for more rounds: its final measurements now, after its single run."""
    fin = pool.request(family_of(c), dict(req, reps=0, final=True, keep=False, split_repeat=1), timeout=timeout)
    res.update({k: v for k, v in fin.items() if k not in SAMPLE_KEYS})


def measure_row(pool, contenders, base, rounds, timeout, skip=None, stat="median", settle_s=0.0):
    """Time every contender on one (cell, config), interleaved over ``rounds`` rounds.

    Round 1 warms each contender up and plans its timed runs from the warm-up
    time; later rounds time the same number again on the runner the worker
    kept.  Noise bursts of a shared machine thus hit every contender alike.
    ``settle_s``: a pause before each contender's batch, for multi-threaded
    runs.  Thread pools keep spinning for a while after their last job
    (OpenBLAS for about 0.1 s), and on two cores that starves whoever runs
    next: tinybptt's 2-thread LSTM small took 8.0 ms (median) right after
    2-thread OpenBLAS GEMMs, 4.3 ms after a 0.2 s pause, 4.5 ms without them.
    Returns {contender: result} with samples merged and medians computed.
    """
    skip = skip or {}
    out = {c: None for c in contenders}
    for rnd in range(rounds):
        for c in contenders:
            first = out[c]
            if c in skip or (first is not None and (not first.get("ok") or first.get("round_reps") == 0)):
                continue
            req = _round_request(base, c, rnd, rounds, first)
            if settle_s > 0:
                time.sleep(settle_s)
            res = pool.request(family_of(c), req, timeout=timeout)
            if not res.get("ok"):
                out[c] = res
            elif rnd == 0:
                res["round_reps"] = 0 if res.get("single") else len(res["fwd_samples"])
                if res["round_reps"] == 0 and rounds > 1:
                    _finish_single(pool, c, req, res, timeout)
                out[c] = res
            else:
                for k in SAMPLE_KEYS:
                    first[k] += res.pop(k)
                first.update(res)
    pool.broadcast({"op": "drop"})
    for res in out.values():
        if res is not None and res.get("ok"):
            res.pop("round_reps", None)
            add_medians(res, stat)
            res["rounds"] = rounds
    return out

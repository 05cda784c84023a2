"""Where a tinybptt training step's time goes, and whether the layer is as fast inside the loop.

The loop of the training section (``train_loops.TinyLoop``) is trained for
``warmup`` steps, then ``steps`` more steps are taken apart: each phase of a step
is timed on its own in process CPU time (batch generation, the layer's forward,
read-out and loss, zero_grad, backward, clip_grad_norm_, Adam, reading the loss),
with the minor page faults it causes, and the kernels backend is instrumented
(``timing.KernelTimer``) to tell the recurrent kernels' time
(``seq_forward``/``seq_backward``) from the rest.  The loop's last backward
kernel call is replayed on the same arrays, flush-to-zero off and on.  Then
``steps`` more steps are each followed by one run of the layer alone, as the
layer benchmark runs it (loss ``sum(out**2)``, no read-out, no optimiser): on the
starting weights without the gradient trace (the benchmark's setting) and on the
loop's trained weights with it (the loop's), so both are measured at the same
moments of a busy machine.  With ``ftz`` everything runs after
``tinybptt.set_flush_to_zero(True)``.  The loop first evaluates its test set, as
``tinybptt train`` does, unless ``fresh_heap`` is set: then the process has never
freed a large block, and NumPy's large arrays that do not come from tinybptt's
workspace (``kernels.workspace``: the layer forward's saved arrays and outputs)
cost page faults at every step.  The profile counts, per step, the arrays the
workspace handed out again and those it had to make.
"""
import statistics
import time

try:
    import resource
except ImportError:  # not on Windows
    resource = None

import numpy as np

from . import timing
from .problems import PARAM_NAMES, gates, workload_flops
from .runners import TinyRunner
from .train_loops import INPUT_SIZE, make_loop

#: The phases of a profiled step, in order.
PHASES = ("batch", "layer forward", "read-out + loss", "zero_grad", "backward", "clip_grad_norm_", "Adam step",
          "loss.item()")


def minor_page_faults():
    """Minor page faults of this process so far: memory handed out by the OS on first touch
    (NaN where Python has no ``resource`` module, as on Windows)."""
    if resource is None:
        return float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _profiled_step(loop, rng, cfg, kt, adding_problem):
    """One training step of ``loop`` (a TinyLoop) with each phase timed -> ({phase: CPU seconds},
    {phase: minor page faults})."""
    from ..autograd import Tensor
    from ..nn import functional as F
    model, now = loop.model, time.process_time
    t, f = [now()], [minor_page_faults()]
    x, y = adding_problem(cfg["T"], cfg["B"], rng, cfg["dtype"])
    t.append(now()), f.append(minor_page_faults())
    kt.phase = "fwd"
    res = model.rnn(x)
    t.append(now()), f.append(minor_page_faults())
    loss = F.mse_loss(model.read_out(*res), Tensor(np.asarray(y, dtype=model.dtype)))
    t.append(now()), f.append(minor_page_faults())
    loop.opt.zero_grad()
    t.append(now()), f.append(minor_page_faults())
    kt.phase = "bwd"
    loss.backward()
    t.append(now()), f.append(minor_page_faults())
    loop.clip_grad_norm_(loop.params, loop.clip)
    t.append(now()), f.append(minor_page_faults())
    loop.opt.step()
    t.append(now()), f.append(minor_page_faults())
    float(loss.item())
    t.append(now()), f.append(minor_page_faults())
    return ({p: t[k + 1] - t[k] for k, p in enumerate(PHASES)},
            {p: f[k + 1] - f[k] for k, p in enumerate(PHASES)})


def _layer_kernels(kt):
    fwd, bwd = kt.by_name.get("seq_forward", 0.0), kt.by_name.get("seq_backward", 0.0)
    return 1e3 * fwd, 1e3 * bwd, 1e3 * (sum(kt.by_name.values()) - fwd - bwd)


def _instrumented_step(loop, batch):
    """One training step of ``loop`` on ``batch`` with the kernels backend instrumented -> its kernels'
    CPU ms (``seq_forward``, ``seq_backward``, every other kernel)."""
    from .. import kernels
    with timing.KernelTimer(kernels.backend, clock=time.process_time) as kt:
        loop.step(*batch)
    return _layer_kernels(kt)


def recurrent_kernel_steps(loop, task, rng, steps):
    """``steps`` more training steps of ``loop`` (a TinyLoop) on ``task``'s batches, the kernels backend
    instrumented -> per step, the CPU seconds inside the two recurrent kernels (``seq_forward`` and
    ``seq_backward``).  Taken after the timed steps: what the layer's own arithmetic costs inside
    this loop, caches and all, which no change outside the kernels can make smaller."""
    out = []
    for _ in range(steps):
        fwd, bwd, _ = _instrumented_step(loop, task.batch(rng))
        out.append((fwd + bwd) / 1e3)
    return out


def loop_phases(loop, rng, cfg, steps):
    """The training loop alone for ``steps`` steps: median CPU ms and page faults per phase, the
    recurrent kernels' ms (``seq_forward``, ``seq_backward``, every other kernel), and the arrays
    the workspace reused and made per step."""
    from .. import kernels
    from ..kernels import workspace
    from ..tasks import adding_problem
    ms, faults, kern, pool = {p: [] for p in PHASES}, {p: [] for p in PHASES}, [], []
    for _ in range(steps):
        before = workspace.stats()
        with timing.KernelTimer(kernels.backend, clock=time.process_time) as kt:
            secs, flt = _profiled_step(loop, rng, cfg, kt, adding_problem)
        after = workspace.stats()
        pool.append((after["reused"] - before["reused"], after["made"] - before["made"]))
        for p in PHASES:
            ms[p].append(1e3 * secs[p])
            faults[p].append(flt[p])
        kern.append(_layer_kernels(kt))
    med = statistics.median
    return {"phases_ms": {p: med(v) for p, v in ms.items()}, "faults": {p: med(v) for p, v in faults.items()},
            "workspace": {"reused": med([r for r, _ in pool]), "made": med([m for _, m in pool])},
            "step_ms": med([sum(v) for v in zip(*ms.values())]),
            "kernel_fwd_ms": med([k[0] for k in kern]), "kernel_bwd_ms": med([k[1] for k in kern]),
            "other_kernels_ms": med([k[2] for k in kern])}


def _alone_once(runner):
    """One forward + backward of the layer benchmark's workload -> (total, kernel fwd, kernel bwd) CPU ms."""
    with timing.KernelTimer(runner.kernel_module, clock=time.process_time) as kt:
        c0 = time.process_time()
        h = runner.forward()
        kt.phase = "bwd"
        runner.backward(h)
        total = time.process_time() - c0
    return 1e3 * total, 1e3 * kt.seconds["fwd"], 1e3 * kt.seconds["bwd"]


def loop_and_alone(loop, rng, cfg, steps, alone):
    """``steps`` more training steps, each followed by one run of every runner in ``alone``
    ({name: TinyRunner}), so that the loop's kernels and the layer alone are measured at the same
    moments -> median ms of the loop's two recurrent kernels and of each runner's."""
    from ..tasks import adding_problem
    in_loop, solo = [], {name: [] for name in alone}
    for _ in range(steps):
        in_loop.append(_instrumented_step(loop, adding_problem(cfg["T"], cfg["B"], rng, cfg["dtype"])))
        for name, runner in alone.items():
            solo[name].append(_alone_once(runner))
    med = statistics.median
    return {"interleaved_fwd_ms": med([k[0] for k in in_loop]), "interleaved_bwd_ms": med([k[1] for k in in_loop]),
            "alone": {name: {"total_ms": med([t[0] for t in v]), "kernel_fwd_ms": med([t[1] for t in v]),
                             "kernel_bwd_ms": med([t[2] for t in v])} for name, v in solo.items()}}


def subnormal_count(a, dtype):
    """How many values of ``a`` are subnormal in ``dtype`` (nonzero, below the smallest normal number)."""
    a = np.asarray(a)
    return int(np.count_nonzero((np.abs(a) < np.finfo(dtype).tiny) & (a != 0)))


def replay_backward(loop, rng, cfg, reps=7):
    """The recurrent backward kernel of one more training step, called again on the same arrays with
    flush-to-zero off and on (alternating, fastest of ``reps`` each), and the subnormal values in its
    results (computed without flush-to-zero).

    The replay sees exactly the numbers the training loop produced, without the loop around it.
    """
    import tinybptt
    from .. import kernels
    from ..tasks import adding_problem
    mod = kernels.backend
    orig, seen = mod.seq_backward, []

    def capture(*args, **kwargs):
        seen.append((args, kwargs))
        return orig(*args, **kwargs)

    mod.seq_backward = capture
    try:
        loop.step(*adding_problem(cfg["T"], cfg["B"], rng, cfg["dtype"]))
    finally:
        mod.seq_backward = orig
    args, kwargs = seen[-1]
    was = bool(kernels.c_backend is not None and kernels.c_backend.get_flush_to_zero())
    best = {False: None, True: None}
    try:
        for _ in range(reps):  # alternate, so that neither setting always runs on the warmer caches
            for ftz in (False, True):
                tinybptt.set_flush_to_zero(ftz)
                t0 = time.process_time()
                g = orig(*args, **kwargs)
                dt = time.process_time() - t0
                best[ftz] = dt if best[ftz] is None else min(best[ftz], dt)
                if not ftz:
                    plain = g
    finally:
        tinybptt.set_flush_to_zero(was)
    return {"replay_ms": 1e3 * best[False], "replay_ftz_ms": 1e3 * best[True],
            "subnormals": {k: subnormal_count(v, cfg["dtype"]) for k, v in plain.items()
                           if isinstance(v, np.ndarray)}}


def product_floor(cell, cfg, input_size, reps=7):
    """How fast a step could be if it did nothing but its matrix products.

    The layer's forward and backward multiply ``workload_flops`` worth of matrices
    (input and recurrent projections, dW_ih, dW_hh and dh = dgates @ W_hh).  The
    rate is measured here, now, on the product that dominates them: a step's
    recurrent product h_{t-1} @ W_hh^T of shape (B, H) x (H, G*H), run T times
    with tinybptt's own kernel (fastest of ``reps`` runs).  Returns the floor in ms
    and the rate in GFLOP/s: a lower bound on the layer's share of a training step.
    At a target of r times the peer's step, everything else in a step (the gate
    nonlinearities, read-out, loss, clipping, Adam, Python) must fit in
    r x peer - floor.
    """
    from ..kernels._ffi import NULL, fn, ptr
    T, B, H, G, dt = cfg["T"], cfg["B"], cfg["H"], gates(cell), np.dtype(cfg["dtype"])
    rng = np.random.default_rng(0)
    h, w = rng.standard_normal((B, H)).astype(dt), rng.standard_normal((G * H, H)).astype(dt)
    a = np.zeros((B, G * H), dt)
    product = fn("recurrent_mm", dt)  # packs W_hh^T once, then runs the product T times
    best = None
    for _ in range(reps):
        t0 = time.process_time()
        product(B, G * H, H, ptr(h), H, ptr(w), H, 1, ptr(a), G * H, 0, NULL, T)
        secs = time.process_time() - t0
        best = secs if best is None else min(best, secs)
    gflops = 2.0 * T * B * H * G * H / best / 1e9
    return {"floor_ms": 1e3 * workload_flops(cell, T, B, input_size, H) / (gflops * 1e9), "floor_gflops": gflops}


def alone_runner(cell, x, weights, grad_trace):
    """The layer benchmark's workload (loss ``sum(out**2)``) on a fresh layer holding ``weights``."""
    params = {n: np.ascontiguousarray(weights[n]) for n in PARAM_NAMES}
    runner = TinyRunner(cell, x, params, "sequence", "c", grad_trace=grad_trace)
    timing.warm_up(runner, 3)
    return runner


def _trained_weights(loop):
    return {n: np.array(p.data) for n, p in loop.model.rnn.named_parameters()}


def profile_run(req):
    """Worker side: the profile of one cell (see the module docstring)."""
    import tinybptt
    from ..tasks import adding_problem
    from .train import TRAIN_CONFIG as cfg
    cell, seed = req["cell"], req.get("seed", 0)
    tinybptt.set_flush_to_zero(bool(req.get("ftz")))
    try:
        loop = make_loop("tinybptt", cell, "adding", seed)
        rng = np.random.default_rng(seed)
        if not req.get("fresh_heap"):  # as `tinybptt train` and the section's loop: the test loss first
            loop.evaluate(*adding_problem(cfg["T"], cfg["test_size"], np.random.default_rng(seed + 10_000),
                                          cfg["dtype"]))
        for _ in range(req.get("warmup", 0)):
            loop.step(*adding_problem(cfg["T"], cfg["B"], rng, cfg["dtype"]))
        res = loop_phases(loop, rng, cfg, req["steps"])  # first, while the process is like a user's
        res.update(replay_backward(loop, rng, cfg))
        x = adding_problem(cfg["T"], cfg["B"], np.random.default_rng(seed + 1), cfg["dtype"])[0]
        start = _trained_weights(make_loop("tinybptt", cell, "adding", seed))
        alone = {"initial weights, no trace": alone_runner(cell, x, start, False),
                 "trained weights, trace": alone_runner(cell, x, _trained_weights(loop), True)}
        res.update(loop_and_alone(loop, rng, cfg, req["steps"], alone))
        res.update(product_floor(cell, cfg, INPUT_SIZE))
    finally:
        tinybptt.set_flush_to_zero(False)
    res.update(cell=cell, ftz=bool(req.get("ftz")), warmup=req.get("warmup", 0), steps=req["steps"],
               input_size=INPUT_SIZE, fresh_heap=bool(req.get("fresh_heap")))
    return res


def _ms(v):
    return "-" if v is None else ("%.3f" % v if v < 1 else "%.2f" % v)


def _phase_table(ok, md):
    from .report import render_table
    head = (["cell", "flush-to-zero", "step ms", "sum of phases"] + list(PHASES)
            + ["page faults: forward / backward", "workspace arrays: reused / made"])
    body = []
    for r in ok:
        ph = r["phases_ms"]
        total = sum(ph.values())
        body.append([r["cell"].upper(), "on" if r["ftz"] else "off (default)", _ms(r["step_ms"]), _ms(total)]
                    + ["%s (%.0f%%)" % (_ms(ph[p]), 100 * ph[p] / total) for p in PHASES]
                    + ["%d / %d" % (r["faults"]["layer forward"], r["faults"]["backward"]),
                       "%g / %g" % (r["workspace"]["reused"], r["workspace"]["made"]) if "workspace" in r else "-"])
    title = ("Where a tinybptt training step's time goes: median CPU ms per phase (its share of the sum of the "
             "phase medians) over %d steps after %d training steps; step ms = the median step; page faults = "
             "minor page faults (memory the OS hands out on first touch), median per step; workspace arrays = "
             "the layer forward's large arrays per step that tinybptt's workspace handed out again / made anew%s"
             % (ok[0]["steps"], ok[0]["warmup"], "; fresh heap: no test-set evaluation before the first step"
                if ok[0].get("fresh_heap") else ""))
    return render_table(head, body, md, title=title)


def _kernel_table(ok, md):
    from .report import render_table
    alone = list(ok[0]["alone"])
    head = (["cell", "flush-to-zero", "loop alone: seq_forward / seq_backward", "other kernels",
             "loop's seq_backward replayed (ftz off / on)", "subnormal values in its results",
             "loop, interleaved: seq_forward / seq_backward"]
            + ["layer alone, %s: fwd / bwd kernels (whole step)" % a for a in alone])
    body = []
    for r in ok:
        body.append([r["cell"].upper(), "on" if r["ftz"] else "off (default)",
                     "%s / %s" % (_ms(r["kernel_fwd_ms"]), _ms(r["kernel_bwd_ms"])), _ms(r["other_kernels_ms"]),
                     "%s / %s" % (_ms(r.get("replay_ms")), _ms(r.get("replay_ftz_ms"))),
                     sum((r.get("subnormals") or {}).values()),
                     "%s / %s" % (_ms(r["interleaved_fwd_ms"]), _ms(r["interleaved_bwd_ms"]))]
                    + ["%s / %s (%s)" % (_ms(r["alone"][a]["kernel_fwd_ms"]), _ms(r["alone"][a]["kernel_bwd_ms"]),
                                         _ms(r["alone"][a]["total_ms"])) for a in alone])
    return render_table(head, body, md, title="The recurrent kernels in the training loop and in the layer "
                                              "benchmark's workload (loss sum(out**2), no read-out, no optimiser), "
                                              "median CPU ms: the loop by itself (as in the table above), its last "
                                              "backward call replayed on the same arrays, then more loop steps "
                                              "each followed by one run of the layer alone")


def profile_tables(profile, md=False):
    """Two tables: the phases of a step, and the recurrent kernels inside the loop against the layer alone."""
    ok = [r for r in profile if r.get("ok", True) and "phases_ms" in r]
    if not ok:
        errs = ["%s: %s" % (r.get("cell"), r.get("error")) for r in profile]
        return "Training-step profile: not measured%s" % ("; " + "; ".join(errs) if errs else "")
    return _phase_table(ok, md) + "\n\n" + _kernel_table(ok, md)

"""Where a tinybptt training step's time goes, and whether the layer is as fast inside the loop.

The loop of the training section (``train_loops.TinyLoop``) is trained for
``warmup`` steps, then ``steps`` more steps are taken apart: each phase of a step
is timed on its own in process CPU time (batch generation, the layer's forward, read-out and loss,
zero_grad, backward, clip_grad_norm_, Adam, reading the loss), and the kernels
backend is instrumented (``timing.KernelTimer``) to tell the recurrent kernels'
time (``seq_forward``/``seq_backward``) from the rest.  After each profiled
step the layer is also run alone, as the layer benchmark runs it (loss
``sum(out**2)``, no read-out, no optimiser): on the starting weights without the
gradient trace (the benchmark's setting) and on the loop's trained weights with
it (the loop's), so both are measured at the same moments of a busy machine.
Last, the loop's own backward kernel call is replayed with flush-to-zero off and
on.  With ``ftz`` everything runs after ``tinybptt.set_flush_to_zero(True)``.
"""
import statistics
import time

import numpy as np

from . import timing
from .problems import PARAM_NAMES
from .runners import TinyRunner
from .train_loops import INPUT_SIZE, make_loop

#: The phases of a profiled step, in order.
PHASES = ("batch", "layer forward", "read-out + loss", "zero_grad", "backward", "clip_grad_norm_", "Adam step",
          "loss.item()")


def _profiled_step(loop, rng, cfg, kt, adding_problem):
    """One training step of ``loop`` (a TinyLoop) with each phase timed -> {phase: seconds}."""
    from ..autograd import Tensor
    from ..nn import functional as F
    model, now = loop.model, time.process_time
    t = [now()]
    x, y = adding_problem(cfg["T"], cfg["B"], rng, cfg["dtype"])
    t.append(now())
    kt.phase = "fwd"
    out = model.rnn(x)[0]
    t.append(now())
    loss = F.mse_loss(model.head(out[-1]), Tensor(np.asarray(y, dtype=model.dtype)))
    t.append(now())
    loop.opt.zero_grad()
    t.append(now())
    kt.phase = "bwd"
    loss.backward()
    t.append(now())
    loop.clip_grad_norm_(loop.params, loop.clip)
    t.append(now())
    loop.opt.step()
    t.append(now())
    float(loss.item())
    t.append(now())
    return {p: t[k + 1] - t[k] for k, p in enumerate(PHASES)}


def _alone_once(runner):
    """One forward + backward of the layer benchmark's workload -> (total, kernel fwd, kernel bwd) CPU ms."""
    with timing.KernelTimer(runner.kernel_module, clock=time.process_time) as kt:
        c0 = time.process_time()
        h = runner.forward()
        kt.phase = "bwd"
        runner.backward(h)
        total = time.process_time() - c0
    return 1e3 * total, 1e3 * kt.seconds["fwd"], 1e3 * kt.seconds["bwd"]


def profile_loop(loop, rng, cfg, steps, alone):
    """Median CPU ms per phase over ``steps`` profiled steps, the recurrent kernels' ms in the loop, and
    after each step one run of every runner in ``alone`` ({name: TinyRunner}), so that the loop and the
    layer alone are measured at the same moments."""
    from .. import kernels
    from ..tasks import adding_problem
    phases = {p: [] for p in PHASES}
    kern = {"kernel_fwd_ms": [], "kernel_bwd_ms": [], "other_kernels_ms": []}
    solo = {name: [] for name in alone}
    for _ in range(steps):
        with timing.KernelTimer(kernels.backend, clock=time.process_time) as kt:
            got = _profiled_step(loop, rng, cfg, kt, adding_problem)
        for p, s in got.items():
            phases[p].append(1e3 * s)
        fwd, bwd = kt.by_name.get("seq_forward", 0.0), kt.by_name.get("seq_backward", 0.0)
        kern["kernel_fwd_ms"].append(1e3 * fwd)
        kern["kernel_bwd_ms"].append(1e3 * bwd)
        kern["other_kernels_ms"].append(1e3 * (sum(kt.by_name.values()) - fwd - bwd))
        for name, runner in alone.items():
            solo[name].append(_alone_once(runner))
    med = statistics.median
    res = {"phases_ms": {p: med(v) for p, v in phases.items()},
           "step_ms": med([sum(v) for v in zip(*phases.values())])}
    res.update({k: med(v) for k, v in kern.items()})
    res["alone"] = {name: {"total_ms": med([t[0] for t in v]), "kernel_fwd_ms": med([t[1] for t in v]),
                           "kernel_bwd_ms": med([t[2] for t in v])} for name, v in solo.items()}
    return res


def subnormal_count(a, dtype):
    """How many values of ``a`` are subnormal in ``dtype`` (nonzero, below the smallest normal number)."""
    a = np.asarray(a)
    return int(np.count_nonzero((np.abs(a) < np.finfo(dtype).tiny) & (a != 0)))


def replay_backward(loop, rng, cfg, reps=5):
    """The recurrent backward kernel of one more training step, called again on the same arrays with
    flush-to-zero off and on (fastest of ``reps`` each), and the subnormal values in its results.

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
    res, was = {}, bool(kernels.c_backend is not None and kernels.c_backend.get_flush_to_zero())
    for ftz in (False, True):
        tinybptt.set_flush_to_zero(ftz)
        best = None
        for _ in range(reps):
            t0 = time.process_time()
            g = orig(*args, **kwargs)
            best = min(best or 1e9, time.process_time() - t0)
        res["replay_ftz_ms" if ftz else "replay_ms"] = 1e3 * best
        if not ftz:
            res["subnormals"] = {k: subnormal_count(v, cfg["dtype"]) for k, v in g.items()
                                 if isinstance(v, np.ndarray)}
    tinybptt.set_flush_to_zero(was)
    return res


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
        loop = make_loop("tinybptt", cell, cfg["H"], cfg["lr"], cfg["clip"], cfg["dtype"], seed)
        rng = np.random.default_rng(seed)
        for _ in range(req.get("warmup", 0)):
            loop.step(*adding_problem(cfg["T"], cfg["B"], rng, cfg["dtype"]))
        x = adding_problem(cfg["T"], cfg["B"], np.random.default_rng(seed + 1), cfg["dtype"])[0]
        start = _trained_weights(make_loop("tinybptt", cell, cfg["H"], cfg["lr"], cfg["clip"], cfg["dtype"], seed))
        alone = {"initial weights, no trace": alone_runner(cell, x, start, False),
                 "trained weights, trace": alone_runner(cell, x, _trained_weights(loop), True)}
        res = profile_loop(loop, rng, cfg, req["steps"], alone)
        res.update(replay_backward(loop, rng, cfg))
    finally:
        tinybptt.set_flush_to_zero(False)
    res.update(cell=cell, ftz=bool(req.get("ftz")), warmup=req.get("warmup", 0), steps=req["steps"],
               input_size=INPUT_SIZE)
    return res


def _ms(v):
    return "-" if v is None else ("%.3f" % v if v < 1 else "%.2f" % v)


def profile_tables(profile, md=False):
    """Two tables: the phases of a step, and the recurrent kernels inside the loop against the layer alone."""
    from .report import render_table
    ok = [r for r in profile if r.get("ok", True) and "phases_ms" in r]
    if not ok:
        errs = ["%s: %s" % (r.get("cell"), r.get("error")) for r in profile]
        return "Training-step profile: not measured%s" % ("; " + "; ".join(errs) if errs else "")
    head = ["cell", "flush-to-zero", "step ms", "sum of phases"] + list(PHASES)
    body = []
    for r in ok:
        ph = r["phases_ms"]
        total = sum(ph.values())
        body.append([r["cell"].upper(), "on" if r["ftz"] else "off (default)", _ms(r["step_ms"]), _ms(total)]
                    + ["%s (%.0f%%)" % (_ms(ph[p]), 100 * ph[p] / total) for p in PHASES])
    title = ("Where a tinybptt training step's time goes: median CPU ms per phase (its share of the sum of the "
             "phase medians) over %d steps after %d training steps; step ms = the median step"
             % (ok[0]["steps"], ok[0]["warmup"]))
    blocks = [render_table(head, body, md, title=title)]
    head = ["cell", "flush-to-zero", "in loop: seq_forward", "seq_backward", "other kernels",
            "seq_backward replayed (ftz off / on)", "subnormal values in its results"]
    alone = list(ok[0]["alone"])
    head += ["alone, %s: fwd / bwd kernels (whole step)" % a for a in alone]
    body = []
    for r in ok:
        body.append([r["cell"].upper(), "on" if r["ftz"] else "off (default)", _ms(r["kernel_fwd_ms"]),
                     _ms(r["kernel_bwd_ms"]), _ms(r["other_kernels_ms"]),
                     "%s / %s" % (_ms(r.get("replay_ms")), _ms(r.get("replay_ftz_ms"))),
                     sum((r.get("subnormals") or {}).values())]
                    + ["%s / %s (%s)" % (_ms(r["alone"][a]["kernel_fwd_ms"]), _ms(r["alone"][a]["kernel_bwd_ms"]),
                                         _ms(r["alone"][a]["total_ms"])) for a in alone])
    blocks.append(render_table(head, body, md, title="The recurrent kernels inside the training loop and, measured "
                                                     "after each profiled step, in the layer benchmark's workload "
                                                     "(loss sum(out**2), no read-out, no optimiser): median CPU ms"))
    return "\n\n".join(blocks)

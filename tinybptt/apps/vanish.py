"""``tinybptt vanish``: watch the gradient of a loss on the last step shrink on its way back in time.

The same random input sequence goes through a tanh RNN, an LSTM and a GRU of the
same size.  The loss is ``L = u . h_T`` for a fixed random unit vector ``u``: it
depends on the last hidden state only, so ``dL/dh_T = u`` has norm 1 and every
earlier ``||dL/dh_t||`` is pure backpropagation through time:

    dL/dh_t = (dh_T/dh_t)^T u = J_{t+1}^T ... J_T^T u.

The norms for t = 1..T come from the layer's ``grad_trace`` (what the engine's
backward pass computed, in the layer's dtype); t = 0 is the gradient of the
initial state.  Beside them the tool recomputes the same quantity analytically in
float64 *log space* (``tinybptt.inspect.logspace_backprop``), which stays exact where
the float gradient has underflowed to zero; ratios and per-step decay factors use
it whenever the float values are no longer usable.  For the vanilla RNN it also
prints the classical bound ``(||W_hh||_2 * max|act'|)^(T-t)``.

Everything is deterministic given ``--seed``.  See ``main`` for the options.
"""
import argparse
import json
import math
import sys
import time

import numpy as np

from . import add_cell_options, add_output_options, cell_list
from .. import display as terminal
from .. import nn, tasks
from ..autograd import Tensor
from ..inspect import jacobian as jac
from ..inspect import numerics
from ..kernels.cells import GATES, cell_kind
from .train import CELLS, cell_label, make_layer

INITS = ("default", "orthogonal", "identity", "scaled")


# --------------------------------------------------------------------------- building the cells


def apply_init(layer, kind, init_name, radius=1.5):
    """Re-initialise every recurrent weight ``weight_hh_l*`` of ``layer`` in place.

    ``default``     PyTorch's U(-1/sqrt(H), 1/sqrt(H)) (left as built)
    ``orthogonal``  each (H, H) gate block orthogonal
    ``identity``    each (H, H) gate block the identity (IRNN-style)
    ``scaled``      each (H, H) gate block rescaled to spectral radius ``radius``
                    (above 1 the linearised recurrence expands: gradients can explode)
    """
    G = GATES[cell_kind(kind)]  # any nonlinearity: the gate count is the same
    for l in range(layer.num_layers):
        w = getattr(layer, "weight_hh_l%d" % l)
        if init_name == "default":
            continue
        if init_name == "orthogonal":
            nn.init.orthogonal_(w, gates=G)
        elif init_name == "identity":
            nn.init.identity_(w, gates=G)
        elif init_name == "scaled":
            H = w.shape[1]
            for g in range(G):
                block = w.data[g * H:(g + 1) * H]
                rho = jac.spectral_radius(block)
                if rho > 0:
                    block *= radius / rho
        else:
            raise ValueError("unknown init %r; choose one of %s" % (init_name, ", ".join(INITS)))
    return layer


def build_cell(kind, input_size, H, dtype, nonlinearity="tanh", init="default", radius=1.5, forget_bias=None,
               seed=0):
    """The layer for one cell, seeded so each cell's weights are reproducible."""
    nn.manual_seed(seed)
    layer = make_layer(kind, input_size, H, dtype=dtype, mode="sequence", nonlinearity=nonlinearity,
                       forget_bias=forget_bias if kind == "lstm" else None)
    return apply_init(layer, kind, init, radius)


# --------------------------------------------------------------------------- measuring one cell


def _f(v):
    """JSON-safe float (None for inf/nan)."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def measure(layer, kind, x, u, clip=None):
    """Backpropagate ``L = sum(u * h_T)`` through ``layer`` on ``x`` and collect everything about it.

    Returns a dict with ``log10`` (T+1,) log10 ||dL/dh_t|| of the float gradient (t = 0..T;
    -inf where it is exactly 0), ``log10_logspace`` (T+1,) the float64 log-space
    recomputation, ``subnormal`` per step, parameter gradient norms (and clipped
    norms with ``clip``), and the Jacobian report (per-step factors, bound).
    """
    T, B = x.shape[0], x.shape[1]
    H = layer.hidden_size
    dt = layer.dtype
    h0 = Tensor(np.zeros((1, B, H), dtype=dt), requires_grad=True)
    c0 = Tensor(np.zeros((1, B, H), dtype=dt), requires_grad=True) if kind == "lstm" else None
    state = (h0, c0) if kind == "lstm" else h0
    out = layer(Tensor(np.asarray(x, dtype=dt)), state)[0]
    loss = (out[-1] * Tensor(np.asarray(u, dtype=dt))).sum()
    layer.zero_grad()
    loss.backward()
    trace = layer.grad_trace
    grads = [np.asarray(h0.grad[0])] + [trace.h[0, t] for t in range(T)]
    log10 = np.array([numerics.log10_norm(g) for g in grads])
    subnormal = [numerics.count_subnormal(g) for g in grads]
    c_log10 = None
    if kind == "lstm":
        cg = [np.asarray(c0.grad[0])] + [trace.c[0, t] for t in range(T)]
        c_log10 = np.array([numerics.log10_norm(g) for g in cg])
    params = layer.parameters()
    gnorm = numerics.norm(np.concatenate([np.asarray(p.grad, dtype=np.float64).ravel() for p in params
                                          if p.grad is not None]))
    clipped = None
    if clip:
        before = nn.utils.clip_grad_norm_(params, clip)
        after = numerics.norm(np.concatenate([np.asarray(p.grad, dtype=np.float64).ravel() for p in params
                                              if p.grad is not None]))
        clipped = {"max_norm": float(clip), "norm_before": float(before), "norm_after": float(after)}
    ls_h, ls_c = jac.logspace_backprop(layer, x, u)
    rep = jac.jacobian_norms(layer, x)
    layer.zero_grad()
    return {"log10": log10, "log10_logspace": ls_h, "log10_c": c_log10, "log10_c_logspace": ls_c,
            "subnormal": subnormal, "param_grad_norm": gnorm, "clip": clipped, "jacobian": rep,
            "loss": float(loss.item()), "tiny": float(np.finfo(dt).tiny)}


def summarise(m, T):
    """Ratio and mean per-step decay, from the float gradient when it is usable, else from log space."""
    f, ls = m["log10"], m["log10_logspace"]
    underflow = [t for t in range(T + 1) if not math.isfinite(f[t]) or m["subnormal"][t]]
    use = ls if underflow else f
    log_ratio = float(use[0] - use[T])
    per_step = log_ratio / T
    floor = math.log10(m.get("tiny", 2.2e-308)) + 2  # compare only well inside the normal range
    finite = [abs(a - b) for a, b in zip(f, ls) if math.isfinite(a) and math.isfinite(b) and a > floor]
    return {"log10_ratio": log_ratio, "ratio": 10 ** log_ratio if log_ratio > -300 else 0.0,
            "log10_decay_per_step": per_step, "decay_per_step": 10 ** per_step,
            "source": "log-space" if underflow else "float",
            "underflow_steps": underflow, "max_abs_log10_diff_vs_logspace": max(finite) if finite else None}


def shown_steps(T):
    """The steps shown in the table: T, T-1, 3T/4, T/2, T/4, 1, 0."""
    out = []
    for t in (T, T - 1, (3 * T) // 4, T // 2, T // 4, 1, 0):
        if 0 <= t <= T and t not in out:
            out.append(t)
    return out


# --------------------------------------------------------------------------- the whole run


def run(cells=CELLS, T=100, H=64, I=16, B=1, seed=0, dtype="float64", nonlinearity="tanh", init="default",
        radius=1.5, forget_bias=None, clip=None, trained=False, train_steps=300, train_lr=1e-2, train_batch=32,
        train_clip=1.0, progress=True, log=None):
    """Measure every cell; returns a JSON-ready dict (``render`` turns it into text)."""
    dt = np.dtype(dtype)
    cells = list(cells)
    for c in cells:
        if c not in CELLS:
            raise ValueError("vanish: unknown cell %r; choose from %s" % (c, ", ".join(CELLS)))
    if init not in INITS:
        raise ValueError("vanish: unknown init %r; choose from %s" % (init, ", ".join(INITS)))
    config = {"cells": cells, "T": T, "H": H, "I": 2 if trained else I, "B": B, "seed": seed, "dtype": str(dt),
              "nonlinearity": nonlinearity, "init": init, "radius": radius if init == "scaled" else None,
              "forget_bias": forget_bias, "clip": clip, "trained": bool(trained), "mode": "sequence",
              "loss": "sum(u * h_T), u a fixed random unit vector"}
    if trained:
        config.update({"train_task": "adding", "train_steps": train_steps, "train_lr": train_lr,
                       "train_batch": train_batch, "train_clip": train_clip})
    rng = np.random.default_rng(seed)
    if trained:
        x, _ = tasks.adding_problem(T, B, rng, dtype=dt)
    else:
        x = rng.standard_normal((T, B, I)).astype(dt)
    u = rng.standard_normal((B, H))
    u /= np.linalg.norm(u)
    result = {"config": config, "cells": {}}
    t0 = time.time()
    for kind in cells:
        name = cell_label(kind, nonlinearity)
        entry = {"kind": kind, "name": name}
        if trained:
            from .train import SeqModel, train

            nn.manual_seed(seed)
            model = SeqModel("adding", kind, H, dt, "sequence", nonlinearity, forget_bias if kind == "lstm" else None)
            apply_init(model.rnn, kind, init, radius)
            entry["before"] = _pack(measure(model.rnn, kind, x, u, clip), T)
            res = train(task="adding", cell=kind, T=T, H=H, batch=train_batch, lr=train_lr, clip=train_clip,
                        steps=train_steps, seed=seed, eval_every=max(train_steps // 4, 1), test_size=500,
                        dtype=str(dt), nonlinearity=nonlinearity, progress=progress, log=log, model=model,
                        record_gradients=False)
            entry["training"] = {"final": res["final"], "history": res["history"], "seconds": res["train_seconds"],
                                 "baseline_mse": tasks.ADDING_BASELINE_MSE}
            entry["after"] = _pack(measure(model.rnn, kind, x, u, clip), T)
        else:
            layer = build_cell(kind, I, H, dt, nonlinearity, init, radius, forget_bias, seed)
            entry["measured"] = _pack(measure(layer, kind, x, u, clip), T)
        result["cells"][kind] = entry
    result["seconds"] = time.time() - t0
    return result


def _pack(m, T):
    rep = m["jacobian"]
    s = summarise(m, T)
    return {
        "log10_grad_norm": [_f(v) for v in m["log10"]],
        "log10_grad_norm_logspace": [_f(v) for v in m["log10_logspace"]],
        "log10_c_grad_norm": None if m["log10_c"] is None else [_f(v) for v in m["log10_c"]],
        "subnormal_values": m["subnormal"],
        "steps": {str(t): {"log10": _f(m["log10"][t]), "log10_logspace": _f(m["log10_logspace"][t])}
                  for t in shown_steps(T)},
        "summary": s,
        "param_grad_norm": m["param_grad_norm"],
        "clip": m["clip"],
        "loss": m["loss"],
        "jacobian": {"log10_dhT_dht": [_f(v) for v in rep.log10_norms],
                     "log10_step_factor": [_f(v) for v in rep.log10_step_factors],
                     "mean_log10_step_factor": _f(np.nanmean(rep.log10_step_factors[1:])),
                     "w_hh_spectral_norm": rep.w_hh_norm,
                     "bound_factor": rep.bound_factor,
                     "log10_bound": None if rep.log10_bound is None else [_f(v) for v in rep.log10_bound]},
    }


# --------------------------------------------------------------------------- text


def _series(p):
    """log10 norms to draw: the float values, continued by log space where they underflowed."""
    f, ls = p["log10_grad_norm"], p["log10_grad_norm_logspace"]
    return [a if a is not None else b for a, b in zip(f, ls)]


def _cell_value(p, t):
    st = p["steps"][str(t)]
    if st["log10"] is None:
        return "0 (~%s)" % numerics.fmt_pow10(st["log10_logspace"]) if st["log10_logspace"] is not None else "0"
    return numerics.fmt_pow10(st["log10"])


def render(result, unicode=None, color=None, width=64):
    """The terminal report of a ``run`` result: one table row per cell, a heatmap and notes."""
    cfg = result["config"]
    lines = [_headline(cfg)]
    for phase in (["before", "after"] if cfg["trained"] else ["measured"]):
        if cfg["trained"]:
            lines += ["", "%s training on the adding problem (T=%d, %d steps, Adam lr %g, batch %d, clip %g):" % (
                phase.upper(), cfg["T"], cfg["train_steps"], cfg["train_lr"], cfg["train_batch"], cfg["train_clip"])]
        lines += ["", _table(result, phase)]
        lines += [""] + _strips(result, phase, unicode, color, width)
        notes = [n for e in result["cells"].values() for n in _cell_notes(e, phase, cfg)] + _agreement_note(result,
                                                                                                            phase)
        if notes:
            lines += [""] + notes
    return "\n".join(lines)


def _headline(cfg):
    head = "||dL/dh_t|| for a loss on the last step only (L = u.h_T, |u| = 1): T=%d, H=%d, I=%d, B=%d, %s, seed %d, " \
           "init %s" % (cfg["T"], cfg["H"], cfg["I"], cfg["B"], cfg["dtype"], cfg["seed"], cfg["init"])
    if cfg["init"] == "scaled":
        head += " (spectral radius %g)" % cfg["radius"]
    if cfg["forget_bias"] is not None:
        head += ", LSTM forget bias %g" % cfg["forget_bias"]
    return head


def _table(result, phase):
    """One row per cell: the norm at the shown steps, the ratio over the sequence, the factor per step."""
    steps = shown_steps(result["config"]["T"])
    headers = ["cell"] + ["t=%d" % t for t in steps] + ["|dL/dh_0|/|dL/dh_T|", "factor/step"]
    rows = []
    for e in result["cells"].values():
        p = e[phase]
        s = p["summary"]
        rows.append([e["name"]] + [_cell_value(p, t) for t in steps] +
                    [numerics.fmt_pow10(s["log10_ratio"]), "%.4f" % s["decay_per_step"]])
    return terminal.format_table(headers, rows, align="l" + "r" * (len(headers) - 1))


def _strips(result, phase, unicode, color, width):
    """The graphic: one heat strip and one sparkline per cell on a shared log10 scale, t = 0 at the left."""
    T = result["config"]["T"]
    series = {e["name"]: _series(e[phase]) for e in result["cells"].values()}
    fin = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    lo, hi = (min(fin), max(fin)) if fin else (0.0, 0.0)
    fancy = terminal.supports_unicode() and unicode is not False
    lines = ["log10 ||dL/dh_t||, t = 0 (left) .. %d (right); scale %s (%s) .. %s (%s)" % (
        T, numerics.fmt_pow10(lo), "░" if fancy else ".", numerics.fmt_pow10(hi), "█" if fancy else "#")]
    names = list(series)
    rows = [[v if v is not None else -math.inf for v in series[n]] for n in names]
    w = min(width, T + 1)
    lines.append(terminal.heatmap(rows, labels=names, lo=lo, hi=hi, width=w, unicode=unicode, color=color))
    lw = max(len(n) for n in names)
    lines += ["%s  %s" % (n.rjust(lw), terminal.sparkline(r, lo=lo, hi=hi, width=w, unicode=unicode))
              for n, r in zip(names, rows)]
    return lines


def _cell_notes(e, phase, cfg):
    """What a reader should know about one cell's numbers: underflow, growth, the bound, clipping, training."""
    p, name = e[phase], e["name"]
    s, jr = p["summary"], p["jacobian"]
    notes = []
    if s["underflow_steps"]:
        z = [t for t, v in enumerate(p["log10_grad_norm"]) if v is None]
        sub = sum(p["subnormal_values"])
        what = (["is exactly 0 at %d steps (t <= %d)" % (len(z), max(z))] if z else []) + \
            (["holds %d subnormal values" % sub] if sub else [])
        notes.append("%s: the %s gradient %s; ratio and per-step factor come from the float64 log-space "
                     "recomputation." % (name, cfg["dtype"], " and ".join(what)))
    if s["log10_ratio"] > 0:
        notes.append("%s: the gradient GROWS on its way back (x%.4f per step, %s over %d steps): exploding "
                     "gradients%s." % (name, s["decay_per_step"], numerics.fmt_pow10(s["log10_ratio"]), cfg["T"],
                                       "" if cfg["clip"] else "; add --clip to see clipping"))
    if jr["log10_bound"] is not None:
        actual = jr["log10_dhT_dht"][0]
        notes.append("%s: classical bound ||dh_T/dh_t|| <= (||W_hh||_2 * max|act'|)^(T-t) with ||W_hh||_2 = "
                     "%.3f: bound at t=0 %s, actual ||dh_T/dh_0|| %s." % (
                         name, jr["w_hh_spectral_norm"], numerics.fmt_pow10(jr["log10_bound"][0]),
                         numerics.fmt_pow10(actual) if actual is not None else "0"))
    if p["clip"] is not None:
        c = p["clip"]
        notes.append("%s: parameter gradient norm %.4g -> clipped to %.4g (max_norm %g)%s." % (
            name, c["norm_before"], c["norm_after"], c["max_norm"],
            "" if c["norm_before"] > c["max_norm"] else ", below the threshold: unchanged"))
    if cfg["trained"] and phase == "after":
        tr = e["training"]
        notes.append("%s: test MSE after %d steps %.4f (baseline 1/6 = %.4f), %.0f s." % (
            name, cfg["train_steps"], tr["final"]["test_loss"], tr["baseline_mse"], tr["seconds"]))
    return notes


def _agreement_note(result, phase):
    diffs = [e[phase]["summary"]["max_abs_log10_diff_vs_logspace"] for e in result["cells"].values()]
    diffs = [d for d in diffs if d is not None]
    if not diffs:
        return []
    return ["check: the engine's gradients and the independent float64 log-space recomputation agree to "
            "%.1e in log10." % max(diffs)]


# --------------------------------------------------------------------------- plot


def plot(result, path, title=None):
    """Write the slide: log10 ||dL/dh_t|| against t, one line per cell (matplotlib)."""
    from ..inspect.plot import plot_vanish

    return plot_vanish(result, path, title=title)


# --------------------------------------------------------------------------- command line


def build_parser(parser=None):
    p = parser or argparse.ArgumentParser(prog="tinybptt vanish")
    p.description = ("Watch gradients vanish (or explode): RNN, LSTM and GRU of the same size on the same random "
                     "sequence, loss on the last step only; prints ||dL/dh_t|| from t=T back to t=0.")
    p.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated cells from rnn,lstm,gru (default all)")
    p.add_argument("--T", type=int, default=100, help="sequence length (default 100)")
    p.add_argument("--I", type=int, default=16, help="input size (default 16; 2 with --trained)")
    p.add_argument("--B", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, input and loss direction (default 0)")
    p.add_argument("--init", default="default", choices=INITS,
                   help="recurrent weights: default (PyTorch's uniform), orthogonal, identity, or scaled to "
                        "spectral radius --radius")
    p.add_argument("--radius", type=float, default=1.5, help="spectral radius for --init scaled (default 1.5)")
    add_cell_options(p, dtype="float64")
    p.add_argument("--clip", type=float, default=None,
                   help="clip the parameter gradient to this norm and show the norm before and after")
    p.add_argument("--trained", action="store_true",
                   help="measure, train briefly on the adding problem, measure again")
    p.add_argument("--train-steps", type=int, default=300,
                   help="training steps with --trained (default 300: about a minute; at T=100 the GRU solves the "
                        "adding problem within ~300 steps, the LSTM needs ~1500-2000)")
    p.add_argument("--train-lr", type=float, default=1e-2, help="Adam learning rate with --trained")
    p.add_argument("--plot", metavar="FILE.png", help="write a plot of log10 ||dL/dh_t|| against t (matplotlib)")
    p.add_argument("--no-color", action="store_true", help="no ANSI colours in the heatmap")
    add_output_options(p, json_help="write every number shown, with the configuration")
    return p


def main(argv=None):
    """``tinybptt vanish [options]``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    cells = cell_list(args.cells)
    try:
        res = run(cells=cells, T=args.T, H=args.H, I=args.I, B=args.B, seed=args.seed, dtype=args.dtype,
                  nonlinearity=args.nonlinearity, init=args.init, radius=args.radius, forget_bias=args.forget_bias,
                  clip=args.clip, trained=args.trained, train_steps=args.train_steps, train_lr=args.train_lr,
                  progress=not args.quiet, log=None if args.quiet else print)
    except ValueError as exc:
        print("tinybptt vanish: %s" % exc, file=sys.stderr)
        return 2
    text = render(res, color=False if args.no_color else None)
    print(text)
    if args.plot:
        try:
            plot(res, args.plot)
            print("\nwrote %s" % args.plot)
        except ImportError:
            print("\n--plot needs matplotlib (pip install matplotlib, or tinybptt[plot]); no plot written",
                  file=sys.stderr)
    if args.json:
        res["text"] = render(res, unicode=True, color=False)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
        print("wrote %s" % args.json)
    return 0

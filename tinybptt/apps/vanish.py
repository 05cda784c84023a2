"""``tinybptt vanish``: watch the gradient of a loss on the last step shrink on its way back in time.

Time steps are numbered t = 0..T-1 (``out[t]`` is h_t); the initial state is t = -1.

The same random input sequence goes through a tanh RNN, an LSTM and a GRU of the
same size (and, with ``--cells ...,attention``, through a linear embedding and one
head of causal self-attention).  The loss is ``L = u . y_{T-1}`` for a fixed random
unit vector ``u``, where y is the model's output (h for a recurrent cell): it
depends on the last step only, so ``dL/dh_{T-1} = u`` has norm 1 and every earlier
``||dL/dh_t||`` is pure backpropagation through time:

    dL/dh_t = (dh_{T-1}/dh_t)^T u = J_{t+1}^T ... J_{T-1}^T u.

Two views (``--wrt``):

``hidden``  ||dL/dh_t|| for t = -1..T-1 (the default for recurrent cells), from the
            layer's ``grad_trace`` (t = -1: the gradient of the initial state);
``input``   ||dL/dx_t|| for t = 0..T-1, the connectivity of the loss to each input
            step -- the only view for attention, which has no hidden chain: its last
            output reaches every input through one softmax, whatever the distance.

For recurrent cells the same quantity is recomputed in float64 *log space*
(``inspect.logspace_backprop``, ``logspace_input_grads`` below), exact where the
float gradient underflowed to zero; ratios and per-step factors use it then.  For
the vanilla RNN the classical bound ``(||W_hh||_2 * max|act'|)^(T-1-t)`` is shown.

Every per-step list in the result has T+1 entries, entry k for time step t = k - 1
(``steps``); in the input view entry 0 (t = -1) is None: there is no x_{-1}.
Deterministic given ``--seed``.
"""
import argparse
import json
import math
import sys
import time

import numpy as np

from . import add_cell_options, add_output_options, cell_list, write_plot
from .. import nn, tasks
from ..autograd import Tensor
from ..inspect import jacobian as jac
from ..inspect import numerics
from ..kernels import numpy_rnn
from ..kernels.cells import GATES, cell_kind
from .train import CELLS, cell_label, make_layer
from .vanish_report import QUANTITY, WRT, plot, render, shown_steps

INITS = ("default", "orthogonal", "identity", "scaled")
#: what ``--cells`` accepts: the recurrent cells and attention (no hidden chain: input view only)
MODELS = CELLS + ("attention",)


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


class CausalAttention(nn.Module):
    """The recurrence-free contrast: ``Linear(I, H)`` embedding, then one head of causal self-attention.

    ``forward(x)`` maps x (T, B, I) to the attention outputs (T, B, H); output t
    attends to the embedded steps 0..t, so the last output reads every input
    directly, through one softmax, whatever its distance.  No positional encoding:
    the measurement is of the paths, not of a trained model.
    """

    def __init__(self, input_size, hidden_size, dtype=np.float64):
        super().__init__()
        self.embed = nn.Linear(input_size, hidden_size, dtype=dtype)
        self.attn = nn.MultiheadAttention(hidden_size, 1, dtype=dtype)
        self.hidden_size, self.dtype = hidden_size, np.dtype(dtype)

    def forward(self, x):
        e = self.embed(x)
        return self.attn(e, e, e, attn_mask=nn.causal_mask(e.shape[0]), need_weights=False)[0]


def build_cell(kind, input_size, H, dtype, nonlinearity="tanh", init="default", radius=1.5, forget_bias=None,
               seed=0):
    """The layer for one cell (or ``CausalAttention`` for "attention"), seeded so its weights are reproducible."""
    nn.manual_seed(seed)
    if kind == "attention":
        return CausalAttention(input_size, H, dtype)
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


def _param_grad_norms(params, clip):
    """The norm of all parameter gradients, and (with ``clip``) what clipping made of it."""
    def total():
        return numerics.norm(np.concatenate([np.asarray(p.grad, dtype=np.float64).ravel() for p in params
                                             if p.grad is not None]))
    gnorm = total()
    if not clip:
        return gnorm, None
    before = nn.utils.clip_grad_norm_(params, clip)
    return gnorm, {"max_norm": float(clip), "norm_before": float(before), "norm_after": float(total())}


def _forward_last(model, kind, x, B, wrt):
    """Run ``model`` on ``x``; returns (the output at the last step, the input Tensor, the initial states)."""
    dt = model.dtype
    xt = Tensor(np.asarray(x, dtype=dt), requires_grad=(wrt == "input"))
    if kind == "attention":
        return model(xt)[-1], xt, (None, None)
    H = model.hidden_size
    h0 = Tensor(np.zeros((1, B, H), dtype=dt), requires_grad=True)
    c0 = Tensor(np.zeros((1, B, H), dtype=dt), requires_grad=True) if kind == "lstm" else None
    out = model(xt, (h0, c0) if kind == "lstm" else h0)[0]
    return out[-1], xt, (h0, c0)


def measure(model, kind, x, u, clip=None, wrt="hidden"):
    """Backpropagate ``L = sum(u * y_{T-1})`` through ``model`` on ``x`` and collect everything about it.

    ``wrt="hidden"`` (recurrent cells): ``log10`` (T+1,) holds log10 ||dL/dh_t|| of the
    float gradient for t = -1..T-1 (entry k is t = k - 1; -inf where it is exactly 0);
    ``wrt="input"``: log10 ||dL/dx_t|| for t = 0..T-1, entry 0 NaN (no x_{-1}).
    ``log10_logspace`` is the float64 log-space recomputation (NaN for attention),
    ``subnormal`` the count per step; parameter gradient norms (and clipped norms
    with ``clip``) and, for recurrent cells, the Jacobian report.
    """
    T, B = x.shape[0], x.shape[1]
    if kind == "attention":
        wrt = "input"  # no hidden chain
    last, xt, (h0, c0) = _forward_last(model, kind, x, B, wrt)
    loss = (last * Tensor(np.asarray(u, dtype=model.dtype))).sum()
    model.zero_grad()
    loss.backward()
    c_log10 = None
    if wrt == "input":
        grads = [None] + [np.asarray(xt.grad[t]) for t in range(T)]
    else:
        trace = model.grad_trace
        grads = [np.asarray(h0.grad[0])] + [trace.h[0, t] for t in range(T)]
        if kind == "lstm":
            c_log10 = np.array([numerics.log10_norm(g) for g in [np.asarray(c0.grad[0])] +
                                [trace.c[0, t] for t in range(T)]])
    log10 = np.array([math.nan if g is None else numerics.log10_norm(g) for g in grads])
    subnormal = [0 if g is None else numerics.count_subnormal(g) for g in grads]
    gnorm, clipped = _param_grad_norms(model.parameters(), clip)
    ls_h = ls_c = rep = None
    if kind != "attention":
        if wrt == "input":
            ls_h = logspace_input_grads(model, x, u)
        else:
            ls_h, ls_c = jac.logspace_backprop(model, x, u)
        rep = jac.jacobian_norms(model, x)
    model.zero_grad()
    return {"wrt": wrt, "log10": log10, "log10_logspace": np.full(T + 1, math.nan) if ls_h is None else ls_h,
            "log10_c": c_log10, "log10_c_logspace": ls_c, "subnormal": subnormal, "param_grad_norm": gnorm,
            "clip": clipped, "jacobian": rep, "loss": float(loss.item()), "tiny": float(np.finfo(model.dtype).tiny)}


def logspace_input_grads(layer, x, g_last):
    """log10 ||dL/dx_t|| for t = 0..T-1 (entry t + 1; entry 0 NaN) when dL/dh_{T-1} = ``g_last``.

    The analytic companion of the input view, in float64 with the NumPy reference
    kernel: the state gradient is pushed back one step at a time and renormalised
    after each step (as ``inspect.logspace_backprop`` does), and at every step the
    kernel's step backward also gives the gradient on that step's input.
    """
    spec = jac.cell_from_layer(layer)
    tr = jac.run_cell(spec, x)
    T, B, H = x.shape[0], x.shape[1], spec.hidden_size
    lstm = spec.kind == "lstm"
    out = np.full(T + 1, math.nan)
    dh, dc = np.asarray(g_last, dtype=np.float64).reshape(B, H), np.zeros((B, H)) if lstm else None
    scale = 0.0
    for t in range(T - 1, -1, -1):  # step t makes tr.h[t + 1]
        g = numpy_rnn.step_backward(spec.kind, jac._step_saved(tr, t + 1), dh, dc, need_dx=True)
        out[t + 1] = scale + numerics.log10_norm(g["dx"])
        dh, dc = g["dh"], g["dc"]
        f = float(np.sqrt(np.sum(dh * dh) + (np.sum(dc * dc) if lstm else 0.0)))
        if f == 0.0 or not math.isfinite(f):
            out[1:t + 1] = -math.inf if f == 0.0 else math.inf
            break
        dh, dc = dh / f, (dc / f if lstm else None)
        scale += math.log10(f)
    return out


def summarise(m, T):
    """Ratio and mean per-step decay, from the float gradient when it is usable, else from log space.

    The ratio is first step / last step: ||dL/dh_{-1}|| / ||dL/dh_{T-1}|| over T steps
    (hidden view) or ||dL/dx_0|| / ||dL/dx_{T-1}|| over T-1 steps (input view)."""
    f, ls = m["log10"], m["log10_logspace"]
    first = 1 if m["wrt"] == "input" else 0
    idx = range(first, T + 1)
    underflow = [k - 1 for k in idx if not math.isfinite(f[k]) or m["subnormal"][k]]
    use = ls if underflow and all(math.isfinite(ls[k]) for k in (first, T)) else f
    log_ratio = float(use[first] - use[T])
    per_step = log_ratio / max(T - first, 1)
    floor = math.log10(m.get("tiny", 2.2e-308)) + 2  # compare only well inside the normal range
    finite = [abs(f[k] - ls[k]) for k in idx if math.isfinite(f[k]) and math.isfinite(ls[k]) and f[k] > floor]
    return {"log10_ratio": log_ratio, "ratio": 10 ** log_ratio if log_ratio > -300 else 0.0,
            "log10_decay_per_step": per_step, "decay_per_step": 10 ** per_step,
            "source": "log-space" if use is ls else "float",
            "underflow_steps": underflow, "max_abs_log10_diff_vs_logspace": max(finite) if finite else None}


# --------------------------------------------------------------------------- the whole run


def view_of(kind, wrt="auto"):
    """What a row measures: "hidden" (||dL/dh_t||) or "input" (||dL/dx_t||).

    ``wrt="auto"`` is the hidden chain for recurrent cells; attention has none, so
    it is always measured at its inputs."""
    if wrt not in ("auto",) + WRT:
        raise ValueError("vanish: wrt must be auto, hidden or input, got %r" % (wrt,))
    return "input" if kind == "attention" or wrt == "input" else "hidden"


def run(cells=CELLS, T=100, H=64, I=16, B=1, seed=0, dtype="float64", nonlinearity="tanh", init="default",
        radius=1.5, forget_bias=None, clip=None, trained=False, train_steps=300, train_lr=1e-2, train_batch=32,
        train_clip=1.0, progress=True, log=None, wrt="auto"):
    """Measure every cell; returns a JSON-ready dict (``render`` turns it into text).

    ``cells`` from ``MODELS`` (rnn, lstm, gru, attention); ``wrt`` "auto" (hidden
    for recurrent cells, input for attention), "hidden" or "input" (see ``view_of``).
    """
    dt = np.dtype(dtype)
    cells = list(cells)
    for c in cells:
        if c not in MODELS:
            raise ValueError("vanish: unknown cell %r; choose from %s" % (c, ", ".join(MODELS)))
    if init not in INITS:
        raise ValueError("vanish: unknown init %r; choose from %s" % (init, ", ".join(INITS)))
    if trained and "attention" in cells:
        raise ValueError("vanish: --trained trains recurrent cells only (rnn, lstm, gru), not attention")
    views = {c: view_of(c, wrt) for c in cells}
    config = {"cells": cells, "T": T, "H": H, "I": 2 if trained else I, "B": B, "seed": seed, "dtype": str(dt),
              "nonlinearity": nonlinearity, "init": init, "radius": radius if init == "scaled" else None,
              "forget_bias": forget_bias, "clip": clip, "trained": bool(trained), "mode": "sequence", "wrt": wrt,
              "loss": "sum(u * y_{T-1}), u a fixed random unit vector, y the output (h for recurrent cells)",
              "steps": list(range(-1, T)),
              "numbering": "t = 0..T-1 (out[t] is h_t); t = -1 is the initial state; entry k of a list is t = k - 1"}
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
        entry = {"kind": kind, "name": cell_label(kind, nonlinearity), "wrt": views[kind],
                 "quantity": QUANTITY[views[kind]]}
        if trained:
            entry.update(_measure_trained(kind, x, u, config, progress, log))
        else:
            layer = build_cell(kind, I, H, dt, nonlinearity, init, radius, forget_bias, seed)
            entry["measured"] = _pack(measure(layer, kind, x, u, clip, views[kind]), T)
        result["cells"][kind] = entry
    result["seconds"] = time.time() - t0
    return result




def _measure_trained(kind, x, u, cfg, progress, log):
    """Measure a recurrent cell, train it briefly on the adding problem, measure again."""
    from .train import SeqModel, train

    T, dt, wrt = cfg["T"], np.dtype(cfg["dtype"]), view_of(kind, cfg["wrt"])
    nn.manual_seed(cfg["seed"])
    model = SeqModel("adding", kind, cfg["H"], dt, "sequence", cfg["nonlinearity"],
                     cfg["forget_bias"] if kind == "lstm" else None)
    apply_init(model.rnn, kind, cfg["init"], cfg["radius"] or 1.5)
    before = _pack(measure(model.rnn, kind, x, u, cfg["clip"], wrt), T)
    steps = cfg["train_steps"]
    res = train(task="adding", cell=kind, T=T, H=cfg["H"], batch=cfg["train_batch"], lr=cfg["train_lr"],
                clip=cfg["train_clip"], steps=steps, seed=cfg["seed"], eval_every=max(steps // 4, 1), test_size=500,
                dtype=str(dt), nonlinearity=cfg["nonlinearity"], progress=progress, log=log, model=model,
                record_gradients=False)
    after = _pack(measure(model.rnn, kind, x, u, cfg["clip"], wrt), T)
    return {"before": before, "after": after, "training": {"final": res["final"], "history": res["history"],
                                                           "seconds": res["train_seconds"],
                                                           "baseline_mse": tasks.ADDING_BASELINE_MSE}}


def _pack(m, T):
    """The JSON-ready numbers of one ``measure``: lists indexed by ``steps`` (t = -1..T-1)."""
    rep = m["jacobian"]
    s = summarise(m, T)
    shown = shown_steps(T, initial=m["wrt"] == "hidden")
    return {
        "wrt": m["wrt"],
        "steps": list(range(-1, T)),
        "log10_grad_norm": [_f(v) for v in m["log10"]],
        "log10_grad_norm_logspace": [_f(v) for v in m["log10_logspace"]],
        "log10_c_grad_norm": None if m["log10_c"] is None else [_f(v) for v in m["log10_c"]],
        "subnormal_values": m["subnormal"],
        "shown": {str(t): {"log10": _f(m["log10"][t + 1]), "log10_logspace": _f(m["log10_logspace"][t + 1])}
                  for t in shown},
        "summary": s,
        "param_grad_norm": m["param_grad_norm"],
        "clip": m["clip"],
        "loss": m["loss"],
        "jacobian": None if rep is None else {
            "steps": rep.steps.tolist(),
            "log10_dhT_dht": [_f(v) for v in rep.log10_norms],
            "log10_step_factor": [_f(v) for v in rep.log10_step_factors],
            "mean_log10_step_factor": _f(np.nanmean(rep.log10_step_factors[1:])),
            "w_hh_spectral_norm": rep.w_hh_norm,
            "bound_factor": rep.bound_factor,
            "log10_bound": None if rep.log10_bound is None else [_f(v) for v in rep.log10_bound]},
    }


# --------------------------------------------------------------------------- command line


def build_parser(parser=None):
    """The options of ``tinybptt vanish`` (on ``parser``, e.g. a sub-command's, or a new one)."""
    p = parser or argparse.ArgumentParser(prog="tinybptt vanish")
    p.description = ("Watch gradients vanish (or explode): RNN, LSTM and GRU of the same size (and attention with "
                     "--cells ...,attention) on the same random sequence, loss on the last step only; prints "
                     "||dL/dh_t|| (or ||dL/dx_t||, --wrt input) from the last step back to the first. Time steps are "
                     "t = 0..T-1 (out[t] is h_t); t = -1 is the initial state.")
    p.add_argument("--cells", default="rnn,lstm,gru",
                   help="comma-separated cells from %s (default rnn,lstm,gru)" % ",".join(MODELS))
    p.add_argument("--wrt", default="auto", choices=("auto",) + WRT,
                   help="hidden: ||dL/dh_t|| for t=-1..T-1; input: ||dL/dx_t|| for t=0..T-1, the loss's "
                        "connectivity to each input step; auto (default): hidden for recurrent cells, input for "
                        "attention (which has no hidden chain)")
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
                   help="measure, train briefly on the adding problem, measure again (recurrent cells)")
    p.add_argument("--train-steps", type=int, default=300,
                   help="training steps with --trained (default 300: about a minute; at T=100 the GRU solves the "
                        "adding problem within ~300 steps, the LSTM needs ~1500-2000)")
    p.add_argument("--train-lr", type=float, default=1e-2, help="Adam learning rate with --trained")
    p.add_argument("--plot", metavar="FILE.png", help="write a plot of the log10 norms against t (matplotlib)")
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
                  progress=not args.quiet, log=None if args.quiet else print, wrt=args.wrt)
    except ValueError as exc:
        print("tinybptt vanish: %s" % exc, file=sys.stderr)
        return 2
    text = render(res, color=False if args.no_color else None)
    print(text)
    if args.plot:
        write_plot(lambda path: plot(res, path), args.plot, lead="\n")
    if args.json:
        res["text"] = render(res, unicode=True, color=False)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
        print("wrote %s" % args.json)
    return 0

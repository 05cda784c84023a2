"""``tinybptt reproduce NAME``: classic results about learning across time, re-run at a size that fits.

``tinybptt reproduce --list`` names them.  Each experiment prints its configuration
and seed, what the paper reports (only what could be checked against the paper's
own text; where a number could not be checked it is not quoted) and what this run
gives, and takes ``--steps`` and size flags so that a test can run it in seconds.

adding      Hochreiter & Schmidhuber (1997)'s criterion (|error| < 0.04 at the sequence end)
            and the predict-one baseline, RNN vs LSTM vs GRU, on the adding problem
irnn        Le, Jaitly & Hinton (2015): identity-initialised ReLU RNN vs tanh RNN vs LSTM on adding
copy        the copying task against the memoryless baseline 10 log(8) / (T + 20)
cliff       Pascanu, Mikolov & Bengio (2013): a one-unit RNN's error surface has a wall;
            SGD with and without gradient-norm clipping (a figure)
agreement   error against number of attractors (Linzen, Dupoux & Goldberg 2016's trend)

``main(argv=None)`` is the command; ``run(name, **options)`` returns the result dict.
"""
import argparse
import json
import math
import sys
import time

import numpy as np

from .. import nn, tasks
from ..autograd import Tensor, no_grad
from ..ops import tanh
from . import train as tr

# --------------------------------------------------------------------------- adding, irnn, copy


def _adding_success(model, T, n, seed, threshold=0.04):
    """Fraction of ``n`` fresh adding sequences whose absolute error at the end is below ``threshold``."""
    x, y = tasks.adding_problem(T, n, np.random.default_rng(seed), dtype=model.dtype)
    with no_grad():
        pred = np.asarray(model(x).data)
    return float(np.mean(np.abs(pred - y) < threshold))


def _train_cells(task, cells, T, H, batch, lr, clip, steps, seed, progress, models=None):
    """``tinybptt train`` for each cell (optionally with prepared models): name -> train result."""
    out = {}
    for name, cell in cells:
        model = models.get(name) if models else None
        out[name] = tr.train(task=task, cell=cell, T=T, H=H, batch=batch, lr=lr, clip=clip, steps=steps, seed=seed,
                             eval_every=max(1, steps // 10), test_size=500, progress=progress, log=None,
                             model=model, record_gradients=False,
                             nonlinearity="relu" if name == "irnn" else "tanh")
    return out


def run_adding(T=100, H=64, batch=32, lr=1e-2, clip=1.0, steps=3000, seed=0, progress=True, cells=("rnn", "lstm", "gru")):
    """RNN, LSTM, GRU on the adding problem: test MSE and the share of sequences with |error| < 0.04."""
    res = _train_cells("adding", [(c, c) for c in cells], T, H, batch, lr, clip, steps, seed, progress)
    rows = {}
    for name, r in res.items():
        rows[name] = {"test_mse": r["final"]["test_loss"], "train_seconds": r["train_seconds"],
                      "solved_fraction": _adding_success(r["model"], T, 2000, seed + 20_000),
                      "curve": [(h["step"], h["test_loss"]) for h in r["history"]]}
    return {"name": "adding", "config": dict(T=T, H=H, batch=batch, lr=lr, clip=clip, steps=steps, seed=seed,
                                             optimizer="adam", dtype="float32"),
            "baseline_mse": tasks.ADDING_BASELINE_MSE, "models": rows}


def irnn_model(H, seed, dtype=np.float32):
    """Le et al.'s IRNN for the adding problem: ReLU RNN, recurrent weights the identity, biases zero."""
    nn.manual_seed(seed)
    model = tr.SeqModel("adding", "rnn", H, dtype=dtype, nonlinearity="relu")
    nn.init.identity_(model.rnn.weight_hh_l0)
    nn.init.zeros_(model.rnn.bias_hh_l0)
    nn.init.zeros_(model.rnn.bias_ih_l0)
    return model


def run_irnn(T=100, H=64, batch=32, lr=1e-3, clip=1.0, steps=3000, seed=0, progress=True):
    """IRNN vs tanh RNN vs LSTM on the adding problem (the same optimiser for all three)."""
    cells = [("irnn", "rnn"), ("rnn", "rnn"), ("lstm", "lstm")]
    res = _train_cells("adding", cells, T, H, batch, lr, clip, steps, seed, progress,
                       models={"irnn": irnn_model(H, seed)})
    rows = {name: {"test_mse": r["final"]["test_loss"], "train_seconds": r["train_seconds"],
                   "curve": [(h["step"], h["test_loss"]) for h in r["history"]]} for name, r in res.items()}
    return {"name": "irnn", "config": dict(T=T, H=H, batch=batch, lr=lr, clip=clip, steps=steps, seed=seed,
                                           optimizer="adam", dtype="float32"),
            "baseline_mse": tasks.ADDING_BASELINE_MSE, "models": rows}


def run_copy(T=50, H=64, batch=32, lr=1e-2, clip=1.0, steps=2000, seed=0, progress=True, cells=("rnn", "lstm", "gru")):
    """The copying task (8 symbols, 10 to copy, delay T): cross-entropy against the memoryless baseline."""
    res = _train_cells("copy", [(c, c) for c in cells], T, H, batch, lr, clip, steps, seed, progress)
    rows = {name: {"test_ce": r["final"]["test_loss"], "recall_accuracy": r["final"].get("test_accuracy"),
                   "train_seconds": r["train_seconds"],
                   "curve": [(h["step"], h["test_loss"]) for h in r["history"]]} for name, r in res.items()}
    return {"name": "copy", "config": dict(T=T, H=H, batch=batch, lr=lr, clip=clip, steps=steps, seed=seed,
                                           optimizer="adam", dtype="float32", symbols=8, length=10),
            "baseline_ce": tasks.copy_memory_baseline(T), "models": rows}


# --------------------------------------------------------------------------- cliff


def cliff_loss(w, b, T=50, x0=0.5, target=0.7):
    """(x_T - target)^2 for the one-unit RNN x_t = w tanh(x_{t-1}) + b (Tensors of any matching shape)."""
    x = Tensor(np.full(w.shape, x0, dtype=w.dtype))
    for _ in range(T):
        x = w * tanh(x) + b
    d = x - target
    return d * d


def _sgd_path(w0, b0, lr, steps, clip, T):
    """SGD on (w, b) from (w0, b0); with ``clip`` the gradient is rescaled to norm <= clip."""
    p = np.array([w0, b0], dtype=np.float64)
    path, losses, norms = [p.copy()], [], []
    for _ in range(steps):
        w, b = Tensor(p[:1], requires_grad=True), Tensor(p[1:], requires_grad=True)
        loss = cliff_loss(w, b, T).sum()
        loss.backward()
        g = np.array([w.grad[0], b.grad[0]])
        n = float(np.linalg.norm(g))
        losses.append(float(loss.item()))
        norms.append(n)
        if clip and n > clip:
            g = g * (clip / n)
        p = p - lr * g
        path.append(p.copy())
        if not np.all(np.isfinite(p)):
            break
    with no_grad():
        final = float(cliff_loss(Tensor(p[:1]), Tensor(p[1:]), T).sum().item())
    steps_len = np.linalg.norm(np.diff(np.array(path), axis=0), axis=1)
    return {"path": [list(map(float, q)) for q in path], "losses": losses, "grad_norms": norms, "final_loss": final,
            "max_grad_norm": max(norms), "max_step": float(steps_len.max()), "final": list(map(float, p))}


def run_cliff(T=50, steps=150, lr=0.05, clip=1.0, start=(2.0, -1.0), grid=121, seed=0, progress=True):
    """The error surface of x_t = w tanh(x_{t-1}) + b over (w, b), and SGD paths with and without clipping."""
    ws, bs = np.linspace(-3.0, 4.0, grid), np.linspace(-3.0, 3.0, grid)
    W, B = np.meshgrid(ws, bs)
    with no_grad():
        surface = np.asarray(cliff_loss(Tensor(W), Tensor(B), T).data)
    plain = _sgd_path(start[0], start[1], lr, steps, None, T)
    clipped = _sgd_path(start[0], start[1], lr, steps, clip, T)
    gb = np.abs(np.diff(surface, axis=0)) / (bs[1] - bs[0])
    return {"name": "cliff", "config": dict(T=T, steps=steps, lr=lr, clip=clip, start=list(start), x0=0.5,
                                            target=0.7, model="x_t = w tanh(x_{t-1}) + b", seed=seed),
            "surface": {"w": ws.tolist(), "b": bs.tolist(), "loss": surface.tolist(),
                        "max_abs_dL_db_on_grid": float(gb.max())},
            "sgd": plain, "sgd_clipped": clipped}


# --------------------------------------------------------------------------- agreement


def run_agreement(steps=1500, hidden=32, batch=64, pool=8000, per_cell=20, seed=0, progress=True, weights=(1.0,),
                  seeds=3, models=None):
    """Agreement trained with attractors rare or absent (``weights``), tested on every count; ``seeds`` runs.

    The error by attractor count is given per seed and averaged over the seeds.
    """
    from . import agreement as ag

    runs = [ag.run(models or ag.model_kinds(), steps=steps, batch=batch, hidden_size=hidden, pool_size=pool,
                   per_cell=per_cell, seed=seed + k, progress=progress, log=None, attractor_weights=list(weights),
                   max_attractors=4) for k in range(seeds)]
    rows = {}
    for k in runs[0]["models"]:
        per_seed = [{a: 1.0 - v[0] for a, v in r["models"][k]["eval"]["by_attractors"].items()} for r in runs]
        rows[k] = {"error_by_attractors": {a: float(np.mean([e[a] for e in per_seed])) for a in per_seed[0]},
                   "error_by_attractors_per_seed": per_seed,
                   "count_by_attractors": {a: v[1] for a, v in runs[0]["models"][k]["eval"]["by_attractors"].items()},
                   "train_seconds": float(sum(r["models"][k]["train_seconds"] for r in runs))}
    config = dict(runs[0]["config"], seeds=[seed + k for k in range(seeds)])
    config.pop("seed")
    return {"name": "agreement", "config": config, "models": rows}


# --------------------------------------------------------------------------- what each paper reports, and this run


def _cfg(c):
    return ", ".join("%s=%s" % (k, v) for k, v in c.items())


def report_adding(r):
    rows = ["%-5s test MSE %.4f (baseline %.4f)  |error| < 0.04 on %5.1f%% of 2000 test sequences  (%.0f s)"
            % (k, m["test_mse"], r["baseline_mse"], 100 * m["solved_fraction"], m["train_seconds"])
            for k, m in r["models"].items()]
    best = max(r["models"].items(), key=lambda kv: kv[1]["solved_fraction"])
    return ["the paper reports (Hochreiter & Schmidhuber 1997, adding problem): a sequence counts as processed "
            "correctly when the absolute error at its end is below 0.04 (their target is the sum scaled into [0, 1]; "
            "here the target is the sum itself, in [0, 2], so the same 0.04 is twice as strict)."
            " The baseline that ignores the input and predicts 1 has MSE Var(u1 + u2) = 1/6 = %.4f on this data."
            % r["baseline_mse"],
            "this run gives:"] + rows + [
            "best: %s, %.1f%% of sequences within 0.04" % (best[0], 100 * best[1]["solved_fraction"])]


def report_irnn(r):
    rows = ["%-5s test MSE %.4f (baseline %.4f: %s)  (%.0f s)"
            % (k, m["test_mse"], r["baseline_mse"], "below" if m["test_mse"] < 0.5 * r["baseline_mse"] else
               "NOT clearly below", m["train_seconds"]) for k, m in r["models"].items()]
    return ["the paper reports (Le, Jaitly & Hinton 2015): a ReLU RNN whose recurrent weights start as the identity "
            "(biases zero) is comparable to a standard LSTM on their benchmarks, the adding problem among them. "
            "This run is a few thousand Adam steps with the same optimiser for all three: it tests the ordering "
            "at a size that fits, not the paper's numbers.",
            "this run gives:"] + rows


def report_copy(r):
    rows = ["%-5s test cross-entropy %.4f  (baseline %.4f: %s)  recall accuracy %s  (%.0f s)"
            % (k, m["test_ce"], r["baseline_ce"], "beats it" if m["test_ce"] < 0.9 * r["baseline_ce"] else
               "does NOT beat it", "%.3f" % m["recall_accuracy"] if m["recall_accuracy"] is not None else "-",
               m["train_seconds"]) for k, m in r["models"].items()]
    T = r["config"]["T"]
    return ["the baseline (Arjovsky, Shah & Bengio 2016's copying task): output blanks, then guess the 8 symbols "
            "uniformly: 10 log(8) / (T + 20) = %.4f nats per step at T = %d (derived here for this data layout, "
            "not quoted from the paper; its delays are longer than fit in minutes here)." % (r["baseline_ce"], T),
            "this run gives:"] + rows


def report_cliff(r):
    a, b = r["sgd"], r["sgd_clipped"]
    c = r["config"]
    return ["the paper reports (Pascanu, Mikolov & Bengio 2013): exploding gradients appear as steep walls in the "
            "error surface; rescaling the gradient when its norm exceeds a threshold (gradient-norm clipping) keeps "
            "a step that meets a wall from throwing the parameters far away. The one-unit model, x0 and target "
            "below are this run's own choices, not the paper's figure's.",
            "this run gives: %s, from (w, b) = (%g, %g), SGD lr %g, %d steps" % (c["model"], c["start"][0],
                                                                              c["start"][1], c["lr"], c["steps"]),
            "  steepest |dL/db| on the grid: %.3g" % r["surface"]["max_abs_dL_db_on_grid"],
            "  plain SGD:   largest gradient norm %.3g, largest step %.3g, final (w, b) = (%.2f, %.2f), final loss %.3g"
            % (a["max_grad_norm"], a["max_step"], a["final"][0], a["final"][1], a["final_loss"]),
            "  clipped (%g): largest gradient norm %.3g, largest step %.3g, final (w, b) = (%.2f, %.2f), final loss %.3g"
            % (c["clip"], b["max_grad_norm"], b["max_step"], b["final"][0], b["final"][1], b["final_loss"])]


def report_agreement(r):
    keys = sorted({a for m in r["models"].values() for a in m["error_by_attractors"]}, key=int)
    rows = []
    for k, m in r["models"].items():
        rows.append("%-9s mean error by attractors %s  (%.0f s)" % (
            k, "  ".join("%s: %.3f" % (a, m["error_by_attractors"][a]) for a in keys), m["train_seconds"]))
        for sd, e in zip(r["config"]["seeds"], m["error_by_attractors_per_seed"]):
            rows.append("%-9s   seed %d: %s" % ("", sd, "  ".join("%s: %.3f" % (a, e[a]) for a in keys)))
    trend = []
    for k, m in r["models"].items():
        e = [m["error_by_attractors"][a] for a in keys]
        trend.append("%s %s" % (k, "rises with attractors" if e[-1] > e[0] + 0.02 else "does NOT rise"))
    return ["the paper reports (Linzen, Dupoux & Goldberg 2016): with explicit number supervision an LSTM makes "
            "under 1%% errors overall, but errors increase when sequential and structural cues conflict -- more "
            "attractors, more errors. Their data is a large corpus of natural sentences; this run uses the "
            "template grammar, trains with attractor counts weighted %s (0, 1, 2, ... attractors; (1.0,): none "
            "at all, so 'the most recent noun' and 'the subject' never disagree in training) and tests every "
            "count equally, over %d seeds." % (list(r["config"]["attractor_weights"]), len(r["config"]["seeds"])),
            "this run gives (test sentences per count: %s):" % ", ".join(
                str(next(iter(r["models"].values()))["count_by_attractors"][a]) for a in keys)] + rows + [
            "trend: " + "; ".join(trend)]


# --------------------------------------------------------------------------- figures


def _curves_figure(r, ylabel, baseline, baseline_name):
    from ..inspect.plot import figure

    fig, ax = figure(7, 4.2, dpi=150)
    for k, m in r["models"].items():
        steps, vals = zip(*m["curve"])
        ax.plot(steps, vals, label=k, linewidth=2)
    ax.axhline(baseline, color="grey", linestyle="--", label=baseline_name)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title("%s (%s)" % (r["name"], _cfg(r["config"])), fontsize=8)
    ax.legend(frameon=False)
    return fig


def plot_cliff(r):
    from ..inspect.plot import figure

    s = r["surface"]
    fig, ax = figure(6.5, 5, dpi=150)
    z = np.log10(np.asarray(s["loss"]) + 1e-12)
    cs = ax.contourf(s["w"], s["b"], z, levels=30, cmap="viridis")
    fig.colorbar(cs, ax=ax).set_label(r"$\log_{10}$ loss")
    for key, color, name in (("sgd", "#d62728", "SGD"), ("sgd_clipped", "white", "SGD, clipped")):
        p = np.asarray(r[key]["path"])
        ax.plot(p[:, 0], p[:, 1], "-o", color=color, markersize=2.5, linewidth=1.2, label=name)
    ax.set_xlim(s["w"][0], s["w"][-1])
    ax.set_ylim(s["b"][0], s["b"][-1])
    ax.set_xlabel("w")
    ax.set_ylabel("b")
    ax.set_title("x_t = w tanh(x_{t-1}) + b, T=%d: (x_T - 0.7)^2" % r["config"]["T"], fontsize=9)
    ax.legend(frameon=False, loc="lower left")
    return fig


def plot_agreement(r):
    from ..inspect.plot import figure

    fig, ax = figure(6, 4, dpi=150)
    for k, m in r["models"].items():
        keys = sorted(m["error_by_attractors"], key=int)
        ax.plot([int(a) for a in keys], [m["error_by_attractors"][a] for a in keys], "-o", label=k)
    ax.set_xlabel("number of attractors")
    ax.set_ylabel("error rate")
    ax.set_title("agreement: error against attractors", fontsize=9)
    ax.legend(frameon=False)
    return fig


def plot(r, path):
    """The figure of a result, saved to ``path``."""
    name = r["name"]
    if name == "cliff":
        fig = plot_cliff(r)
    elif name == "agreement":
        fig = plot_agreement(r)
    elif name == "copy":
        fig = _curves_figure(r, "test cross-entropy", r["baseline_ce"], "memoryless baseline")
    else:
        fig = _curves_figure(r, "test MSE", r["baseline_mse"], "predict 1 (1/6)")
    fig.savefig(path)
    return path


# --------------------------------------------------------------------------- command line

EXPERIMENTS = {
    "adding": (run_adding, report_adding, "Hochreiter & Schmidhuber 1997's |error| < 0.04 criterion and the "
               "predict-1 baseline: RNN vs LSTM vs GRU on the adding problem"),
    "irnn": (run_irnn, report_irnn, "Le, Jaitly & Hinton 2015: identity-initialised ReLU RNN vs tanh RNN vs LSTM "
             "on the adding problem"),
    "copy": (run_copy, report_copy, "copying task against the memoryless baseline 10 log(8)/(T+20) "
             "(Arjovsky, Shah & Bengio 2016's task)"),
    "cliff": (run_cliff, report_cliff, "Pascanu, Mikolov & Bengio 2013: a one-unit RNN's error surface with a wall, "
              "SGD with and without gradient-norm clipping (figure)"),
    "agreement": (run_agreement, report_agreement, "error against number of attractors "
                  "(Linzen, Dupoux & Goldberg 2016's trend)"),
}
SIZE_FLAGS = {"adding": ("T", "H", "batch", "lr", "clip", "steps"), "irnn": ("T", "H", "batch", "lr", "clip", "steps"),
              "copy": ("T", "H", "batch", "lr", "clip", "steps"), "cliff": ("T", "steps", "lr", "clip", "grid"),
              "agreement": ("steps", "hidden", "batch", "pool", "per_cell", "seeds")}


def run(name, **options):
    """Run experiment ``name`` with keyword options (those of its ``run_*`` function): its result dict."""
    if name not in EXPERIMENTS:
        raise ValueError("reproduce: unknown experiment %r; choose one of %s" % (name, ", ".join(EXPERIMENTS)))
    t0 = time.time()
    r = EXPERIMENTS[name][0](**options)
    r["seconds"] = time.time() - t0
    return r


def report(r):
    """The text printed for a result: configuration and seed, the paper's claim and this run's numbers."""
    lines = ["reproduce %s: %s" % (r["name"], EXPERIMENTS[r["name"]][2]),
             "configuration: %s" % _cfg(r["config"])]
    lines += EXPERIMENTS[r["name"]][1](r)
    lines.append("(%.0f s)" % r["seconds"])
    return "\n".join(lines)


def build_parser(parser=None):
    """The options of ``tinybptt reproduce``."""
    p = parser or argparse.ArgumentParser(prog="tinybptt reproduce")
    p.description = "Re-run a classic result about learning across time at a size that fits on a laptop."
    p.add_argument("name", nargs="?", help="experiment: %s" % ", ".join(EXPERIMENTS))
    p.add_argument("--list", action="store_true", help="list the experiments")
    for flag, kind in (("T", int), ("H", int), ("hidden", int), ("batch", int), ("lr", float), ("clip", float),
                       ("steps", int), ("grid", int), ("pool", int), ("per-cell", int), ("seeds", int)):
        p.add_argument("--" + flag, type=kind, default=None, help="size/training option (default: the experiment's)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--json", metavar="FILE", help="write the result with its configuration")
    p.add_argument("--plot", metavar="PNG", help="draw the experiment's figure")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    """``tinybptt reproduce``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.list or not args.name:
        for k, (_, _, title) in EXPERIMENTS.items():
            print("%-10s %s" % (k, title))
        return 0 if args.list else 2
    if args.name not in EXPERIMENTS:
        print("tinybptt reproduce: unknown experiment %r; choose one of %s" % (args.name, ", ".join(EXPERIMENTS)),
              file=sys.stderr)
        return 2
    opts = {k: getattr(args, k) for k in SIZE_FLAGS[args.name] if getattr(args, k) is not None}
    given = [f for f in ("T", "H", "hidden", "batch", "lr", "clip", "steps", "grid", "pool", "per_cell", "seeds")
             if getattr(args, f) is not None and f not in SIZE_FLAGS[args.name]]
    if given:
        print("tinybptt reproduce %s: option(s) %s do not apply (it takes %s)"
              % (args.name, ", ".join("--" + g.replace("_", "-") for g in given),
                 ", ".join("--" + g.replace("_", "-") for g in SIZE_FLAGS[args.name])), file=sys.stderr)
        return 2
    r = run(args.name, seed=args.seed, progress=not args.quiet, **opts)
    print(report(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1, default=_json_default)
        print("wrote %s" % args.json)
    if args.plot:
        plot(r, args.plot)
        print("wrote %s" % args.plot)
    return 0


def _json_default(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    raise TypeError("not JSON serialisable: %r" % type(v))


if __name__ == "__main__":
    sys.exit(main())

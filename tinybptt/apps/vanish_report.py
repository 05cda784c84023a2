"""The text report and the plot of a ``tinybptt vanish`` result (``vanish.run``).

``render`` turns the JSON-ready result into the terminal report: a table of the
norms at a few time steps, a heat strip and a sparkline per cell on one log10
scale, and notes (underflow, growth, the classical bound, clipping, training).
``plot`` draws the same numbers with matplotlib.  Nothing here measures: every
number comes from the result dict.
"""
import math

from .. import display as terminal
from ..inspect import numerics

#: the two views: ||dL/dh_t|| along the hidden chain, or ||dL/dx_t|| at the inputs
WRT = ("hidden", "input")
#: the quantity of each view, as the table and the JSON name it
QUANTITY = {"hidden": "||dL/dh_t||", "input": "||dL/dx_t||"}


def shown_steps(T, initial=True):
    """The time steps shown in the table: T-1, T-2, 3T/4, T/2, T/4, 0 and (``initial``) -1."""
    out = []
    for t in (T - 1, T - 2, (3 * T) // 4, T // 2, T // 4, 0) + ((-1,) if initial else ()):
        if -1 <= t <= T - 1 and t not in out:
            out.append(t)
    return out


# --------------------------------------------------------------------------- text


def _series(p):
    """log10 norms to draw: the float values, continued by log space where they underflowed."""
    f, ls = p["log10_grad_norm"], p["log10_grad_norm_logspace"]
    return [a if a is not None else b for a, b in zip(f, ls)]


def _cell_value(p, t):
    st = p["shown"].get(str(t))
    if st is None:
        return "-"  # the input view has no t = -1
    if st["log10"] is None:
        return "0 (~%s)" % numerics.fmt_pow10(st["log10_logspace"]) if st["log10_logspace"] is not None else "0"
    return numerics.fmt_pow10(st["log10"])


def render(result, unicode=None, color=None, width=64):
    """The terminal report of a ``run`` result: one table row per cell, a heatmap and notes."""
    cfg = result["config"]
    lines = [_headline(cfg, result)]
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


def _headline(cfg, result):
    views = {e["wrt"] for e in result["cells"].values()}
    what = " and ".join(QUANTITY[v] for v in WRT if v in views)
    head = "%s for a loss on the last step only (L = u.y_{T-1}, |u| = 1, y = h for recurrent cells): T=%d, H=%d, " \
           "I=%d, B=%d, %s, seed %d, init %s" % (what, cfg["T"], cfg["H"], cfg["I"], cfg["B"], cfg["dtype"],
                                                cfg["seed"], cfg["init"])
    if cfg["init"] == "scaled":
        head += " (spectral radius %g)" % cfg["radius"]
    if cfg["forget_bias"] is not None:
        head += ", LSTM forget bias %g" % cfg["forget_bias"]
    return head + "\ntime steps t = 0..%d (out[t] is h_t); t = -1 is the initial state" % (cfg["T"] - 1)


def _table(result, phase):
    """One row per cell: its quantity, the norm at the shown steps, first/last ratio and the factor per step."""
    T = result["config"]["T"]
    hidden = any(e["wrt"] == "hidden" for e in result["cells"].values())
    steps = shown_steps(T, initial=hidden)
    headers = ["cell", "quantity"] + ["t=%d" % t for t in steps] + ["first/last", "factor/step"]
    rows = []
    for e in result["cells"].values():
        p = e[phase]
        s = p["summary"]
        rows.append([e["name"], e["quantity"]] + [_cell_value(p, t) for t in steps] +
                    [numerics.fmt_pow10(s["log10_ratio"]), "%.4f" % s["decay_per_step"]])
    table = terminal.format_table(headers, rows, align="ll" + "r" * (len(headers) - 2))
    views = {e["wrt"] for e in result["cells"].values()}
    ratios = (["||dL/dh_-1|| / ||dL/dh_%d|| (over %d steps)" % (T - 1, T)] if "hidden" in views else []) + \
        (["||dL/dx_0|| / ||dL/dx_%d|| (over %d steps)" % (T - 1, T - 1)] if "input" in views else [])
    return table + "\nfirst/last: %s; factor/step: its geometric mean per step" % " or ".join(ratios)


def _strips(result, phase, unicode, color, width):
    """The graphic: one heat strip and one sparkline per cell on a shared log10 scale, t = -1 at the left."""
    T = result["config"]["T"]
    series = {e["name"]: _series(e[phase]) for e in result["cells"].values()}
    fin = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    lo, hi = (min(fin), max(fin)) if fin else (0.0, 0.0)
    fancy = terminal.supports_unicode() and unicode is not False
    lines = ["log10 of each row's quantity, t = -1 (left) .. %d (right); scale %s (%s) .. %s (%s)" % (
        T - 1, numerics.fmt_pow10(lo), "░" if fancy else ".", numerics.fmt_pow10(hi), "█" if fancy else "#")]
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
        first = 1 if p["wrt"] == "input" else 0
        z = [k - 1 for k, v in enumerate(p["log10_grad_norm"]) if v is None and k >= first]
        sub = sum(p["subnormal_values"])
        what = (["is exactly 0 at %d steps (t <= %d)" % (len(z), max(z))] if z else []) + \
            (["holds %d subnormal values" % sub] if sub else [])
        notes.append("%s: the %s gradient %s; ratio and per-step factor come from the float64 log-space "
                     "recomputation." % (name, cfg["dtype"], " and ".join(what)))
    if s["log10_ratio"] > 0:
        notes.append("%s: the gradient GROWS on its way back (x%.4f per step, %s from the last step to the first): "
                     "exploding gradients%s." % (name, s["decay_per_step"], numerics.fmt_pow10(s["log10_ratio"]),
                                                 "" if cfg["clip"] else "; add --clip to see clipping"))
    if e["kind"] == "attention":
        notes.append("%s: no hidden chain: the last output reaches every input through one softmax, so "
                     "||dL/dx_t|| does not fall with the distance T-1-t." % name)
    if jr is not None and jr["log10_bound"] is not None:
        actual = jr["log10_dhT_dht"][0]
        notes.append("%s: classical bound ||dh_{T-1}/dh_t|| <= (||W_hh||_2 * max|act'|)^(T-1-t) with ||W_hh||_2 = "
                     "%.3f: bound at t=-1 %s, actual ||dh_%d/dh_-1|| %s." % (
                         name, jr["w_hh_spectral_norm"], numerics.fmt_pow10(jr["log10_bound"][0]), cfg["T"] - 1,
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
            "%.1e in log10 (recurrent cells)." % max(diffs)]


# --------------------------------------------------------------------------- plot


def plot(result, path, title=None):
    """Write the slide: log10 of each row's quantity against t, one line per cell (matplotlib).

    With every row in the hidden view this is ``inspect.plot.plot_vanish`` (log-space
    continuations, the classical bound); with rows of the input view (attention, or
    ``wrt="input"``) each line is labelled with its quantity."""
    if all(e["wrt"] == "hidden" for e in result["cells"].values()):
        from ..inspect.plot import plot_vanish

        return plot_vanish(result, path, title=title)
    return _plot_views(result, path, title)


def _plot_views(result, path, title=None):
    from ..inspect.plot import COLORS, figure

    cfg = result["config"]
    fig, ax = figure(dpi=160)
    phases = ["before", "after"] if cfg["trained"] else ["measured"]
    for kind, e in result["cells"].items():
        for phase in phases:
            ys = _series(e[phase])
            ts = [t for t, v in zip(range(-1, cfg["T"]), ys) if v is not None]
            faded = cfg["trained"] and phase == "before"
            ax.plot(ts, [v for v in ys if v is not None], color=COLORS.get(kind, "#9467bd"),
                    linewidth=1.2 if faded else 2.4, alpha=0.45 if faded else 1.0,
                    label="%s: %s%s, x%.3f per step" % (e["name"], e["quantity"], " (%s training)" % phase
                                                       if cfg["trained"] else "", e[phase]["summary"]["decay_per_step"]))
    ax.set_xlim(-1, cfg["T"] - 1)
    ax.set_xlabel("time step t   (t = -1: the initial state; the loss is on the last step, t = %d)" % (cfg["T"] - 1))
    ax.set_ylabel(r"$\log_{10}$ of the row's gradient norm")
    ax.set_title(title or "How far back the loss on the last step reaches (H=%d, %s)" % (cfg["H"], cfg["dtype"]),
                 fontsize=10)
    ax.legend(frameon=False, fontsize=8.5, loc="lower right")
    fig.savefig(path, bbox_inches="tight")
    return path

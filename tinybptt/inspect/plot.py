"""matplotlib figures (optional dependency: ``pip install tinybptt[plot]``).

``plot_vanish(result, "vanish.png")`` draws the picture of ``tinybptt vanish``:
log10 ||dL/dh_t|| against t for each cell.  ``plot_norms({...}, path)`` does the same
for any dict of per-step log10 norms.
"""
import math

import numpy as np

COLORS = {"rnn": "#d62728", "lstm": "#1f77b4", "gru": "#2ca02c"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_norms(series, path, title=None, xlabel="time step t", ylabel=r"$\log_{10}\ \|\partial L/\partial h_t\|$",
               styles=None, dpi=160, annotate=True):
    """One line per entry of ``series`` (name -> list of log10 values indexed by t; None/-inf skipped)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=dpi)
    for name, vals in series.items():
        st = dict((styles or {}).get(name, {}))
        xs = [t for t, v in enumerate(vals) if v is not None and math.isfinite(v)]
        ys = [vals[t] for t in xs]
        if not xs:
            continue
        ln, = ax.plot(xs, ys, label=name, linewidth=st.pop("linewidth", 2.2), **st)
        if annotate:
            ax.annotate(name, (xs[0], ys[0]), xytext=(6, 0), textcoords="offset points", va="center",
                        color=ln.get_color(), fontsize=10, fontweight="bold")
    ax.set_xlabel(xlabel, fontsize=12)
    ax.set_ylabel(ylabel, fontsize=12)
    if title:
        ax.set_title(title, fontsize=12)
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False, fontsize=10, loc="lower right")
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _pow10(v):
    from .numerics import fmt_pow10

    return "0" if v is None else fmt_pow10(v, 1)


def plot_vanish(result, path, title=None):
    """The ``tinybptt vanish`` figure: log10 ||dL/dh_t|| against t, one line per cell.

    Solid lines are the gradients the engine computed; where they underflowed to zero
    the float64 log-space recomputation continues them as a dashed line.  With
    ``--trained`` the "before" curves are thin and faded, the "after" curves solid.
    For the vanilla RNN the classical bound is drawn dotted when it is within the axes.
    """
    plt = _pyplot()
    cfg = result["config"]
    T = cfg["T"]
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=160)
    phases = ["before", "after"] if cfg["trained"] else ["measured"]
    lows, highs, dashed = [], [], False
    for kind, e in result["cells"].items():
        for phase in phases:
            dashed |= _vanish_curve(ax, e, phase, COLORS.get(kind), cfg["trained"], T, lows, highs)
    if lows and highs:
        lo, hi = min(lows), max(highs)
        for kind, e in result["cells"].items():
            _vanish_bound(ax, e, e[phases[-1]]["jacobian"], COLORS.get(kind), T, lo, hi)
        _vanish_floor(ax, cfg["dtype"], T, lo, hi, dashed)
    ax.set_xlim(0, T)
    ax.set_xlabel("time step t   (loss on the last step, t = %d)" % T, fontsize=11.5)
    ax.set_ylabel(r"$\log_{10}\ \|\partial L/\partial h_t\|$", fontsize=12)
    ax.set_title(title if title is not None else _vanish_title(cfg), fontsize=12)
    ax.grid(True, alpha=0.3)
    n_entries = len(ax.get_legend_handles_labels()[0])
    if n_entries > 4:  # many curves (--trained): legend under the axes, out of the way
        fig.set_size_inches(9.5, 5.2 + 0.2 * ((n_entries + 1) // 2))
        ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    else:
        ax.legend(frameon=False, fontsize=9.5, loc="lower right")
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _vanish_curve(ax, e, phase, color, trained, T, lows, highs):
    """One cell's measured curve (solid) and its log-space continuation (dashed); True if dashed."""
    p = e[phase]
    f, ls = p["log10_grad_norm"], p["log10_grad_norm_logspace"]
    faded = trained and phase == "before"
    xs = [t for t, v in enumerate(f) if v is not None]
    label = e["name"] + (" (%s training)" % phase if trained else "")
    if not faded and p.get("summary"):
        label += ": x%.3f per step, |dL/dh_0| = %s" % (
            p["summary"]["decay_per_step"], _pow10(f[0] if f[0] is not None else ls[0]))
    kw = dict(color=color, linewidth=1.2 if faded else 2.4, alpha=0.45 if faded else 1.0)
    if xs:
        ax.plot(xs, [f[t] for t in xs], label=label, **kw)
        lows.append(min(f[t] for t in xs))
        highs.append(max(f[t] for t in xs))
    gap = [t for t, v in enumerate(f) if v is None and ls[t] is not None]
    if not gap:
        return False
    span = sorted(set(gap) | {max(gap) + 1} if max(gap) + 1 <= T else set(gap))
    ax.plot(span, [ls[t] for t in span], linestyle="--", label=None if xs else label, **kw)
    lows.append(min(ls[t] for t in span))
    return True


def _vanish_bound(ax, e, jr, color, T, lo, hi):
    """The classical bound of a vanilla RNN, dotted, where it is within the axes."""
    b = jr["log10_bound"]
    if b is None:
        return
    xs = [t for t in range(T + 1) if b[t] is not None and lo - 1 <= b[t] <= hi + 1]
    if len(xs) > 1:
        ax.plot(xs, [b[t] for t in xs], linestyle=":", color=color, linewidth=1.3,
                label="%s: classical bound $(\\|W_{hh}\\|_2\\,\\gamma)^{T-t}$, $\\|W_{hh}\\|_2$ = %.2f"
                % (e["name"], jr["w_hh_spectral_norm"]))


def _vanish_floor(ax, dtype, T, lo, hi, dashed):
    """The smallest normal number of the dtype, when the curves come near it."""
    tiny = math.log10(float(np.finfo(np.dtype(dtype)).tiny))
    if lo - 1 <= tiny <= hi + 1:
        ax.axhline(tiny, color="#555555", linewidth=1.0, linestyle="-.")
        ax.annotate("smallest normal %s (below: subnormal, then 0)" % dtype, (T, tiny),
                    xytext=(-4, 4), textcoords="offset points", ha="right", va="bottom", fontsize=8.5,
                    color="#555555")
    if dashed:
        ax.plot([], [], color="#555555", linestyle="--", linewidth=2,
                label="float gradient underflowed: float64 log-space value")


def _vanish_title(cfg):
    return "Gradients flowing back in time: RNN vs LSTM vs GRU (H=%d, %s%s)%s" % (
        cfg["H"], cfg["dtype"], "" if cfg["init"] == "default" else ", init %s%s" % (
            cfg["init"], " r=%g" % cfg["radius"] if cfg["init"] == "scaled" else ""),
        "\nbefore (faded) and after %d steps of training on the adding problem" % cfg["train_steps"]
        if cfg["trained"] else "")

"""matplotlib figures (optional dependency: ``pip install tinybptt[plot]``).

Each figure function returns a ``matplotlib.figure.Figure`` built without pyplot (no
global state, no display needed); a notebook shows it, ``fig.savefig(path)`` writes it.
The inspection objects call them from their ``plot()`` methods: ``GradTrace.plot()``,
``JacobianReport.plot()``, ``JacobianSpectra.plot()``, ``LSTMPaths.plot()``; and their
``_repr_png_`` (what Jupyter shows) goes through ``png_of``.

``plot_vanish(result, "vanish.png")`` draws the picture of ``tinybptt vanish``;
``plot_norms({...}, path)`` any dict of per-step log10 norms.

Time steps are t = 0..T-1 (``out[t]`` is h_t); the initial state is t = -1.
"""
import io
import math

import numpy as np

COLORS = {"rnn": "#d62728", "lstm": "#1f77b4", "gru": "#2ca02c"}
COLORS.update({"rnn_tanh": COLORS["rnn"], "rnn_relu": COLORS["rnn"]})
YLABEL_H = r"$\log_{10}\ \|\partial L/\partial h_t\|$"


def figure(width=8.0, height=4.8, dpi=110, ncols=1):
    """A new ``Figure`` and its axes (one, or a row of ``ncols``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    return fig, fig.subplots(1, ncols)


def png_of(make):
    """PNG bytes of the figure ``make()`` returns; None when matplotlib is not installed."""
    try:
        fig = make()
    except ImportError:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _tidy(ax, xlabel, ylabel, title=None, legend="lower right"):
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    if title:
        ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, fontsize=9, loc=legend)
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)


def _finite(xs, ys):
    """The points of (xs, ys) whose y is a finite number."""
    keep = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    return [x for x, _ in keep], [y for _, y in keep]


def plot_norms(series, path, title=None, xlabel="time step t", ylabel=YLABEL_H, styles=None, dpi=160,
               annotate=True):
    """One line per entry of ``series`` (name -> list of log10 values indexed by t; None/-inf skipped)."""
    fig, ax = figure(dpi=dpi)
    for name, vals in series.items():
        st = dict((styles or {}).get(name, {}))
        xs, ys = _finite(range(len(vals)), vals)
        if not xs:
            continue
        ln, = ax.plot(xs, ys, label=name, linewidth=st.pop("linewidth", 2.2), **st)
        if annotate:
            ax.annotate(name, (xs[0], ys[0]), xytext=(6, 0), textcoords="offset points", va="center",
                        color=ln.get_color(), fontsize=10, fontweight="bold")
    _tidy(ax, xlabel, ylabel, title)
    fig.savefig(path)
    return path


# --------------------------------------------------------------------------- the inspection objects


def trace_figure(trace, title=None):
    """``GradTrace.plot()``: log10 ||dL/dh_t|| (and dashed ||dL/dc_t||) against t, one line per layer."""
    fig, ax = figure()
    with np.errstate(divide="ignore"):
        h, c = np.log10(trace.norms()), None if trace.c is None else np.log10(trace.c_norms())
    steps = np.arange(h.shape[1])
    for l in range(h.shape[0]):
        ln, = ax.plot(*_finite(steps, h[l]), linewidth=2, label="h, layer %d" % l)
        if c is not None:
            ax.plot(*_finite(steps, c[l]), linestyle="--", color=ln.get_color(), label="c, layer %d" % l)
    _tidy(ax, "time step t", r"$\log_{10}$ gradient norm", title or "dL/dh_t (and dL/dc_t) after backward")
    return fig


def jacobian_figure(rep, title=None):
    """``JacobianReport.plot()``: log10 ||dh_{T-1}/dh_t|| against t, the step factors and the bound."""
    fig, ax = figure()
    ax.plot(*_finite(rep.steps, rep.log10_norms), linewidth=2.2, label=r"$\|\partial h_{T-1}/\partial h_t\|$")
    if rep.kind == "lstm":
        ax.plot(*_finite(rep.steps, rep.log10_state_norms), linewidth=1.4, linestyle="--",
                label=r"$\|\partial s_{T-1}/\partial s_t\|$, s = (h, c)")
    ax.plot(*_finite(rep.steps, rep.log10_step_factors), marker=".", linestyle="", color="#777777",
            label=r"one step: $\|\partial h_t/\partial h_{t-1}\|$")
    if rep.log10_bound is not None:
        ax.plot(*_finite(rep.steps, rep.log10_bound), linestyle=":", color="#d62728", label="classical bound")
    _tidy(ax, "time step t   (t = -1: the initial state)", r"$\log_{10}$ norm",
          title or "%s: Jacobian norms, T = %d, H = %d" % (rep.kind, rep.T, rep.H))
    return fig


def spectra_figure(sp, title=None):
    """``JacobianSpectra.plot()``: every singular value of the step Jacobians and of their products.

    Singular values of a product more than 15 decades below its largest are at the
    floating-point floor and are left out."""
    fig, (a1, a2) = figure(width=11, height=4.4, ncols=2)
    product = np.where(sp.product >= sp.product[:, :1] - 15, sp.product, np.nan)  # below: the float floor
    for j in range(sp.H):
        top = j == 0
        kw = dict(color="#1f77b4", linewidth=2.0 if top else 0.8, alpha=1.0 if top else 0.45)
        a1.plot(*_finite(sp.steps, sp.step[:, j]), label="largest" if top else None, **kw)
        a2.plot(*_finite(sp.product_steps, product[:, j]), label="largest" if top else None, **kw)
    if sp.log10_bound_step is not None:
        a1.axhline(sp.log10_bound_step, linestyle=":", color="#d62728", label=r"bound $\|W_{hh}\|_2\,\gamma$")
        a2.plot(*_finite(sp.product_steps, sp.log10_bound_product), linestyle=":", color="#d62728",
                label="classical bound")
    _tidy(a1, "time step t", r"$\log_{10}\ \sigma(\partial h_t/\partial h_{t-1})$", "one step")
    _tidy(a2, "time step t   (t = -1: the initial state)",
          r"$\log_{10}\ \sigma(\partial h_{T-1}/\partial h_t)$", "product back from the last step")
    fig.suptitle(title or "%s: singular values of the Jacobians (T = %d, H = %d)" % (sp.kind, sp.T, sp.H))
    return fig


def paths_figure(paths, title=None):
    """``LSTMPaths.plot()``: |dL/dc_t| and its two parts; the forget-gate product prod f."""
    n = paths.norms()
    fig, (a1, a2) = figure(width=11, height=4.4, ncols=2)
    for key, label, style in (("total", "total dL/dc_t", dict(linewidth=2.4, color="#000000")),
                              ("cell_path", r"cell path $f_{t+1}\,\partial L/\partial c_{t+1}$",
                               dict(linewidth=1.6, color="#1f77b4")),
                              ("through_h", r"through $h_t$ and the gates", dict(linewidth=1.6, color="#ff7f0e"))):
        a1.plot(*_finite(paths.steps, n[key]), label=label, **style)
    a2.plot(paths.steps, n["log10_forget_product_mean"], color="#2ca02c", linewidth=2, label="mean over units")
    a2.fill_between(paths.steps, n["log10_forget_product_min"], n["log10_forget_product_max"], color="#2ca02c",
                    alpha=0.2, label="min .. max")
    _tidy(a1, "time step t", r"$\log_{10}$ norm", "where dL/dc_t comes from")
    _tidy(a2, "time step t", r"$\log_{10} \prod_{k=t+1}^{T-1} f_k$", "forget-gate product: dc_{T-1}/dc_t along "
          "the cell path", legend="lower right")
    fig.suptitle(title or "LSTM gradient paths (T = %d)" % paths.T)
    return fig


def _pow10(v):
    from .numerics import fmt_pow10

    return "0" if v is None else fmt_pow10(v, 1)


def plot_vanish(result, path, title=None):
    """The ``tinybptt vanish`` figure: log10 ||dL/dh_t|| against t, one line per cell.

    ``result`` holds (T+1)-long lists per cell: entry k is time step t = k - 1 (entry 0
    the initial state, t = -1; the loss is on the last state, t = T-1).  Solid lines are
    the gradients the engine computed; where they underflowed to zero the float64
    log-space recomputation continues them as a dashed line.  With ``--trained`` the
    "before" curves are thin and faded, the "after" curves solid.  For the vanilla RNN
    the classical bound is drawn dotted when it is within the axes.
    """
    cfg = result["config"]
    T = cfg["T"]
    fig, ax = figure(dpi=160)
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
    ax.set_xlim(-1, T - 1)
    n_entries = len(ax.get_legend_handles_labels()[0])
    _tidy(ax, "time step t   (t = -1: the initial state; the loss is on the last step, t = %d)" % (T - 1),
          YLABEL_H, title if title is not None else _vanish_title(cfg), legend=None)
    if n_entries > 4:  # many curves (--trained): legend under the axes, out of the way
        fig.set_size_inches(9.5, 5.2 + 0.2 * ((n_entries + 1) // 2))
        fig.legend(frameon=False, fontsize=8, loc="outside lower center", ncol=2)
    else:
        ax.legend(frameon=False, fontsize=9.5, loc="lower right")
    fig.savefig(path, bbox_inches="tight")
    return path


def _vanish_curve(ax, e, phase, color, trained, T, lows, highs):
    """One cell's measured curve (solid) and its log-space continuation (dashed); True if dashed.

    Entry k of the lists is time step t = k - 1."""
    p = e[phase]
    f, ls = p["log10_grad_norm"], p["log10_grad_norm_logspace"]
    faded = trained and phase == "before"
    ks = [k for k, v in enumerate(f) if v is not None]
    label = e["name"] + (" (%s training)" % phase if trained else "")
    if not faded and p.get("summary"):
        label += ": x%.3f per step, |dL/dh_{-1}| = %s" % (
            p["summary"]["decay_per_step"], _pow10(f[0] if f[0] is not None else ls[0]))
    kw = dict(color=color, linewidth=1.2 if faded else 2.4, alpha=0.45 if faded else 1.0)
    if ks:
        ax.plot([k - 1 for k in ks], [f[k] for k in ks], label=label, **kw)
        lows.append(min(f[k] for k in ks))
        highs.append(max(f[k] for k in ks))
    gap = [k for k, v in enumerate(f) if v is None and ls[k] is not None]
    if not gap:
        return False
    span = sorted(set(gap) | {max(gap) + 1} if max(gap) + 1 <= T else set(gap))
    ax.plot([k - 1 for k in span], [ls[k] for k in span], linestyle="--", label=None if ks else label, **kw)
    lows.append(min(ls[k] for k in span))
    return True


def _vanish_bound(ax, e, jr, color, T, lo, hi):
    """The classical bound of a vanilla RNN, dotted, where it is within the axes."""
    b = jr["log10_bound"]
    if b is None:
        return
    ks = [k for k in range(T + 1) if b[k] is not None and lo - 1 <= b[k] <= hi + 1]
    if len(ks) > 1:
        ax.plot([k - 1 for k in ks], [b[k] for k in ks], linestyle=":", color=color, linewidth=1.3,
                label="%s: classical bound $(\\|W_{hh}\\|_2\\,\\gamma)^{T-1-t}$, $\\|W_{hh}\\|_2$ = %.2f"
                % (e["name"], jr["w_hh_spectral_norm"]))


def _vanish_floor(ax, dtype, T, lo, hi, dashed):
    """The smallest normal number of the dtype, when the curves come near it."""
    tiny = math.log10(float(np.finfo(np.dtype(dtype)).tiny))
    if lo - 1 <= tiny <= hi + 1:
        ax.axhline(tiny, color="#555555", linewidth=1.0, linestyle="-.")
        ax.annotate("smallest normal %s (below: subnormal, then 0)" % dtype, (T - 1, tiny),
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

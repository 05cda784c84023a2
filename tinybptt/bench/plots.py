"""Plots of a run (matplotlib, imported only when a plot is asked for): ratios to the faster peer
per cell and config, and the scaling curves."""
import os

import numpy as np

from .problems import SHORT
from .scaling import ok_value


def plot_results(summary, path, scaling=None):
    """Ratio-to-best-peer bars per cell and config, with the target lines (``path``); scaling
    curves in ``<path>-scaling.png`` (or in ``path`` itself when there is no grid).  Returns the paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not summary:
        return [plot_scaling(scaling, path, plt)] if scaling else []
    groups = []
    for r in summary:
        g = (r["threads"], r["dtype"], r["cell"])
        if g not in groups:
            groups.append(g)
    n = max(1, len(groups))
    fig, axes = plt.subplots(n, 1, figsize=(9, 3.2 * n), squeeze=False)
    series = (("seq_ratio", "sequence / best peer"), ("cell_ratio", "cell / best peer"),
              ("ops_ratio", "ops / torch-ops"), ("npb_ratio", "NumPy backend / best peer"))
    for ax, g in zip(axes[:, 0], groups):
        rows = [r for r in summary if (r["threads"], r["dtype"], r["cell"]) == g]
        xs = np.arange(len(rows))
        width = 0.8 / len(series)
        for k, (key, label) in enumerate(series):
            vals = np.array([r[key] if r[key] is not None else np.nan for r in rows], dtype=float)
            px = xs + (k - (len(series) - 1) / 2) * width
            ax.plot(px, vals, "o", ms=7, label=label)
            for x_, v in zip(px, vals):
                if np.isfinite(v):
                    ax.annotate("%.2f" % v, (x_, v), textcoords="offset points", xytext=(0, 6), ha="center",
                                fontsize=6)
        for x_, r in zip(xs, rows):  # the sequence-mode target of each config
            ax.hlines(r["seq_target"], x_ - 0.45, x_ + 0.45, colors="green", linestyles="--", lw=1)
        ax.axhline(1.0, color="black", ls=":", lw=1)
        ax.set_xticks(xs)
        ax.set_xticklabels([r["config"] for r in rows])
        ax.set_yscale("log")
        ax.set_ylabel("time ratio (log)")
        ax.margins(y=0.25)
        ax.set_title("%s %s, %d thread(s): tinybptt time / peer time, lower is better; "
                     "green dashes: sequence target" % (g[2].upper(), g[1], g[0]), fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths = [path]
    if scaling:
        root, ext = os.path.splitext(path)
        paths.append(plot_scaling(scaling, root + "-scaling" + (ext or ".png"), plt))
    return paths


def plot_scaling(scaling, spath, plt):
    """Time and saved memory against T, H and B (log-log), one column per axis."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for j, axis in enumerate(("T", "H", "B")):
        for cell in dict.fromkeys(r["cell"] for r in scaling):
            rs = [r for r in scaling if r["cell"] == cell and r["axis"] == axis]
            vals = [r["value"] for r in rs]
            for c, style in (("tinybptt:sequence", "-o"), ("torch", "--s"), ("numpy", ":^")):
                ts = [ok_value(r.get(c), "total_ms") for r in rs]
                if any(t is not None for t in ts):
                    axes[0, j].plot(vals, [np.nan if t is None else t for t in ts], style,
                                    label="%s %s" % (cell, SHORT[c]))
            mem = [ok_value(r.get("tinybptt:sequence"), "saved_bytes") for r in rs]
            if any(m is not None for m in mem):
                axes[1, j].plot(vals, [np.nan if m is None else m / 2**20 for m in mem], "-o", label="%s seq" % cell)
        for i in range(2):
            axes[i, j].set_xscale("log")
            axes[i, j].set_yscale("log")
            axes[i, j].set_xlabel(axis)
        axes[0, j].set_ylabel("ms per fwd+bwd")
        axes[1, j].set_ylabel("MB saved by forward")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(spath, dpi=110)
    plt.close(fig)
    return spath

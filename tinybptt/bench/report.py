"""From measurements to what a reader sees: ratios, targets, tables and the whole report.

Ratios (tinybptt's time / the faster peer's time, lower is better) are what
matters on a shared, noisy machine.  The peers a target is measured against are
the independent libraries (torch, JAX, the PyTorch op loop); the NumPy baseline,
which calls tinybptt's own reference kernels, never is.
"""
import os

from ..display import format_table
from .machine import machine_text
from .problems import SHORT, is_external_peer, workload_flops

#: Target: mode="sequence" at most this fraction of the faster peer's time (per config; default 0.8).
SEQ_TARGET = {"large": 1.1}
SEQ_TARGET_DEFAULT = 0.8
#: Target: mode="ops" at most the time of the PyTorch eager op loop.
OPS_TARGET = 1.0
#: Single-thread GEMM rate used for the FLOP floor when no --gemm run measured one, GFLOP/s
#: (torch.matmul, MKL, one core of the development machine's Xeon).
FLOOR_GFLOPS = {"float32": 135.0, "float64": 66.0}
#: A ratio is marked noisy (``~``) when either side's timed runs have an interquartile range
#: above this fraction of their median.
NOISY_SPREAD = 0.5


def seq_target(config):
    return SEQ_TARGET.get(config, SEQ_TARGET_DEFAULT)


def fmt_ms(v):
    if v is None:
        return "-"
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    if v >= 1:
        return "%.2f" % v
    return "%.3f" % v


def fmt_ratio(v):
    return "-" if v is None else "%.2fx" % v


def passfail(v):
    return "-" if v is None else ("PASS" if v else "FAIL")


def render_table(headers, rows, md=False, title=None):
    """A plain-text (aligned: first column left, the rest right) or Markdown table."""
    rows = [[str(c) for c in r] for r in rows]
    if not md:
        text = format_table(headers, rows, align="l" + "r" * (len(headers) - 1))
        return "%s\n%s" % (title, text) if title else text
    lines = ["**%s**" % title, ""] if title else []
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join("---" if k == 0 else "---:" for k in range(len(headers))) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- one summary row per grid row


def _floor(row, floor_gflops):
    gf = floor_gflops.get((row["dtype"], row["threads"]))
    if gf is None and row["dtype"] in FLOOR_GFLOPS:
        gf = FLOOR_GFLOPS[row["dtype"]] * row["threads"]
    row["floor_gflops"] = gf
    row["floor_ms"] = 1e3 * workload_flops(row["cell"], *row["shape"]) / (gf * 1e9) if gf else None


def _ratios(row, ok):
    peers = {c: r["total_ms"] for c, r in ok.items() if is_external_peer(c)}
    best = min(peers, key=peers.get) if peers else None
    row["best_peer"], row["best_ms"] = best, peers.get(best)

    def ratio(c, den):
        return ok[c]["total_ms"] / den if c in ok and den else None

    def noisy(c, den_c):
        return any(v is not None and v > NOISY_SPREAD for v in ((ok.get(x) or {}).get("spread") for x in (c, den_c)))

    row["seq_ratio"] = ratio("tinybptt:sequence", row["best_ms"])
    mins = [r["total_min_ms"] for c, r in ok.items() if is_external_peer(c) and r.get("total_min_ms")]
    seq_min = (ok.get("tinybptt:sequence") or {}).get("total_min_ms")
    row["seq_ratio_min"] = seq_min / min(mins) if seq_min and mins else None
    row["cell_ratio"] = ratio("tinybptt:cell", row["best_ms"])
    row["npb_ratio"] = ratio("tinybptt:numpy", row["best_ms"])
    tops = ok.get("torch-ops")
    row["ops_ratio"] = ratio("tinybptt:ops", tops["total_ms"] if tops else None)
    row["seq_noisy"] = noisy("tinybptt:sequence", best)
    row["ops_noisy"] = noisy("tinybptt:ops", "torch-ops")
    row["seq_target"] = seq_target(row["config"])
    row["seq_pass"] = None if row["seq_ratio"] is None else row["seq_ratio"] <= row["seq_target"]
    row["ops_pass"] = None if row["ops_ratio"] is None else row["ops_ratio"] <= OPS_TARGET


def summarize(results, floor_gflops=None):
    """One summary row per (threads, dtype, cell, config): times, best peer, ratios, targets.

    ``floor_gflops`` maps (dtype, threads) to a measured GEMM rate for the FLOP
    floor; without one, FLOOR_GFLOPS times the thread count.  The best peer is
    the fastest external peer whose loss and gradient norms agree with the
    reference; without one there is no ratio and no PASS or FAIL.
    """
    rows = {}
    for r in results:
        key = (r["threads"], r["dtype"], r["cell"], r["config"])
        row = rows.setdefault(key, {"threads": r["threads"], "dtype": r["dtype"], "cell": r["cell"],
                                    "config": r["config"], "shape": r["shape"], "by": {}})
        row["by"][r["contender"]] = r
    for row in rows.values():
        ok = {c: r for c, r in row["by"].items() if r["status"] == "ok" and r.get("agree", True)}
        _floor(row, floor_gflops or {})
        _ratios(row, ok)
    return list(rows.values())


# --------------------------------------------------------------------------- grid tables


def _cell_ms(rec):
    if rec is None:
        return "-"
    if rec["status"] == "skipped":
        return "skip"
    if rec["status"] != "ok":
        return "err"
    s = fmt_ms(rec["total_ms"])
    if rec.get("agree") is False:
        s += "!"
    if rec.get("reps", 2) < 2:
        s += "*"
    return s


def _times_table(name, rows, contenders, stat, md):
    head = ["config", "T,B,I,H", "floor"] + [SHORT.get(c, c) for c in contenders] + ["best peer"]
    body = [[r["config"], ",".join(map(str, r["shape"])), fmt_ms(r["floor_ms"])]
            + [_cell_ms(r["by"].get(c)) for c in contenders]
            + [SHORT.get(r["best_peer"], "-") if r["best_peer"] else "-"] for r in rows]
    return render_table(head, body, md, title="%s: %s ms per forward+backward" % (name, stat))


def _ratio_table(name, rows, md):
    head = ["config", "seq / best peer", "target", "seq", "same, fastest runs", "ops / torch-ops", "target", "ops",
            "cell / best peer", "np-backend / best peer", "seq kernel / floor", "seq overhead"]
    body = []
    for r in rows:
        seq = r["by"].get("tinybptt:sequence") or {}
        kf = ov = "-"
        if seq.get("kernel_calls") and r["floor_ms"]:
            kf = fmt_ratio(seq["kernel_ms"] / r["floor_ms"])
            ov = "%.0f%%" % (100 * (seq["split_total_ms"] - seq["kernel_ms"]) / seq["split_total_ms"])
        body.append([r["config"], fmt_ratio(r["seq_ratio"]) + ("~" if r["seq_noisy"] else ""),
                     "<=%.1fx" % r["seq_target"], passfail(r["seq_pass"]), fmt_ratio(r["seq_ratio_min"]),
                     fmt_ratio(r["ops_ratio"]) + ("~" if r["ops_noisy"] else ""), "<=%.1fx" % OPS_TARGET,
                     passfail(r["ops_pass"]), fmt_ratio(r["cell_ratio"]), fmt_ratio(r["npb_ratio"]), kf, ov])
    return render_table(head, body, md, title="%s: ratios (lower is better) and targets" % name)


def grid_tables(results, md=False, floor_gflops=None):
    """Per (threads, dtype, cell): a time table and a ratio/target table."""
    summary = summarize(results, floor_gflops)
    contenders = list(dict.fromkeys(r["contender"] for r in results))
    stat = next((rr.get("stat") for rr in results if rr.get("stat")), "median")
    blocks = []
    for g in dict.fromkeys((r["threads"], r["dtype"], r["cell"]) for r in summary):
        threads, dtype, cell = g
        rows = [r for r in summary if (r["threads"], r["dtype"], r["cell"]) == g]
        name = "%s, %s, %d thread%s" % (cell.upper(), dtype, threads, "" if threads == 1 else "s")
        blocks.append(_times_table(name, rows, contenders, stat, md))
        blocks.append(_ratio_table(name, rows, md))
    return "\n\n".join(blocks), summary


def headline_table(summary, md=False):
    """mode="sequence" / best peer for every cell and config, one row per (threads, dtype, cell)."""
    configs = list(dict.fromkeys(r["config"] for r in summary))
    groups = list(dict.fromkeys((r["threads"], r["dtype"], r["cell"]) for r in summary))
    head = ["threads", "dtype", "cell"] + configs + ["seq targets met", "ops targets met"]
    body = []
    for g in groups:
        rows = {r["config"]: r for r in summary if (r["threads"], r["dtype"], r["cell"]) == g}
        cells = []
        for c in configs:
            r = rows.get(c)
            if r is None or r["seq_ratio"] is None:
                cells.append("-")
            else:
                cells.append("%s%s %s (%s)" % (fmt_ratio(r["seq_ratio"]), "~" if r["seq_noisy"] else "",
                                               passfail(r["seq_pass"]), SHORT.get(r["best_peer"], r["best_peer"])))
        sp = [r["seq_pass"] for r in rows.values() if r["seq_pass"] is not None]
        op = [r["ops_pass"] for r in rows.values() if r["ops_pass"] is not None]
        body.append([g[0], g[1], g[2].upper()] + cells + ["%d/%d" % (sum(sp), len(sp)), "%d/%d" % (sum(op), len(op))])
    return render_table(head, body, md, title="Headline: mode=\"sequence\" time / the faster peer's time (that peer in "
                                              "brackets); target: at most 0.8x, at most 1.1x on large")


def split_table(results, md=False):
    """Forward / backward and kernel / Python-overhead split of every measured contender."""
    head = ["cell", "config", "dtype", "thr", "contender", "fwd ms", "bwd ms", "total ms",
            "kernel ms (fwd/bwd)", "overhead ms", "overhead %", "kernel calls", "runs", "spread"]
    body = []
    for r in results:
        if r["status"] != "ok":
            continue
        k, calls = r.get("kernel_ms"), r.get("kernel_calls")
        kcol = ocol = pcol = "-"
        if k is not None and calls:
            st = r["split_total_ms"]
            kcol = "%s (%s/%s)" % (fmt_ms(k), fmt_ms(r["kernel_fwd_ms"]), fmt_ms(r["kernel_bwd_ms"]))
            ocol, pcol = fmt_ms(st - k), "%.0f%%" % (100 * (st - k) / st)
        bwd = fmt_ms(r["bwd_ms"]) + ("^" if r["contender"] == "jax" else "")
        body.append([r["cell"], r["config"], r["dtype"], r["threads"], SHORT.get(r["contender"], r["contender"]),
                     fmt_ms(r["fwd_ms"]), bwd, fmt_ms(r["total_ms"]), kcol, ocol, pcol,
                     "-" if calls is None else calls, r["reps"],
                     "-" if r.get("spread") is None else "%.0f%%" % (100 * r["spread"])])
    return render_table(head, body, md, title="Forward/backward split; tinybptt kernel time vs Python/graph overhead")


def _result_note(r):
    where = "%s %s %s %dt %s" % (r["cell"], r["config"], r["dtype"], r["threads"], r["contender"])
    if r["status"] == "error":
        return "%s: error: %s" % (where, r["note"])
    if r["status"] == "skipped" or (r.get("agree") is not False and r.get("note")):
        return "%s: %s" % (where, r["note"])
    if r.get("agree") is False:
        return ("%s: loss/gradient norms differ from %s by %.2g (relative) -- excluded from best peer"
                % (where, r["agree_ref"], r["agree_err"]))
    return None


def _legend(floor_gflops):
    if floor_gflops:
        floor = "the best GEMM GFLOP/s measured by this run's --gemm (%s)" % ", ".join(
            "%s %dt: %.0f" % (k[0], k[1], v) for k, v in sorted(floor_gflops.items()))
    else:
        floor = ("a single-thread GEMM rate of %s GFLOP/s float32, %s float64 (torch.matmul on the development "
                 "machine) x threads" % (FLOOR_GFLOPS["float32"], FLOOR_GFLOPS["float64"]))
    return ("Legend: spread = interquartile range of the timed runs / median; `~` after a ratio: one side's "
            "spread exceeds %d%%, the ratio is noisy; `same, fastest runs`: the sequence ratio from each side's "
            "fastest run instead of the median (steadier when the machine is busy); kernel = time inside "
            "`tinybptt.kernels.backend` calls, overhead = the rest of the step (graph building, autograd, "
            "Python, NumPy glue), both from the fastest of up to 3 instrumented runs; `!` loss or gradient norms "
            "disagree with the reference peer; `*` a single timed run; "
            "`^` JAX backward = value_and_grad time minus the jitted loss time; floor = the workload's GEMM FLOPs "
            "/ %s; ratios use the fastest external peer (torch, jax, torch-ops) whose loss and gradient norms "
            "agree with the reference; numpy-ref (tinybptt's NumPy reference kernels called directly) is a "
            "baseline, never a peer." % (100 * NOISY_SPREAD, floor))


def notes_text(results, notes, md=False, floor_gflops=None):
    lines = list(notes) + [n for n in (_result_note(r) for r in results) if n]
    out = [_legend(floor_gflops)]
    if lines:
        out.append("Notes:")
        out += [("- " if md else "  ") + line for line in lines]
    return "\n".join(out)


# --------------------------------------------------------------------------- correctness check table


def check_table(rows, md=False):
    """One row per (dtype, cell, config); per contender the larger of its loss error and its
    gradient error relative to the reference (max |g - g_ref| / max |g_ref|), ok/FAIL."""
    contenders = list(dict.fromkeys(r["contender"] for r in rows))
    keys = list(dict.fromkeys((r["dtype"], r["cell"], r["config"]) for r in rows))
    by = {(r["dtype"], r["cell"], r["config"], r["contender"]): r for r in rows}
    head = ["dtype", "cell", "config", "vs"] + [SHORT.get(c, c) for c in contenders]
    body, fails = [], []
    for k in keys:
        ref = next((by[k + (c,)]["ref"] for c in contenders if (k + (c,)) in by), None)
        line = list(k) + [SHORT.get(ref, ref) if ref else "-"]
        for c in contenders:
            r = by.get(k + (c,))
            if r is None:
                line.append("-")
            elif r["status"] == "ok":
                line.append("%.0e %s" % (max(r["loss_err"], r["grad_err"]), "ok" if r["passed"] else "FAIL"))
            elif r["status"] == "reference":
                line.append("(ref)")
            else:
                line.append(r["status"])
                if r.get("note"):
                    fails.append("%s %s %s %s: %s" % (k + (c, r["note"])))
        body.append(line)
    text = render_table(head, body, md, title="Correctness check: each contender's loss and full weight gradients "
                                              "against the reference for the same weights and input (largest "
                                              "relative error; ok = within 1e-9 float64 / 1e-4 float32 for the "
                                              "loss, 10x that for the gradients)")
    if fails:
        text += "\n\n" + "\n".join(("- " if md else "  ") + f for f in fails)
    return text


# --------------------------------------------------------------------------- the whole report


def load_warning(machine, threads=1):
    """A warning when other processes likely competed for the cores this run used.

    The 1-minute load average counts this run's own ``threads`` busy threads too;
    the rest is other work.  It is harmful once it exceeds the cores this run
    left free (plus a margin): any at all for a run using every core.
    """
    cores = machine.get("cores") or 1
    loads = []
    for key in ("loadavg", "loadavg_end"):
        try:
            loads.append(float(str(machine.get(key, "")).split()[0]))
        except (ValueError, IndexError):
            pass
    if not loads or max(loads) - threads <= max(cores - threads, 0) + 0.25:
        return None
    return ("Warning: the machine was busy (1-minute load average up to %.1f on %d cores, this run using %d "
            "thread%s): other processes competed for the CPU, so absolute times are inflated and %s; compare "
            "ratios and look at the spread." % (max(loads), cores, threads, "" if threads == 1 else "s",
                                                "multi-thread results (which then suffer badly, for every "
                                                "contender) are unreliable" if threads > 1 else
                                                "some rows may be disturbed"))


def floor_rates(out):
    """{(dtype, threads): GFLOP/s} of a run's ``--floor-from-gemm`` rates (empty without)."""
    return {(d, t): v for d, t, v in out.get("floor_gflops") or []}


def _run_threads(out):
    ts = [r.get("threads", 1) for key in ("results", "scaling", "gemm") for r in out.get(key) or []]
    return max(ts) if ts else 1


def _plots_block(out, md, plot_dir, embed_plots):
    rel = [os.path.relpath(p, plot_dir) if plot_dir else p for p in out["plots"]]
    if md and embed_plots:
        return "\n\n".join("![%s](%s)" % (os.path.basename(p), p) for p in rel)
    if md:
        return ("Plots written by this run (not in git: `*.png` is ignored): "
                + ", ".join("`%s`" % p for p in rel))
    return "plots: " + ", ".join(out["plots"])


def render(out, md=False, header=False, headline=True, plot_dir=None, embed_plots=True):
    """All tables of one ``tinybptt bench`` run (the dict written by --json), as text or Markdown.

    ``plot_dir``: the directory the Markdown will live in, for relative image links;
    ``embed_plots=False`` names the plot files instead of embedding them.
    """
    from .gemm import gemm_table
    from .scaling import scaling_tables
    blocks = ["Command: `%s`" % out["command"], machine_text(out["machine"], md=md)] if header else []
    if out.get("no_peer"):
        blocks.append(("**%s**" if md else "%s") % out["no_peer"])
    if any(out.get(k) for k in ("results", "scaling", "gemm", "train")):
        warn = load_warning(out.get("machine") or {}, _run_threads(out))
        blocks.append(("**%s**" % warn if md else warn) if warn else "")
    if out.get("check"):
        blocks.append(check_table(out["check"], md))
    if out.get("gemm") or out.get("gemm_notes"):
        blocks.append(gemm_table(out.get("gemm") or [], md))
        blocks += [("- " if md else "") + n for n in out.get("gemm_notes") or []]
    if out.get("results"):
        floor = floor_rates(out)
        tables, summary = grid_tables(out["results"], md, floor)
        if headline:
            blocks.append(headline_table(summary, md))
        blocks += [tables, split_table(out["results"], md), notes_text(out["results"], out.get("notes") or [], md,
                                                                       floor)]
    elif out.get("notes"):
        blocks.append("\n".join(("- " if md else "  ") + n for n in out["notes"]))
    if out.get("scaling"):
        blocks.append(scaling_tables(out["scaling"], md))
    if out.get("train"):
        from .train import train_tables
        blocks.append(train_tables(out["train"], md))
    if out.get("plots"):
        blocks.append(_plots_block(out, md, plot_dir, embed_plots))
    return "\n\n".join(b for b in blocks if b)


"""The time-memory frontier of backpropagation through time for one layer.

    taskset -c 1 python benchmarks/frontier.py                   # LSTM T=1000 B=8 I=64 H=64 float32
    python benchmarks/frontier.py --config 200x4x16x32 --repeat 3  # a quick look

For one configuration (``TxBxIxH``), one forward + backward of ``nn.LSTM``
(loss ``sum(out**2)``, input not requiring grad, as in ``tinybptt bench``) under

* full BPTT (``mode="sequence"``): every step's activations kept;
* uniform checkpointing (``checkpoint=k``): every k-th state kept, each k-step
  segment recomputed once in backward;
* binomial checkpointing (``nn.revolve.revolve_sequence``) at several budgets of
  stored states, with segments of ``--segment`` steps and with the default
  segment length (``nn.revolve.default_segment``).

Memory, two ways.  "counted": the activation memory by the layers' own byte
counts -- for full BPTT what the graph saves for backward (``saved_bytes``), for
checkpointing ``checkpoint_stats.peak_bytes`` (the stored states plus the
largest recomputed segment's saved workspace).  "traced": the peak of the bytes
NumPy allocated during forward + backward, traced with ``tracemalloc`` (NumPy
reports its buffers to it; what existed before -- input, weights -- is excluded;
the (T, B, H) outputs, their gradient and the kernels' backward scratch are
included, about the same for every point).  Time is the median of ``--repeat``
runs without tracing, after one warm-up run, the methods taking turns (one run
of each per round) so that a noisy moment hits them all.  Pin the process to one core
(``taskset -c 1``); ``--cpu`` does it from inside when taskset is absent.

Writes ``benchmarks/results/frontier.json`` and ``frontier.png`` (matplotlib, if installed).
"""
import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import tinybptt as tb  # noqa: E402
from tinybptt import nn  # noqa: E402
from tinybptt.nn.revolve import default_segment, revolve_sequence  # noqa: E402
from tinybptt.nn.utils import saved_bytes  # noqa: E402
from tinybptt.kernels import workspace  # noqa: E402

MiB = 2.0 ** 20


def _once(lstm, x, how):
    """One forward + backward; ``how`` is ("full",), ("uniform", k) or ("revolve", budget, segment)."""
    if how[0] == "revolve":
        out, _ = revolve_sequence(lstm, x, budget=how[1], segment=how[2])
    else:
        out, _ = lstm.forward_with(x, None, checkpoint=how[1] if how[0] == "uniform" else None)
    (out * out).sum().backward()
    lstm.zero_grad()


def time_all(lstm, x, plan, repeat):
    """Median time of each plan entry, measured in interleaved rounds (one run of each per round)."""
    for how, _ in plan:
        _once(lstm, x, how)  # warm-up
    times = [[] for _ in plan]
    for _ in range(repeat):
        for (how, _), ts in zip(plan, times):
            t0 = time.perf_counter()
            _once(lstm, x, how)
            ts.append(time.perf_counter() - t0)
    return times


def memory(lstm, x, how):
    """One more run under tracemalloc; returns the row of everything but the time."""
    # arrays the workspace kept from the timed runs would be reused unseen by tracemalloc: drop them,
    # so that the traced run allocates what it needs, as the first step of a training run does
    workspace.clear()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        _once(lstm, x, how)
        traced = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    T = x.shape[0]
    row = dict(method=how[0], param=how[1] if len(how) > 1 else None, traced_peak_mib=traced / MiB,
               steps_computed=2 * T if how[0] == "uniform" else T)
    if how[0] == "full":
        out, _ = lstm(x)
        row["counted_peak_mib"] = saved_bytes(out, exclude=[x] + lstm.parameters()) / MiB
    else:
        st = lstm.checkpoint_stats
        row["counted_peak_mib"] = st.peak_bytes / MiB
    if how[0] == "revolve":
        row.update(segment=how[2], steps_computed=st.steps_computed, max_stored=st.max_stored)
    row["recompute"] = row["steps_computed"] / T
    return row


def plot(rows, title, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no plot")
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    series = collections_by(rows)
    for ax, key, xlabel in ((axes[0], "counted_peak_mib", "activation memory (MiB): states kept + largest segment"),
                            (axes[1], "traced_peak_mib", "peak NumPy memory of forward + backward (MiB, tracemalloc)")):
        for (label, marker), pts in series.items():
            pts = sorted(pts, key=lambda r: r["param"] or 0)  # along k or the budget
            ax.plot([r[key] for r in pts], [r["time_ms"] for r in pts], marker=marker, label=label)
            for r in pts:
                if r["param"] is not None:
                    ax.annotate(str(r["param"]), (r[key], r["time_ms"]), fontsize=7,
                                textcoords="offset points", xytext=(3, 3))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("forward + backward time (ms, median)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print("wrote", path)


def markdown(data):
    """The frontier as a Markdown table (for benchmarks/RESULTS.md), from the JSON this script writes."""
    cfg = data["config"]
    lines = ["%s, T=%d, B=%d, I=%d, H=%d, %s, loss `sum(out**2)`; pinned to CPU %s; median of %d interleaved "
             "rounds. \"counted\" is the layer's own count (states kept plus the largest recomputed segment's "
             "saved activations; for full BPTT what the graph saves), \"traced\" the tracemalloc peak of NumPy "
             "allocations, which also holds the outputs and their gradient."
             % (cfg["cell"].upper(), cfg["T"], cfg["B"], cfg["I"], cfg["H"], cfg["dtype"],
                ",".join(map(str, data["affinity"])), data["repeat"]), "",
             "| method | k or budget | segment | time ms | counted MiB | traced MiB | steps computed / T |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    names = {"full": "full BPTT", "uniform": "every k", "revolve": "binomial (revolve)"}
    for r in data["rows"]:
        counted = "%.2f" % r["counted_peak_mib"] if r.get("counted_peak_mib") is not None else "-"
        lines.append("| %s | %s | %s | %.1f | %s | %.2f | %.2f |" % (
            names.get(r["method"], r["method"]), "" if r["param"] is None else r["param"],
            r.get("segment", "") if r["method"] == "revolve" else "", r["time_ms"], counted,
            r["traced_peak_mib"], r["recompute"]))
    return "\n".join(lines)


def collections_by(rows):
    """Group rows into plot series: full, uniform k, revolve per segment length."""
    series = {}
    for r in rows:
        if r["method"] == "full":
            key = ("full BPTT", "*")
        elif r["method"] == "uniform":
            key = ("uniform checkpoint=k (labels: k)", "s")
        else:
            key = ("revolve, segment=%s (labels: budget)" % r["segment_label"], "o" if r["segment_label"] ==
                   "default" else "^")
        series.setdefault(key, []).append(r)
    return series


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="1000x8x64x64", help="TxBxIxH")
    ap.add_argument("--ks", default="5,10,20,32,50,100,250", help="uniform checkpointing intervals")
    ap.add_argument("--budgets", default="2,4,8,16,32,64,128", help="revolve budgets (stored states)")
    ap.add_argument("--segment", type=int, default=10, help="steps per kernel call of the fixed-segment series")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--cpu", type=int, default=None, help="pin to this core (os.sched_setaffinity)")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "frontier"),
                    help="path prefix of the .json and .png")
    args = ap.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    T, B, I, H = (int(v) for v in args.config.split("x"))
    nn.manual_seed(0)
    lstm = nn.LSTM(I, H, dtype=np.float32)
    lstm.record_grad_trace = False
    x = tb.tensor(np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32))
    plan = [(("full",), None)]
    plan += [(("uniform", int(k)), None) for k in args.ks.split(",")]
    for s in (int(b) for b in args.budgets.split(",")):
        plan.append((("revolve", s, args.segment), str(args.segment)))
        plan.append((("revolve", s, default_segment("lstm", s)), "default"))
    rows = []
    print("LSTM T=%d B=%d I=%d H=%d float32, forward + backward, loss sum(out**2); affinity %s"
          % (T, B, I, H, sorted(os.sched_getaffinity(0))))
    print("%-8s %6s %8s %10s %12s %13s %10s" % ("method", "param", "segment", "time ms", "traced MiB",
                                                  "counted MiB", "recompute"))
    times = time_all(lstm, x, plan, args.repeat)
    for (how, seg_label), ts in zip(plan, times):
        row = memory(lstm, x, how)
        row.update(segment_label=seg_label, time_ms=1e3 * statistics.median(ts), times_ms=[1e3 * t for t in ts])
        rows.append(row)
        print("%-8s %6s %8s %10.2f %12.2f %13s %10.2f" % (row["method"], row["param"] or "",
                                                         row.get("segment", ""), row["time_ms"],
                                                         row["traced_peak_mib"],
                                                         "%.2f" % row["counted_peak_mib"] if "counted_peak_mib"
                                                         in row else "", row["recompute"]), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    meta = dict(config=dict(T=T, B=B, I=I, H=H, dtype="float32", cell="lstm"), repeat=args.repeat,
                affinity=sorted(os.sched_getaffinity(0)), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                memory="tracemalloc peak of NumPy allocations during forward+backward (traced_peak_mib); "
                       "counted_peak_mib = the layer's own count of stored states + largest recomputed segment")
    with open(args.out + ".json", "w") as f:
        json.dump(dict(meta, rows=rows), f, indent=1)
    print("wrote", args.out + ".json")
    plot(rows, "LSTM T=%d B=%d I=%d H=%d float32: time vs memory of BPTT" % (T, B, I, H), args.out + ".png")


if __name__ == "__main__":
    main()

"""The scaling section: time and memory against T, H and B, and checkpointed against full BPTT."""
import math

from ..display import Progress
from .problems import CONFIGS, SHORT, peer_available
from .report import fmt_ms, fmt_ratio, render_table
from .workers import measure_one, pool_for

#: (config, checkpoint values) of the checkpointed-vs-full runs; checkpoint=k keeps every k-th state
#: (None = full BPTT).  Memory O(T/k + k): k ~ sqrt(T) is the sweet spot.
CHECKPOINT_RUNS = (("long", (None, 8, 32, 128)), ("medium", (None, 10, 32)))


def scaling_points(base=(100, 16, 64, 64)):
    """Sweeps of T, H and B around ``base`` (T, B, I, H); I follows H in the H sweep."""
    T0, B0, I0, H0 = base
    pts = [("T", T, (T, B0, I0, H0)) for T in (25, 50, 100, 200, 400, 800)]
    pts += [("H", H, (T0, B0, H, H)) for H in (32, 64, 128, 256, 512)]
    pts += [("B", B, (T0, B, I0, H0)) for B in (1, 4, 16, 64, 256)]
    return pts


def checkpoint_kwargs(k):
    """Layer keyword arguments that turn on checkpointed BPTT (None -> full BPTT)."""
    return None if k is None else {"checkpoint": k}


def _sweep_rows(pool, args, cell, common, contenders, prog):
    rows = []
    for axis, val, shape in scaling_points():
        row = {"cell": cell, "axis": axis, "value": val, "shape": list(shape), "dtype": common["dtype"],
               "threads": args.threads[0]}
        for c in contenders:
            req = dict(common, contender=c, cell=cell, shape=list(shape), memory=c != "torch")
            row[c] = measure_one(pool, req, args.timeout)
            prog.update(desc="scaling %s %s=%d %s" % (cell, axis, val, SHORT[c]))
        rows.append(row)
    return rows


def _checkpoint_rows(pool, args, cell, common, prog):
    rows = []
    for cname, ks in CHECKPOINT_RUNS:
        shape = CONFIGS[cname]
        for k in ks:
            row = {"cell": cell, "axis": "checkpoint", "value": k, "config": cname, "shape": list(shape),
                   "dtype": common["dtype"], "threads": args.threads[0]}
            req = dict(common, contender="tinybptt:sequence", cell=cell, shape=list(shape), memory=True,
                       layer_kwargs=checkpoint_kwargs(k))
            row["tinybptt:sequence"] = measure_one(pool, req, args.timeout)
            prog.update(desc="checkpoint %s %s k=%s" % (cell, cname, k))
            rows.append(row)
    return rows


def run_scaling(args, progress_enabled=True):
    """Time and NumPy-allocated memory of tinybptt (and torch's time) against T, H and B;
    then checkpointed against full BPTT on the long config."""
    contenders = ["tinybptt:sequence", "numpy"] + (["torch"] if "torch" in args.peers and peer_available("torch")
                                                   else [])
    n_ck = sum(len(ks) for _, ks in CHECKPOINT_RUNS)
    total = len(args.cells) * (len(scaling_points()) * len(contenders) + n_ck)
    common = {"op": "measure", "dtype": args.dtype[0], "seed": args.seed, "repeat": args.scaling_repeat,
              "warmup": 1, "grad_trace": args.grad_trace, "gc_each_run": args.gc_each_run,
              "budget": args.budget / 2, "max_iter_s": args.max_iter_s, "min_repeat": 1}
    rows = []
    with pool_for(args, args.threads[0]) as pool, \
            Progress(total, enabled=progress_enabled and not args.quiet, lines=True) as prog:
        for cell in args.cells:
            rows += _sweep_rows(pool, args, cell, common, contenders, prog)
            rows += _checkpoint_rows(pool, args, cell, common, prog)
    return rows


def fmt_bytes(b):
    if b is None:
        return "-"
    for unit, k in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if abs(b) >= k:
            return "%.1f %s" % (b / k, unit)
    return "%d B" % b


def loglog_slope(xs, ys):
    """Least-squares exponent p of y ~ x^p (log-log fit); None with too few points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else None


def ok_value(res, key):
    """``res[key]`` of a successful measurement, else None."""
    return res.get(key) if res and res.get("ok") else None


def _sweep_table(cell, axis, rs, md):
    head = [axis, "T,B,I,H", "seq ms", "torch ms", "numpy-ref ms", "seq / torch",
            "seq saved (fwd)", "seq peak", "numpy-ref saved", "numpy-ref peak"]
    body = []
    for r in rs:
        s, t, n = r.get("tinybptt:sequence"), r.get("torch"), r.get("numpy")
        st, tt = ok_value(s, "total_ms"), ok_value(t, "total_ms")
        body.append([r["value"], ",".join(map(str, r["shape"])), fmt_ms(st), fmt_ms(tt),
                     fmt_ms(ok_value(n, "total_ms")), fmt_ratio(st / tt if st and tt else None),
                     fmt_bytes(ok_value(s, "saved_bytes")), fmt_bytes(ok_value(s, "peak_bytes")),
                     fmt_bytes(ok_value(n, "saved_bytes")), fmt_bytes(ok_value(n, "peak_bytes"))])
    vals = [r["value"] for r in rs]
    fits = []
    for label, c, key in (("seq time", "tinybptt:sequence", "total_ms"), ("torch time", "torch", "total_ms"),
                          ("seq saved memory", "tinybptt:sequence", "saved_bytes")):
        p = loglog_slope(vals, [ok_value(r.get(c), key) for r in rs])
        if p is not None:
            fits.append("%s ~ %s^%.2f" % (label, axis, p))
    title = "%s scaling with %s (%s): %s" % (cell.upper(), axis, rs[0]["dtype"], "; ".join(fits) or "no fit")
    return render_table(head, body, md, title=title)


def _checkpoint_table(cell, ck, md):
    head = ["config", "checkpoint k", "total ms", "fwd ms", "bwd ms", "time vs full",
            "held after fwd", "peak", "peak vs full", "layer: stored", "layer: peak"]
    full = {r["config"]: r["tinybptt:sequence"] for r in ck
            if r["value"] is None and r["tinybptt:sequence"].get("ok")}
    body = []
    for r in ck:
        s, f = r["tinybptt:sequence"], full.get(r["config"])
        label = "full BPTT" if r["value"] is None else str(r["value"])
        if not s.get("ok"):
            body.append([r["config"], label] + ["-"] * 8 + [s.get("error", "?")[:80]])
            continue
        tr = s["total_ms"] / f["total_ms"] if f else None
        mr = s["peak_bytes"] / f["peak_bytes"] if f and f.get("peak_bytes") else None
        body.append([r["config"], label, fmt_ms(s["total_ms"]), fmt_ms(s["fwd_ms"]), fmt_ms(s["bwd_ms"]),
                     fmt_ratio(tr), fmt_bytes(s.get("saved_bytes")), fmt_bytes(s.get("peak_bytes")),
                     fmt_ratio(mr), fmt_bytes(s.get("layer_stored_bytes")), fmt_bytes(s.get("layer_peak_bytes"))])
    return render_table(head, body, md, title="%s checkpointed BPTT against full BPTT" % cell.upper())


MEMORY_NOTE = ("Memory is what NumPy allocated as seen by tracemalloc: `saved` = held after the forward pass "
               "(the graph's saved activations and outputs), `peak` = the most held at once during "
               "forward+backward, both above the baseline of parameters and gradient buffers. "
               "Memory the C kernels malloc themselves is not included; PyTorch's is not measured. "
               "`layer: stored/peak` is tinybptt.bptt.activation_bytes(): the bytes the graph keeps "
               "between forward and backward, and with checkpointing the stored states plus the largest "
               "recomputed segment.")


def scaling_tables(rows, md=False):
    blocks = []
    for cell in dict.fromkeys(r["cell"] for r in rows):
        for axis in ("T", "H", "B"):
            rs = [r for r in rows if r["cell"] == cell and r["axis"] == axis]
            if rs:
                blocks.append(_sweep_table(cell, axis, rs, md))
        ck = [r for r in rows if r["cell"] == cell and r["axis"] == "checkpoint"]
        if ck:
            blocks.append(_checkpoint_table(cell, ck, md))
    blocks.append(MEMORY_NOTE)
    return "\n\n".join(blocks)

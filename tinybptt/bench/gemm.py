"""The GEMM kernel section: benchmarks/bench_gemm.py's GFLOP/s runs, in pinned workers."""
import os

from .machine import SOURCE_ROOT
from .report import render_table
from .workers import pool_for

GEMM_SIZES = (16, 32, 64, 128, 256, 512, 1024)
#: Targets: tinybptt's GEMM at least 0.85x torch.matmul's GFLOP/s for sizes 256-1024, and at least
#: NumPy's (1.0x) for sizes 16-128.
GEMM_TORCH_TARGET = 0.85
GEMM_NUMPY_TARGET = 1.0


def bench_gemm_path():
    return os.path.join(SOURCE_ROOT, "benchmarks", "bench_gemm.py")


def run_gemm(args):
    """benchmarks/bench_gemm.py's run() in a pinned worker per thread count and dtype."""
    path = bench_gemm_path()
    if not os.path.exists(path):
        return [], ["GEMM runs skipped: %s not found (needs a source checkout)" % path]
    rows, notes = [], []
    for threads in args.threads:
        with pool_for(args, threads) as pool:
            for dtype in args.dtype:
                req = {"op": "gemm", "bench_gemm": path, "sizes": list(args.gemm_sizes), "dtype": dtype,
                       "threads": threads, "repeat": args.gemm_repeat}
                res = pool.request("tinybptt", req, timeout=args.timeout)
                if not res.get("ok"):
                    notes.append("GEMM %s %dt: error: %s" % (dtype, threads, res.get("error")))
                    continue
                for r in res["rows"]:
                    rows.append(dict({"dtype": dtype, "threads": threads}, **r))
    return rows, notes


def _target(ratio, n, lo, hi, target):
    """(target text, PASS/FAIL) when size ``n`` is in [lo, hi] and a ratio was measured, else ("-", "-")."""
    if isinstance(n, int) and lo <= n <= hi and ratio is not None:
        return ">=%.2f" % target, "PASS" if ratio >= target else "FAIL"
    return "-", "-"


def gemm_table(rows, md=False):
    """GFLOP/s per implementation and size, with the GEMM targets as pass/fail columns."""
    if not rows:
        return ""
    impls = list(dict.fromkeys(k for r in rows for k in (r.get("gflops") or {})))
    head = ["n", "dtype", "threads", "kernel"] + ["%s GFLOP/s" % k.replace("_", " ") for k in impls] + [
        "tb / torch", "target", "tb / numpy", "target"]
    body = []
    for r in rows:
        g, n = r.get("gflops") or {}, r.get("size")
        tt, tn = r.get("tb_over_torch"), r.get("tb_over_numpy")
        t_target, t_res = _target(tt, n, 256, 1024, GEMM_TORCH_TARGET)
        n_target, n_res = _target(tn, n, 16, 128, GEMM_NUMPY_TARGET)
        body.append([n, r.get("dtype", "-"), r.get("threads", "-"), r.get("kernel", "-")]
                    + ["-" if g.get(k) is None else "%.1f" % g[k] for k in impls]
                    + ["-" if tt is None else "%.2f" % tt, "%s %s" % (t_target, t_res) if t_res != "-" else "-",
                       "-" if tn is None else "%.2f" % tn, "%s %s" % (n_target, n_res) if n_res != "-" else "-"])
    return render_table(head, body, md, title="GEMM kernel runs (benchmarks/bench_gemm.py run(): each kernel checked "
                                              "against the reference before it is timed; median GFLOP/s)")


def gemm_floor_rates(rows):
    """{(dtype, threads): best GFLOP/s any implementation reached} from the GEMM runs."""
    rates = {}
    for r in rows:
        vals = [v for v in (r.get("gflops") or {}).values() if isinstance(v, (int, float))]
        if vals:
            key = (r.get("dtype"), r.get("threads"))
            rates[key] = max(rates.get(key, 0.0), max(vals))
    return rates

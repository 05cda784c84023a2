"""Square GEMM throughput: tinybptt's blocked GEMM against NumPy and PyTorch.

    python benchmarks/bench_gemm.py                       # f32, sizes 16..1024, 1 thread
    python benchmarks/bench_gemm.py --dtype float64 --sizes 64,256 --repeat 9 --json out.json

For every size the script first checks tinybptt's result against the C
reference triple loop (all rows for n <= 256, a band of rows above that) and
against NumPy, then times, with the same thread count pinned for everyone
(``tb_set_num_threads``, ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/
``MKL_NUM_THREADS`` set before NumPy is imported, ``torch.set_num_threads``):

    tb ffi     tb_gemm_* called through cffi on preallocated arrays (no wrapper)
    tb matmul  tinybptt.kernels.c.matmul(a, b) (validation + output allocation)
    numpy      a @ b
    torch      torch.matmul(a, b) on tensors sharing the arrays' memory (if installed)

Each implementation is warmed up, then timed in interleaved rounds (one sample
of each per round, so machine noise hits all alike); the median sample is
reported as GFLOP/s (2 n^3 / time) with the ratios tb ffi / torch and
tb ffi / numpy.  Machines here are shared and noisy: compare ratios, not
absolute numbers, and prefer a larger --repeat.

Importable: ``run(sizes, dtype, threads, repeat) -> list[dict]`` and
``format_table(rows) -> str``.
"""
import argparse
import ctypes
import json
import os
import sys
import time

# tinybptt from this checkout (not whichever one an editable install points at)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEFAULT_SIZES = (16, 32, 64, 128, 256, 512, 1024)
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_thread_env(threads):
    """Set the BLAS/OpenMP thread variables; effective only before NumPy/torch load."""
    for var in THREAD_ENV:
        os.environ[var] = str(threads)


def _set_blas_threads(threads):
    """Best effort at run time, for when NumPy was imported before pin_thread_env:
    threadpoolctl if installed, else the OpenBLAS setter of a loaded OpenBLAS."""
    try:
        import threadpoolctl
        threadpoolctl.threadpool_limits(threads)
        return
    except ImportError:
        pass
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(ctypes.c_int(threads))
                break


def _timer(fn, flops, min_sample=0.02):
    """Warm fn up; return (loops per sample, a function giving one sample's seconds per call)."""
    for _ in range(3):
        fn()
    one = []
    for _ in range(3):  # the fastest of three: one disturbed call must not shrink every sample
        t0 = time.perf_counter()
        fn()
        one.append(time.perf_counter() - t0)
    loops = max(1, int(min_sample / max(min(one), 1e-7)))

    def sample():
        fn()  # untimed: wakes the thread pool (and the core) after a pause
        t = time.perf_counter()
        for _ in range(loops):
            fn()
        return (time.perf_counter() - t) / loops

    return sample


def _check(n, a, b, lib, ffi, kc, np, dtype):
    """tb_gemm against the reference triple loop and NumPy; raises on mismatch."""
    suf = "f32" if dtype == np.float32 else "f64"
    ct = "float *" if dtype == np.float32 else "double *"
    c = np.full((n, n), np.nan, dtype)
    getattr(lib, "tb_gemm_" + suf)(0, 0, n, n, n, 1.0, ffi.cast(ct, a.ctypes.data), n,
                                   ffi.cast(ct, b.ctypes.data), n, 0.0, ffi.cast(ct, c.ctypes.data), n)
    rows = n if n <= 256 else 32   # the triple loop is slow: a band of rows for large n
    for r0 in sorted({0, n - rows}):
        ref = np.full((rows, n), np.nan, dtype)
        getattr(lib, "tb_gemm_ref_" + suf)(0, 0, rows, n, n, 1.0, ffi.cast(ct, a[r0:].ctypes.data), n,
                                           ffi.cast(ct, b.ctypes.data), n, 0.0,
                                           ffi.cast(ct, ref.ctypes.data), n)
        bound = 4 * np.finfo(dtype).eps * (n + 4) * (np.abs(a[r0:r0 + rows]).astype(np.float64)
                                                     @ np.abs(b).astype(np.float64))
        err = np.abs(c[r0:r0 + rows].astype(np.float64) - ref)
        if not (err <= bound).all():
            raise AssertionError("tb_gemm_%s n=%d differs from the reference by %g" % (suf, n, err.max()))
    want = a.astype(np.float64) @ b.astype(np.float64)
    bound = 4 * np.finfo(dtype).eps * (n + 4) * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))
    for name, got in (("tb_gemm_" + suf, c), ("kernels.c.matmul", kc.matmul(a, b))):
        err = np.abs(got - want)
        if not (err <= bound).all():
            raise AssertionError("%s n=%d differs from NumPy by %g" % (name, n, err.max()))


def run(sizes=DEFAULT_SIZES, dtype="float32", threads=1, repeat=7):
    """Check, then time every implementation for each square size; one dict per size.

    Keys: size, dtype, threads, kernel, gflops (dict: tb_ffi, tb_matmul, numpy,
    torch or None), tb_over_torch, tb_over_numpy (tb ffi GFLOP/s ratios)."""
    import numpy as np
    from tinybptt._tinybptt_c import ffi, lib
    from tinybptt.kernels import c as kc
    try:
        import torch
    except ImportError:
        torch = None

    dtype = np.dtype(dtype).type
    suf = "f32" if dtype == np.float32 else "f64"
    ct = "float *" if dtype == np.float32 else "double *"
    tb_threads_before = lib.tb_get_num_threads()
    lib.tb_set_num_threads(int(threads))
    _set_blas_threads(int(threads))
    if torch is not None:
        torch.set_num_threads(int(threads))
    info = ffi.string(lib.tb_build_info()).decode()
    kernel = info.split("gemm=")[1].split(";")[0] if "gemm=" in info else "?"
    gemm = getattr(lib, "tb_gemm_" + suf)
    rng = np.random.default_rng(0)
    rows = []
    try:
        _run_sizes(sizes, dtype, threads, repeat, rows, rng, np, ffi, lib, kc, torch, gemm, ct, kernel)
    finally:
        lib.tb_set_num_threads(tb_threads_before)
    return rows


def _run_sizes(sizes, dtype, threads, repeat, rows, rng, np, ffi, lib, kc, torch, gemm, ct, kernel):
    for n in sizes:
        n = int(n)
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        c = np.zeros((n, n), dtype)
        _check(n, a, b, lib, ffi, kc, np, dtype)
        pa, pb, pc = (ffi.cast(ct, x.ctypes.data) for x in (a, b, c))
        impls = {
            "tb_ffi": lambda: gemm(0, 0, n, n, n, 1.0, pa, n, pb, n, 0.0, pc, n),
            "tb_matmul": lambda: kc.matmul(a, b),
            "numpy": lambda: a @ b,
        }
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            impls["torch"] = lambda: torch.matmul(ta, tb)
        flops = 2.0 * n ** 3
        samplers = {k: _timer(f, flops) for k, f in impls.items()}
        samples = {k: [] for k in impls}
        # With several threads, pause before each sample so the thread pool of the one
        # before (OpenBLAS spins about 0.1 s after its last call) is not still busy.
        settle = 0.2 if threads > 1 else 0.0
        for _ in range(max(1, int(repeat))):
            for k, s in samplers.items():
                if settle:
                    time.sleep(settle)
                samples[k].append(s())
        gf = {k: flops / float(np.median(v)) / 1e9 for k, v in samples.items()}
        gf.setdefault("torch", None)
        rows.append({
            "size": n, "dtype": np.dtype(dtype).name, "threads": int(threads), "kernel": kernel,
            "gflops": gf,
            "tb_over_torch": gf["tb_ffi"] / gf["torch"] if gf["torch"] else None,
            "tb_over_numpy": gf["tb_ffi"] / gf["numpy"],
        })


def format_table(rows):
    """Markdown table of GFLOP/s and ratios."""
    fmt = lambda x, spec="%.1f": "-" if x is None else spec % x
    out = ["| n | tb ffi | tb matmul | numpy | torch | tb/torch | tb/numpy |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        g = r["gflops"]
        out.append("| %d | %s | %s | %s | %s | %s | %s |" % (
            r["size"], fmt(g["tb_ffi"]), fmt(g["tb_matmul"]), fmt(g["numpy"]), fmt(g["torch"]),
            fmt(r["tb_over_torch"], "%.2f"), fmt(r["tb_over_numpy"], "%.2f")))
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help="comma-separated square sizes n (M = N = K = n)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=1, help="threads for every implementation")
    p.add_argument("--repeat", type=int, default=7, help="timed samples per implementation (median)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    if "numpy" not in sys.modules:
        pin_thread_env(args.threads)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = run(sizes, args.dtype, args.threads, args.repeat)
    import numpy as np
    from tinybptt._tinybptt_c import ffi, lib
    try:
        import torch
        peer = "torch %s" % torch.__version__
    except ImportError:
        peer = "torch not installed"
    print("# GEMM %s, %d thread(s), median of %d; GFLOP/s" % (args.dtype, args.threads, args.repeat))
    print("# %s; numpy %s; %s" % (ffi.string(lib.tb_build_info()).decode(), np.__version__, peer))
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()

"""Do two threads pay?  The products the recurrent kernels issue, timed on 1 and 2 threads.

    python benchmarks/threads_sweep.py                      # every problem below
    python benchmarks/threads_sweep.py --problems lstm:train,lstm:medium --repeat 31
    taskset -c 0,1 python benchmarks/threads_sweep.py       # pinned to two cores

A sequence forward + backward is mostly matrix products, of two kinds:

    per step   panel_mm: a few rows (the batch B) times a weight matrix packed once
               per sequence -- forward  (B, K) @ W^T, backward dh = dgates_t @ W_hh;
               T of each per sequence (tb_recurrent_mm_f32 here, which runs the
               same code)
    weight     GEMM: dW^T = [x | h | 1]^T @ dgates, over a group of steps (the
    gradients  LSTM's and GRU's "step by step", about 128 rows at a time) or over
               all T*B rows at once (tb_gemm_f32)

For each problem (the adding-problem training loop, T = 100, B = 32, I = 2,
H = 64, and the benchmark grid's configs) this script lists those products
with how often one forward + backward issues them, and times each on one and
on two threads, alternately.  What a split costs is not all inside the
product: the second thread pulls its share of the operands into its own
core's cache, and the next time the calling thread writes those buffers
(the next step's gates, the next sequence's activations) it has to take the
lines back.  So a weight-gradient GEMM is timed together with the caller
rewriting its operands and result afterwards.  A per-step product is timed
in the steady state of a sequence (W packed once and kept in both cores'
caches), as the difference between 21 products and one, per product.

Columns: multiply-adds (M*N*K, millions), calls per forward + backward,
microseconds per call on one thread and on two (medians; the better of two
alternating rounds), the speedup t1/t2, and what two threads save per
forward + backward on this product, (t1 - t2) * calls.  A product the library
keeps on one thread (too little work per thread, see tb_threads_for in
csrc/runtime.c) shows t1/t2 = 1.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's tinybptt


def problems():
    """Shapes (T, B, I, H) by name: the adding-problem training loop's and the benchmark grid's."""
    from tinybptt.bench.problems import CONFIGS
    from tinybptt.bench.train import TRAIN_CONFIG as c
    return dict(train=(c["T"], c["B"], 2, c["H"]), **CONFIGS)  # the adding problem has 2 inputs


GATES = {"rnn": 1, "lstm": 4, "gru": 3}
#: Rows of one weight-gradient group, and the largest sums kept in cache between
#: groups (LSTM_WGRAD_ROWS, LSTM_STEP_WGRAD_MAX_BYTES and the GRU's in csrc/).
WGRAD_ROWS, STEP_WGRAD_MAX_BYTES = 128, 640 * 1024


def products(cell, T, B, I, H):
    """The products one float32 forward + backward issues: (name, kind, M, N, K, trans, calls).

    kind "mm" is the per-step product C (M, N) = A (M, K) @ op(W) (trans: op(W) = W^T);
    kind "gemm" is C (M, N) = op(A)^T @ B (K rows), the weight gradients' form.
    The list follows csrc/<cell>_impl.h; products that run once per sequence on a
    handful of rows are left out.
    """
    G = GATES[cell]
    GH = G * H
    out = []
    if cell == "lstm":
        out.append(("fwd step [x|h|1]@W^T", "mm", B, GH, I + H + 1, 1, T))
    elif cell == "gru":
        out.append(("fwd x@W_ih^T (all steps)", "gemm_nt", T * B, GH, I, 1, 1))
        out.append(("fwd step h@W_hh^T", "mm", B, GH, H, 1, T))
    else:
        out.append(("fwd step h@W_hh^T", "mm", B, H, H, 1, T))
    out.append(("bwd step dg@W_hh", "mm", B, H, GH, 0, T))
    extra = {"lstm": I + H + 1, "gru": I + H + 2, "rnn": None}[cell]
    if extra and T * B > WGRAD_ROWS and extra * GH * 4 <= STEP_WGRAD_MAX_BYTES:
        S = -(-WGRAD_ROWS // B)
        groups = -(-T // S)
        if cell == "lstm":
            out.append(("wgrad group [x|h|1]^T@dg", "gemm", I + H + 1, GH, S * B, 0, groups))
        else:
            out.append(("wgrad group [x|1]^T@dgx", "gemm", I + 1, GH, S * B, 0, groups))
            out.append(("wgrad group [h|1]^T@dgh", "gemm", H + 1, GH, S * B, 0, groups))
    else:
        out.append(("wgrad x^T@dg (all rows)", "gemm", I, GH, T * B, 0, 1))
        out.append(("wgrad h^T@dg (all rows)", "gemm", H, GH, T * B, 0, 1))
    return out


class Runner:
    """Calls one product through the C library, operands rewritten before each call."""

    def __init__(self, lib, ffi, kind, M, N, K, trans, rng):
        self.lib, self.kind, self.M, self.N, self.K, self.trans = lib, kind, M, N, K, trans
        f = np.float32
        if kind == "mm":
            self.A = rng.standard_normal((M, K)).astype(f)
            self.W = rng.standard_normal((N, K) if trans else (K, N)).astype(f)
        elif kind == "gemm_nt":   # C = A @ W^T, A (M, K), W (N, K)
            self.A = rng.standard_normal((M, K)).astype(f)
            self.W = rng.standard_normal((N, K)).astype(f)
        else:                      # C = A^T @ W, A (K, M), W (K, N)
            self.A = rng.standard_normal((K, M)).astype(f)
            self.W = rng.standard_normal((K, N)).astype(f)
        self.C = np.zeros((M, N), f)
        p = lambda a: ffi.cast("float *", a.ctypes.data)   # noqa: E731
        self.pA, self.pW, self.pC, self.null = p(self.A), p(self.W), p(self.C), ffi.NULL

    def call(self, reps=1):
        """One product; the per-step kind packs W first and runs `reps` products (0: packs only)."""
        M, N, K = self.M, self.N, self.K
        if self.kind == "mm":
            ldw = self.W.shape[1]
            return self.lib.tb_recurrent_mm_f32(M, N, K, self.pA, K, self.pW, ldw, self.trans,
                                                self.pC, N, 0, self.null, reps)
        if self.kind == "gemm_nt":
            return self.lib.tb_gemm_f32(0, 1, M, N, K, 1.0, self.pA, K, self.pW, K, 0.0, self.pC, N)
        return self.lib.tb_gemm_f32(1, 0, M, N, K, 1.0, self.pA, M, self.pW, N, 1.0, self.pC, N)

    def rewrite(self):
        """The calling thread writes the operands and the result, as the kernels do next (a
        step's gate loop writes the next dgates and reads this product's result)."""
        for a in (self.A, self.C) if self.kind == "mm" else (self.A, self.W, self.C):
            a += 0.0

    def time_us(self, repeat, steps=20):
        """Median microseconds of one product and the rewrite after it.

        The per-step kind packs W once per sequence and then runs a product per step,
        W staying in the cores' caches: timed as the difference between a call of
        1 + steps products and a call of one, divided by steps."""
        def median_us(reps):
            times = []
            for _ in range(repeat):
                self.rewrite()
                t0 = time.perf_counter()
                err = self.call(reps)
                self.rewrite()
                times.append(time.perf_counter() - t0)
                assert err == 0, "the C product failed (out of memory)"
            return statistics.median(times) * 1e6
        if self.kind == "mm":
            return (median_us(1 + steps) - median_us(1)) / steps
        return median_us(1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shapes = problems()
    ap.add_argument("--problems", default=",".join("%s:%s" % (c, p) for c in GATES for p in shapes),
                    help="cell:problem pairs, comma separated (problems: %s)" % ", ".join(shapes))
    ap.add_argument("--repeat", type=int, default=21, help="timed calls per product and thread count")
    args = ap.parse_args(argv)

    import tinybptt
    try:
        from tinybptt.kernels._ffi import ffi, lib
    except ImportError:
        sys.exit("threads_sweep: the C extension is not built (python setup.py build_ext --inplace)")
    rng = np.random.default_rng(0)
    before = tinybptt.get_num_threads()
    print("%-16s %-26s %5s %5s %5s %8s %6s %9s %9s %6s %8s"
          % ("problem", "product", "M", "N", "K", "Mmadds", "calls", "1 thr us", "2 thr us", "t1/t2",
             "saved us"))
    try:
        for pair in args.problems.split(","):
            cell, prob = pair.split(":")
            T, B, I, H = shapes[prob]
            for name, kind, M, N, K, trans, calls in products(cell, T, B, I, H):
                r = Runner(lib, ffi, kind, M, N, K, trans, rng)
                t = {}
                for n in (1, 2, 1, 2):   # alternating, two rounds each; the median of the best round
                    tinybptt.set_num_threads(n)
                    r.call()             # warm: packs, scratch, the thread team
                    t.setdefault(n, []).append(r.time_us(args.repeat))
                t1, t2 = min(t[1]), min(t[2])
                print("%-16s %-26s %5d %5d %5d %8.2f %6d %9.1f %9.1f %6.2f %8.1f"
                      % (pair, name, M, N, K, M * N * K / 1e6, calls, t1, t2, t1 / t2, (t1 - t2) * calls))
    finally:
        tinybptt.set_num_threads(before)


if __name__ == "__main__":
    main()

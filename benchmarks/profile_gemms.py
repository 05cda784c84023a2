"""Where the time of a mode="sequence" forward+backward goes: the layer against its own GEMMs.

    python benchmarks/profile_gemms.py --cell rnn --config large
    python benchmarks/profile_gemms.py --cell lstm --config medium --dtype float64 --repeat 9

A recurrent layer's forward + backward is, in FLOPs, almost all matrix products
(G = 1, 4, 3 gates for RNN, LSTM, GRU; x does not require grad, as in the suite):

    forward   X W_ih^T           (T*B, I) x (I, G*H)    one GEMM, hoisted out of the loop
                                 (the RNN: T products x_t W_ih^T, one per step)
              h_{t-1} W_hh^T     (B, H) x (H, G*H)      T products, one per step
                                 (the LSTM: both halves and the bias as T products
                                 [x_t | h_{t-1} | 1] [W_ih | W_hh | b]^T, (B, I+H+1) x (I+H+1, 4H))
    backward  dA_t W_hh          (B, G*H) x (G*H, H)    T products, one per step
              dW_ih^T = X^T dA   (I, T*B) x (T*B, G*H)  one GEMM over all steps
              dW_hh^T = H^T dA   (H, T*B) x (T*B, G*H)  one GEMM over all steps
                                 (the weight gradients transposed; below 512 rows,
                                 or for an RNN whose I+H is a multiple of 32, the
                                 kernels run dA^T X and dA^T H instead)

This script times the layer (median of --repeat runs, the suite's gc protocol),
then each of those products alone through ``tinybptt.kernels.c.matmul`` at the
same shapes, and prints GFLOP/s for each and the share of the layer's time the
products account for.  What is left over is the gates, the state updates and
the Python around the kernels.  If the products alone take most of the time,
the layer runs at GEMM speed and only a faster GEMM makes it faster.
"""
import argparse
import os
import statistics
import sys
import time

# tinybptt from this checkout (not whichever one an editable install points at)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", default="rnn", choices=("rnn", "lstm", "gru"))
    ap.add_argument("--config", default="large", help="tiny, small, medium, large, long or T,B,I,H")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(args.threads)

    import numpy as np

    import tinybptt
    from tinybptt import bench
    from tinybptt.kernels import c as kc

    tinybptt.set_num_threads(args.threads)
    name, (T, B, I, H) = bench.parse_config(args.config)
    G = {"rnn": 1, "lstm": 4, "gru": 3}[args.cell]
    dt = np.dtype(args.dtype)
    x, params = bench.make_problem(args.cell, T, B, I, H, args.dtype)
    runner = bench.make_runner("tinybptt:sequence", args.cell, x, params)
    runner.step()
    fwd, bwd = [], []
    with bench.gc_protocol() as gcp:
        for _ in range(args.repeat):
            gcp.before_run()
            f, b, _, _ = runner.step()
            fwd.append(f)
            bwd.append(b)
    t_fwd, t_bwd = statistics.median(fwd), statistics.median(bwd)

    rng = np.random.default_rng(0)

    def arr(*shape):
        return rng.standard_normal(shape).astype(dt)

    X, Hs, dA = arr(T * B, I), arr(T * B, H), arr(T * B, G * H)
    W_ih, W_hh = arr(G * H, I), arr(G * H, H)
    h, da = arr(B, H), arr(B, G * H)
    x = arr(B, I)
    xh1, W1 = arr(B, I + H + 1), arr(G * H, I + H + 1)
    if args.cell == "lstm":
        products = [  # (phase, what, (M, N, K), how many, the call)
            ("fwd", "[x|h|1] W^T (per step)", (B, G * H, I + H + 1), T, lambda: kc.matmul(xh1, W1, trans_b=True)),
        ]
    else:
        products = [
            ("fwd", "x_t W_ih^T (per step)", (B, G * H, I), T, lambda: kc.matmul(x, W_ih, trans_b=True))
            if args.cell == "rnn" else
            ("fwd", "X W_ih^T (hoisted)", (T * B, G * H, I), 1, lambda: kc.matmul(X, W_ih, trans_b=True)),
            ("fwd", "h W_hh^T (per step)", (B, G * H, H), T, lambda: kc.matmul(h, W_hh, trans_b=True)),
        ]
    products.append(("bwd", "dA_t W_hh (per step)", (B, H, G * H), T, lambda: kc.matmul(da, W_hh)))
    products += [
        ("bwd", "X^T dA -> dW_ih^T", (I, G * H, T * B), 1, lambda: kc.matmul(X, dA, trans_a=True)),
        ("bwd", "H^T dA -> dW_hh^T", (H, G * H, T * B), 1, lambda: kc.matmul(Hs, dA, trans_a=True)),
    ]
    print("%s %s (T,B,I,H)=%s %s, %d thread(s): layer forward %.2f ms, backward %.2f ms (median of %d)"
          % (args.cell, name, (T, B, I, H), args.dtype, args.threads, 1e3 * t_fwd, 1e3 * t_bwd, args.repeat))
    print("%-4s %-22s %-20s %6s %10s %9s" % ("", "product", "M x N x K", "calls", "ms", "GFLOP/s"))
    spent = {"fwd": 0.0, "bwd": 0.0}
    for phase, what, (M, N, K), calls, call in products:
        call()
        ts = []
        for _ in range(max(3, args.repeat)):
            t0 = time.perf_counter()
            for _ in range(calls):
                call()
            ts.append(time.perf_counter() - t0)
        t = statistics.median(ts)
        spent[phase] += t
        print("%-4s %-22s %-20s %6d %10.2f %9.1f" % (phase, what, "%dx%dx%d" % (M, N, K), calls, 1e3 * t,
                                                    2.0 * M * N * K * calls / t / 1e9))
    for phase, total in (("fwd", t_fwd), ("bwd", t_bwd)):
        print("%s: the products alone %.2f ms = %.0f%% of the layer's %.2f ms"
              % (phase, 1e3 * spent[phase], 100.0 * spent[phase] / total, 1e3 * total))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Quick in-process A/B timing of tinybptt against its peers (a development aid).

``tinybptt bench`` is the measurement of record (one worker process per library,
thread pinning, agreement checks).  This script is the fast loop used while
optimising: every contender of a row lives in THIS process (threads pinned
before any import), they are timed in interleaved rounds, and both the median
and the minimum of the runs are reported, with ratios to the best peer.

    python benchmarks/profile_seq.py --cells lstm --configs tiny,small \
        --contenders seq,torch,jax --rounds 5 --reps 20

Contenders: seq, cell, ops (tinybptt C backend), np (tinybptt NumPy backend),
torch, jax, torch-ops, numpy (tinybptt's NumPy reference kernels called directly, a baseline).
``--profile seq`` runs cProfile over tinybptt's iterations instead of timing.
``--split`` adds, for each tinybptt contender, the median time of one iteration
outside the kernel wrappers (``kernels.backend.seq_forward`` etc., validation
included): what the engine, the layer and the loss cost around the kernels.
``--split --evict 24`` measures that time a second time with 24 MiB streamed through
the caches before every iteration, as a training step's own large arrays do: the same
Python code, run with the interpreter's working set evicted from L1/L2 and the TLB.
"""
import argparse
import os
import sys

# tinybptt from this checkout (not whichever one an editable install points at)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _pin(threads):
    s = str(threads)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = s
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=%s intra_op_parallelism_threads=%d" % (
        "false" if threads == 1 else "true", threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument("--configs", default="tiny,small,medium,long")
    ap.add_argument("--contenders", default="seq,torch,jax")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10, help="timed runs per contender per round")
    ap.add_argument("--budget", type=float, default=1.0, help="max seconds per contender per round")
    ap.add_argument("--profile", default=None, help="cProfile this tinybptt contender (seq/cell/ops)")
    ap.add_argument("--gc-each-run", action="store_true", help="gc.collect() before every run (cold start)")
    ap.add_argument("--ftz", action="store_true", help="tinybptt.set_flush_to_zero(True)")
    ap.add_argument("--split", action="store_true",
                    help="also report each tinybptt contender's median time outside the kernel wrappers")
    ap.add_argument("--evict", type=float, default=0,
                    help="with --split: also measure it with this many MiB streamed through the caches first")
    args = ap.parse_args(argv)
    _pin(args.threads)

    import gc
    import statistics
    import time

    import numpy as np

    import tinybptt
    from tinybptt import bench

    tinybptt.set_num_threads(args.threads)
    if args.ftz:
        tinybptt.set_flush_to_zero(True)
    if any(c in ("torch", "torch-ops") for c in args.contenders.split(",")):
        import torch
        torch.set_num_threads(args.threads)

    names = {"seq": "tinybptt:sequence", "cell": "tinybptt:cell", "ops": "tinybptt:ops",
             "np": "tinybptt:numpy"}
    peers = ("torch", "jax", "torch-ops", "numpy")
    for cell in args.cells.split(","):
        for cfg in args.configs.split(","):
            cname, (T, B, I, H) = bench.parse_config(cfg)
            x, params = bench.make_problem(cell, T, B, I, H, args.dtype)
            runners = {}
            for c in args.contenders.split(","):
                runners[c] = bench.make_runner(names.get(c, c), cell, x, params)
            if args.profile:
                import cProfile
                import pstats
                r = runners[args.profile]
                for _ in range(3):
                    r.step()
                pr = cProfile.Profile()
                n = max(3, int(args.reps))
                pr.enable()
                for _ in range(n):
                    r.step()
                pr.disable()
                print("== cProfile %s %s %s, %d iterations" % (args.profile, cell, cname, n))
                pstats.Stats(pr).sort_stats("tottime").print_stats(25)
                continue
            samples = {c: [] for c in runners}
            losses = {}
            for c, r in runners.items():  # warm-up (JAX compiles here)
                for _ in range(2):
                    _, _, _, h = r.step()
                losses[c] = r.loss_value(h)
            for _ in range(args.rounds):
                for c, r in runners.items():
                    t_start = time.perf_counter()
                    with bench.gc_protocol(args.gc_each_run) as gcp:  # the suite's protocol
                        for _ in range(args.reps):
                            gcp.before_run()
                            _, _, tot, _ = r.step()
                            samples[c].append(1e3 * tot)
                            if time.perf_counter() - t_start > args.budget:
                                break
            med = {c: statistics.median(s) for c, s in samples.items()}
            mn = {c: min(s) for c, s in samples.items()}
            best = [c for c in runners if c in peers and c != "numpy"]
            bmed = min((med[c] for c in best), default=None)
            bmin = min((mn[c] for c in best), default=None)
            print("%s %s %s (T,B,I,H)=%s" % (cell, cname, args.dtype, (T, B, I, H)))
            for c in runners:
                line = "  %-10s median %9.3f ms  min %9.3f ms  n=%3d  loss %.6g" % (
                    c, med[c], mn[c], len(samples[c]), losses[c])
                if bmed and c not in peers:
                    line += "   ratio med %.2fx  min %.2fx" % (med[c] / bmed, mn[c] / bmin)
                print(line)
                if args.split and c not in peers:
                    print("  %-10s outside the kernel wrappers: median %7.1f us of %7.1f us per iteration, "
                          "%.0f minor page faults per iteration"
                          % (c, *_outside_kernels(bench, runners[c], max(200, 20 * args.reps))))
                    if args.evict:
                        print("  %-10s the same after %g MiB through the caches: median %7.1f us of %7.1f us"
                              % (c, args.evict, *_outside_kernels(bench, runners[c], max(200, 20 * args.reps),
                                                                  args.evict)[:2]))
            sys.stdout.flush()
            del runners
            gc.collect()
    np.seterr(all="warn")


def _outside_kernels(bench, runner, n, evict_mib=0):
    """(median us outside the kernel wrappers, median us in all, mean minor page faults) over
    ``n`` iterations of ``runner``; with ``evict_mib``, each iteration starts after that many
    MiB were copied from one array to another (untimed), which leaves the caches cold.

    Each iteration is timed whole (wall clock, garbage collector off as in the timed
    rounds) while ``bench.KernelTimer`` adds up the time spent inside the backend's
    kernel functions; medians, so a preemption by another process rarely counts.
    A large array that comes fresh from the operating system costs a minor page fault
    per 4 KiB page at first touch; their count shows whether an iteration pays that.
    """
    import statistics
    import time

    import numpy as np

    from tinybptt.bench.train_profile import minor_page_faults

    src = np.ones(int(evict_mib * 2 ** 20) // 8)
    dst = np.empty_like(src)
    faults = minor_page_faults()
    outside, total = [], []
    with bench.KernelTimer(runner.kernel_module) as kt, bench.gc_protocol():
        for _ in range(n):
            if evict_mib:
                np.copyto(dst, src)
            in_kernels = kt.seconds["fwd"] + kt.seconds["bwd"]
            t0 = time.perf_counter()
            runner.step()
            dt = time.perf_counter() - t0
            total.append(dt)
            outside.append(dt - (kt.seconds["fwd"] + kt.seconds["bwd"] - in_kernels))
    faults = minor_page_faults() - faults
    return 1e6 * statistics.median(outside), 1e6 * statistics.median(total), faults / n


if __name__ == "__main__":
    main()

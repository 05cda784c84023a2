"""Flush-to-zero on and off: backward time of a long sequence, and how many subnormals it meets.

Vanishing gradients in a long backward pass decay through the subnormal range
(float32 below 1.2e-38, float64 below 2.2e-308), where many CPUs take a slow
microcode path per operation.  ``tinybptt.set_flush_to_zero(True)`` sets the
FTZ/DAZ bits so they become zeros instead -- off by default, because this tool
must be able to show tiny gradients.  This script times the backward pass of a
``mode="sequence"`` layer both ways, in one process, alternating, and reports
how many elements of the per-step gradient trace are subnormal (with FTZ off).

Two losses: ``sum(out**2)`` (the benchmark workload: every step gets a direct
gradient, so little vanishes) and ``sum(out[-1])`` (only the last step: the
gradient must travel back through every step and, with small recurrent weights,
decays through the subnormals to zero).

    python benchmarks/profile_ftz.py --cells lstm,gru,rnn --T 1000 --dtype float32
"""
import argparse
import os
import sys

# tinybptt from this checkout (not whichever one an editable install points at)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument("--T", type=int, default=1000)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--H", type=int, default=64)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--scale", type=float, default=0.5,
                    help="recurrent weights are U(-k, k) * scale, k = 1/sqrt(H): below 1 gradients vanish")
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args(argv)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(k, "1")

    import gc
    import time

    import numpy as np

    import tinybptt
    from tinybptt import nn

    tinybptt.set_num_threads(1)
    dt = np.dtype(args.dtype)
    tiny = np.finfo(dt).tiny
    rng = np.random.default_rng(0)
    print("T=%d B=%d H=%d %s, recurrent weight scale %.2f; backward ms (best of %d), FTZ off / on"
          % (args.T, args.B, args.H, dt, args.scale, args.reps))
    for cell in args.cells.split(","):
        layer = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](args.H, args.H, dtype=dt)
        layer.weight_hh_l0.data *= args.scale
        x = tinybptt.tensor(rng.standard_normal((args.T, args.B, args.H)).astype(dt))
        for loss_name, loss_fn in (("sum(out**2)", lambda o: (o * o).sum()), ("sum(out[-1])", lambda o: o[-1].sum())):
            times = {False: [], True: []}
            subnormal = None
            for rep in range(args.reps):
                for ftz in (False, True):
                    tinybptt.set_flush_to_zero(ftz)
                    try:
                        out, _ = layer(x)
                        loss = loss_fn(out)
                        layer.zero_grad()
                        gc.collect()
                        t0 = time.perf_counter()
                        loss.backward()
                        times[ftz].append(time.perf_counter() - t0)
                        if not ftz and subnormal is None:
                            h = layer.grad_trace.h
                            a = np.abs(h)
                            subnormal = (int(((a > 0) & (a < tiny)).sum()), int((a == 0).sum()), h.size)
                    finally:
                        tinybptt.set_flush_to_zero(False)
            off, on = min(times[False]) * 1e3, min(times[True]) * 1e3
            print("  %-4s %-13s off %8.2f  on %8.2f  (on/off %.2fx)   dL/dh_t elements: %d subnormal, %d zero of %d"
                  % (cell, loss_name, off, on, on / off, subnormal[0], subnormal[1], subnormal[2]))


if __name__ == "__main__":
    main()

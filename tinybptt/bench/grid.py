"""The layer grid and the correctness check: every contender on every (cell, config, dtype, threads).

For each row of the grid the contenders are timed in interleaved rounds
(``timing.measure_row``) by one worker per library family; each reports its
loss and gradient norms, and ``agree_check`` keeps a contender that computed
something else out of the ratios.
"""
import numpy as np

from ..display import Progress
from .problems import (CONFIGS, EXTERNAL_PEERS, INSTALL_HINT, NEEDS, PARAM_NAMES, contenders_for, parse_config,
                       peer_available)
from .timing import measure_row
from .workers import measure_one, pool_for

#: Relative tolerance of the loss / gradient-norm agreement check, per dtype.
AGREE_RTOL = {"float32": 2e-3, "float64": 1e-7}
#: Reference of the agreement check, in order of preference.
REFERENCES = ("torch", "numpy", "jax", "tinybptt:sequence")


def available_peers(requested):
    """(peers to run, notes): the requested peers that are installed, and a note for each missing one."""
    peers, notes = [], []
    for p in requested:
        if p == "numpy" or peer_available(p):
            peers.append(p)
        else:
            notes.append("peer %s skipped: %s is not installed (%s)" % (p, NEEDS[p], INSTALL_HINT))
    return peers, notes


def no_peer_message(peers):
    """The message for a run without any external peer (None when there is one)."""
    if any(p in EXTERNAL_PEERS for p in peers):
        return None
    missing = [p for p in ("torch", "jax") if not peer_available(p)]
    why = ("neither torch nor jax is installed" if len(missing) == 2 else
           "no peer was selected (--peers)" if not missing else "%s is not installed" % missing[0])
    return ("No peer to compare with: %s, so there are no ratios and no target is judged (tinybptt's own NumPy "
            "baseline is not a peer).  To compare, %s." % (why, INSTALL_HINT))


def _row_records(cell, cname, shape, dtype, threads, contenders, skip, got, prog):
    recs = []
    for c in contenders:
        rec = {"cell": cell, "config": cname, "shape": list(shape), "dtype": dtype, "threads": threads,
               "contender": c}
        res = got[c]
        if c in skip:
            rec.update(status="skipped", note=skip[c])
        elif res is None:
            rec.update(status="error", note="not measured")
        elif res.get("ok"):
            rec.update(status="ok")
            rec.update({k: v for k, v in res.items() if k != "ok"})
        else:
            rec.update(status="error", note=res.get("error", "?"))
            prog.write("  %s %s %s: error: %s" % (cell, cname, c, rec["note"]), file=prog.stream)
        recs.append(rec)
    return recs


def _row_request(args, cell, shape, dtype):
    rounds = max(1, args.rounds)
    per_round = lambda n: max(1, -(-n // rounds))  # noqa: E731 - ceil(n / rounds)
    return {"op": "measure", "cell": cell, "shape": list(shape), "dtype": dtype,
            "seed": args.seed, "repeat": per_round(args.repeat), "warmup": args.warmup,
            "budget": args.budget / rounds, "max_iter_s": args.max_iter_s,
            "min_repeat": per_round(min(args.min_repeat, args.repeat)),
            "kernel_split": not args.no_split, "grad_trace": args.grad_trace,
            "gc_each_run": args.gc_each_run}


def run_grid(args, progress_enabled=True):
    """Measure every (threads, dtype, cell, config, contender); returns (results, notes)."""
    peers, notes = available_peers(args.peers)
    contenders = contenders_for(args.modes, args.backends, peers)
    configs = [parse_config(c) for c in args.configs]
    total = len(args.threads) * len(args.dtype) * len(args.cells) * len(configs)
    results = []
    with Progress(total, enabled=progress_enabled and not args.quiet, lines=True) as prog:
        for threads in args.threads:
            with pool_for(args, threads) as pool:
                for dtype in args.dtype:
                    for cell in args.cells:
                        for cname, shape in configs:
                            skip = {c: why for c, why in ((c, _skip_reason(args, c, cname)) for c in contenders)
                                    if why}
                            got = measure_row(pool, contenders, _row_request(args, cell, shape, dtype),
                                              max(1, args.rounds), args.timeout, skip, args.stat,
                                              settle_s=args.settle if threads > 1 else 0.0)
                            results += _row_records(cell, cname, shape, dtype, threads, contenders, skip, got,
                                                    prog)
                            prog.update(desc="%dt %s %s %s" % (threads, dtype, cell, cname))
    agree_check(results)
    return results, notes


def _skip_reason(args, contender, cname):
    if contender == "tinybptt:numpy" and cname in args.skip_numpy_backend:
        return "skipped on %s (NumPy backend too slow for the time budget; --skip-numpy-backend)" % cname
    return None


def rel_err(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def agree_check(results):
    """Mark each result whose loss or gradient norms disagree with the reference contender.

    The reference is the first of REFERENCES that was measured.  Sets
    rec["agree"] to True/False and rec["agree_err"] to the largest relative difference.
    """
    groups = {}
    for r in results:
        if r["status"] == "ok":
            groups.setdefault((r["threads"], r["dtype"], r["cell"], r["config"]), []).append(r)
    for (_, dtype, _, _), rs in groups.items():
        by = {r["contender"]: r for r in rs}
        ref = next((by[c] for c in REFERENCES if c in by), None)
        if ref is None:
            continue
        tol = AGREE_RTOL.get(dtype, 1e-3)
        for r in rs:
            err = rel_err(r["loss"], ref["loss"])
            for n in PARAM_NAMES:
                a, b = r["grad_norms"][n], ref["grad_norms"][n]
                err = max(err, rel_err(a, b) if abs(b) > 1e-30 else abs(a))
            r["agree_ref"], r["agree_err"], r["agree"] = ref["contender"], err, bool(err <= tol)


# --------------------------------------------------------------------------- correctness check (--check)

CHECK_SHAPES = (("tiny", CONFIGS["tiny"]), ("20x3x5x7", (20, 3, 5, 7)))
CHECK_TOL = {"float64": 1e-9, "float32": 1e-4}


def _check_row(dtype, cell, cname, c, got, ref_name):
    r = got[c]
    row = {"dtype": dtype, "cell": cell, "config": cname, "contender": c, "ref": ref_name}
    if not r.get("ok"):
        row.update(status="error", note=r.get("error"))
    elif ref_name is None or c == ref_name:
        row.update(status="reference" if c == ref_name else "no reference", loss=r["loss"])
    else:
        ref = got[ref_name]
        gerr = 0.0
        for n in PARAM_NAMES:
            a, b = np.asarray(r["grads"][n]), np.asarray(ref["grads"][n])
            gerr = max(gerr, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)))
        lerr = rel_err(r["loss"], ref["loss"])
        tol = CHECK_TOL[dtype]
        row.update(status="ok", loss=r["loss"], loss_err=lerr, grad_err=gerr,
                   passed=bool(lerr <= tol and gerr <= tol * 10))
    return row


def run_check(args, progress_enabled=True):
    """Full gradient comparison of every contender with the reference on tiny configs.

    For each cell, float64 and float32, configs tiny and 20x3x5x7: every contender
    returns its loss and all weight gradients for the same weights and input;
    they are compared element by element with torch (or the NumPy reference
    kernels when torch is missing).  Returns rows with the errors and a pass flag.
    """
    peers, _ = available_peers(args.peers)
    contenders = contenders_for(args.modes, args.backends, peers)
    rows = []
    total = len(args.cells) * len(CHECK_SHAPES) * 2 * len(contenders)
    with pool_for(args, args.threads[0]) as pool, \
            Progress(total, enabled=progress_enabled and not args.quiet, lines=True) as prog:
        for dtype in ("float64", "float32"):
            for cell in args.cells:
                for cname, shape in CHECK_SHAPES:
                    got = {}
                    for c in contenders:
                        req = {"op": "measure", "contender": c, "cell": cell, "shape": list(shape), "dtype": dtype,
                               "seed": args.seed + 1, "repeat": 1, "warmup": 1, "min_repeat": 1,
                               "return_grads": True}
                        got[c] = measure_one(pool, req, args.timeout)
                        prog.update(desc="check %s %s %s %s" % (dtype, cell, cname, c))
                    ref_name = next((c for c in ("torch", "numpy") if got.get(c, {}).get("ok")), None)
                    rows += [_check_row(dtype, cell, cname, c, got, ref_name) for c in contenders]
    return rows

"""One training step of an LSTM over a million time steps, in bounded memory.

    taskset -c 1 python benchmarks/million_steps.py                 # the full run (several minutes)
    python benchmarks/million_steps.py --T 100000 --peers-T 10000   # a quick look

The model: ``LSTM(I=2, H=64)`` in float32, batch 1, a linear head on the final
hidden state, loss ``head(h_T)**2``; one step is forward, backward and an Adam
update.  tinybptt runs it under binomial checkpointing
(``nn.revolve.revolve_sequence``, ``return_sequence=False``: only the final
state is returned, so the (T, 1, 64) outputs are never stored).  Then plain
full BPTT -- tinybptt's ``mode="sequence"`` layer, ``torch.nn.LSTM`` and a
``jax.jit(value_and_grad)`` of a ``lax.scan`` LSTM -- at increasing T, until
each stops for memory or time.

Every attempt is its own process (``taskset -c 1`` when available, one
thread), watched by this one: its resident memory (VmRSS, polled every 50 ms)
may not exceed ``--mem-cap`` GiB and its time ``--time-cap`` seconds, or it is
killed.  Before an attempt, the memory growth per time step measured at the
previous two T predicts the need; an attempt predicted above the cap is not
started and reported as "would need X GiB".  Memory is reported as the peak RSS
of the process during the training step (``VmHWM``, reset just before the step
through ``/proc/self/clear_refs``) minus its RSS when the step began (imports,
model and input already made): what the training step itself added.  torch and JAX are tried when installed.

Results: a table on stdout and ``benchmarks/results/million.json`` (the name ``run_all.py`` gives its section).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GiB = 1024 ** 3


# ---------------------------------------------------------------- the worker (one attempt, own process)


def _status_mib(field):
    """``VmRSS`` (resident now) or ``VmHWM`` (its high-water mark) of this process, in MiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise OSError("no %s in /proc/self/status" % field)


def _baseline_mib():
    """Resident memory now, after resetting the high-water mark so that ``_peak_mib`` sees only what follows."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current VmRSS (Linux >= 4.0)
    return _status_mib("VmRSS")


def _peak_mib():
    return _status_mib("VmHWM")


def _timed_step(loss_fn, opt):
    """Time ``loss = loss_fn()``, ``loss.backward()`` and ``opt.step()`` (tinybptt and torch spell them alike)."""
    base = _baseline_mib()
    t0 = time.perf_counter()
    loss = loss_fn()
    t1 = time.perf_counter()
    opt.zero_grad()
    loss.backward()
    t2 = time.perf_counter()
    opt.step()
    t3 = time.perf_counter()
    return dict(loss=float(loss.item()), forward_s=t1 - t0, backward_s=t2 - t1, update_s=t3 - t2, base_mib=base)


def _tinybptt_step(T, budget, segment, I, H):
    import numpy as np
    import tinybptt as tb
    from tinybptt import nn, optim
    from tinybptt.nn.revolve import revolve_sequence
    nn.manual_seed(0)
    lstm = nn.LSTM(I, H, dtype=np.float32)
    lstm.record_grad_trace = False  # a per-step gradient record is O(T) by definition
    head = nn.Linear(H, 1, dtype=np.float32)
    opt = optim.Adam(lstm.parameters() + head.parameters(), lr=1e-3)
    x = tb.tensor(np.random.default_rng(0).standard_normal((T, 1, I)).astype(np.float32))

    def loss():
        if budget:
            _, (h_n, _) = revolve_sequence(lstm, x, budget=budget, segment=segment, return_sequence=False)
        else:
            _, (h_n, _) = lstm(x)
        return (head(h_n[0]) ** 2).sum()

    res = _timed_step(loss, opt)
    if budget:
        st = lstm.checkpoint_stats
        res.update(segment=st.segment, budget=st.budget, n_segments=st.n_segments, steps_computed=st.steps_computed,
                   revolve_peak_bytes=st.peak_bytes)
    return res


def _torch_step(T, I, H):
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(0)
    lstm, head = torch.nn.LSTM(I, H), torch.nn.Linear(H, 1)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=1e-3)
    x = torch.randn(T, 1, I)

    def loss():
        _, (h_n, _) = lstm(x)
        return (head(h_n[0]) ** 2).sum()

    return _timed_step(loss, opt)


def _jax_step(T, I, H):
    """jax.jit(value_and_grad) of a lax.scan LSTM (PyTorch's formulas), then a hand-written Adam update.

    The first call compiles; the step is timed on the second call (``first_call_s`` is the first)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    rng = np.random.default_rng(0)
    k = 1 / np.sqrt(H)
    p = {name: jnp.asarray(rng.uniform(-k, k, shape).astype(np.float32)) for name, shape in
         (("w_ih", (4 * H, I)), ("w_hh", (4 * H, H)), ("b", (4 * H,)), ("head_w", (1, H)), ("head_b", (1,)))}
    x = jnp.asarray(rng.standard_normal((T, 1, I)).astype(np.float32))

    def loss_fn(p, x):
        def step(carry, x_t):
            h, c = carry
            i, f, g, o = jnp.split(x_t @ p["w_ih"].T + h @ p["w_hh"].T + p["b"], 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            return (jax.nn.sigmoid(o) * jnp.tanh(c), c), None
        zero = jnp.zeros((1, H), jnp.float32)
        (h, _), _ = jax.lax.scan(step, (zero, zero), x)
        return ((h @ p["head_w"].T + p["head_b"]) ** 2).sum()

    @jax.jit
    def adam(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        return jax.tree_util.tree_map(lambda p, m, v: p - lr * (m / (1 - b1 ** t)) / (jnp.sqrt(v / (1 - b2 ** t)) + eps),
                                      p, m, v), m, v

    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    zeros = jax.tree_util.tree_map(jnp.zeros_like, p)
    base = _baseline_mib()
    t0 = time.perf_counter()
    loss, g = grad_fn(p, x)
    jax.block_until_ready(adam(p, g, zeros, zeros, 1))
    t1 = time.perf_counter()
    loss, g = grad_fn(p, x)
    jax.block_until_ready(g)
    t2 = time.perf_counter()
    jax.block_until_ready(adam(p, g, zeros, zeros, 1))
    t3 = time.perf_counter()
    return dict(loss=float(loss), forward_s=0.0, backward_s=t2 - t1, update_s=t3 - t2, base_mib=base,
                first_call_s=t1 - t0, note="forward and backward are one jitted call (in backward_s)")


def worker(args):
    sys.path.insert(0, ROOT)  # this checkout's tinybptt, also when the worker is started by hand
    if args.contender == "torch":
        res = _torch_step(args.T, args.I, args.H)
    elif args.contender == "jax":
        res = _jax_step(args.T, args.I, args.H)
    else:
        res = _tinybptt_step(args.T, args.budget if args.contender == "revolve" else 0, args.segment, args.I, args.H)
    res["peak_mib"] = _peak_mib()
    res["added_mib"] = res["peak_mib"] - res["base_mib"]
    res["total_s"] = res["forward_s"] + res["backward_s"] + res["update_s"]
    print("RESULT " + json.dumps(res), flush=True)


# ---------------------------------------------------------------- the parent: attempts under caps


def _vmrss(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def attempt(contender, T, args):
    """Run one attempt in a watched child process; returns a result dict with ``status``."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", contender, "--T", str(T), "--I", str(args.I),
           "--H", str(args.H), "--budget", str(args.budget), "--segment", str(args.segment)]
    if args.cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(args.cpu)] + cmd
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak, status = 0, None
    while proc.poll() is None:
        rss = _vmrss(proc.pid)
        peak = max(peak, rss)
        if rss > args.mem_cap * GiB:
            status = "killed at the %.1f GiB memory cap" % args.mem_cap
        elif time.perf_counter() - start > args.time_cap:
            status = "killed at the %d s time cap" % args.time_cap
        if status:
            proc.kill()
            proc.wait()
            return dict(contender=contender, T=T, status=status, watched_peak_mib=peak / 2 ** 20)
        time.sleep(0.05)
    out, err = proc.communicate()
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (err.strip().splitlines() or ["exit code %d" % proc.returncode])[-1]
        return dict(contender=contender, T=T, status="failed: " + tail, watched_peak_mib=peak / 2 ** 20)
    res = json.loads(lines[-1][len("RESULT "):])
    res.update(contender=contender, T=T, status="ok", watched_peak_mib=peak / 2 ** 20)
    return res


def ladder(contender, Ts, args, results):
    """Attempt increasing T until one fails or is predicted to exceed the memory cap."""
    done = []  # (T, base MiB, added MiB) of the successful attempts
    for T in Ts:
        if done:
            (T1, _, a1), (T2, base, a2) = ([done[0]] + done)[-2:]
            # MiB per step: the slope between the last two attempts (a fixed cost, e.g. compiling, cancels)
            per_step = (a2 - a1) / (T2 - T1) if T2 > T1 else a2 / T2
            need = (base + a2 + per_step * (T - T2)) / 1024.0
            if need > args.mem_cap:
                results.append(dict(contender=contender, T=T, status="not run: would need %.1f GiB" % need,
                                    predicted_gib=need))
                _show(results[-1])
                return
        res = attempt(contender, T, args)
        results.append(res)
        _show(res)
        if res["status"] != "ok":
            return
        done.append((T, res["base_mib"], res["added_mib"]))


def _show(r):
    if r["status"] == "ok":
        fwd = "  (fused)" if "note" in r else "%7.2f s" % r["forward_s"]
        print("%-8s T=%-9d forward %s  backward %7.2f s  update %.3f s  total %7.2f s  step adds %8.1f MiB "
              "(peak RSS %7.1f MiB)" % (r["contender"], r["T"], fwd, r["backward_s"], r["update_s"],
                                        r["total_s"], r["added_mib"], r["peak_mib"]), flush=True)
    else:
        print("%-8s T=%-9d %s" % (r["contender"], r["T"], r["status"]), flush=True)


def markdown(data):
    """The attempts as a Markdown table (for benchmarks/RESULTS.md), from the JSON this script writes."""
    names = {"revolve": "tinybptt, binomial checkpointing (`checkpoint=\"auto\"`)",
             "tinybptt": "tinybptt, full BPTT", "torch": "torch.nn.LSTM", "jax": "JAX, jit(value_and_grad(scan))"}
    lines = ["| contender | T | time of the step | memory the step adds | note |", "|---|---:|---:|---:|---|"]
    for r in data["results"]:
        name = names.get(r["contender"], r["contender"])
        if r["status"] == "ok":
            note = ""
            if r["contender"] == "revolve":
                note = "budget %d states, segment %d, %.2f T steps computed" % (
                    r["budget"], r["segment"], r["steps_computed"] / r["T"])
            lines.append("| %s | %s | %.1f s | %.1f MiB | %s |" % (name, format(r["T"], ","), r["total_s"],
                                                                   r["added_mib"], note))
        else:
            lines.append("| %s | %s | | | %s |" % (name, format(r["T"], ","), r["status"]))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, default=1_000_000, help="steps of the revolve run")
    ap.add_argument("--budget", type=int, default=100, help="stored states of the revolve run")
    ap.add_argument("--segment", type=int, default=100, help="steps per kernel call of the revolve run")
    ap.add_argument("--I", type=int, default=2)
    ap.add_argument("--H", type=int, default=64)
    ap.add_argument("--peers-T", default="10000,100000,300000,600000,1000000,2000000", help="T ladder of the full-BPTT runs")
    ap.add_argument("--peers", default="tinybptt,torch,jax")
    ap.add_argument("--mem-cap", type=float, default=4.0, help="GiB per attempt")
    ap.add_argument("--time-cap", type=int, default=600, help="seconds per attempt")
    ap.add_argument("--cpu", type=int, default=1, help="core to pin every attempt to (taskset)")
    ap.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "million.json"))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        args.contender = args.worker
        return worker(args)
    results = []
    print("LSTM(I=%d, H=%d) float32, B=1, one step = forward + backward + Adam; caps %.1f GiB, %d s per attempt"
          % (args.I, args.H, args.mem_cap, args.time_cap), flush=True)
    res = attempt("revolve", args.T, args)
    results.append(res)
    _show(res)
    Ts = [int(t) for t in args.peers_T.split(",")]
    for peer in args.peers.split(","):
        if peer in ("torch", "jax"):
            try:
                __import__(peer)
            except ImportError:
                print("%s is not installed (pip install %s): not measured" % (peer, peer))
                continue
        ladder(peer, Ts, args, results)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(dict(argv=sys.argv[1:], results=results, date=time.strftime("%Y-%m-%d %H:%M:%S %Z")), f, indent=1)
    print("wrote", args.json)


if __name__ == "__main__":
    main()

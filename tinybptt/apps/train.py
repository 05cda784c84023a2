"""Train a recurrent network on a long-range task and watch its per-step gradients change.

``tinybptt train --task adding --cell lstm --T 100`` is this module's ``main``;
``train(...)`` is the same as a function returning a dict of everything measured.

The model is one recurrent layer (``tinybptt.nn.RNN/LSTM/GRU``, ``mode="sequence"``,
float32 by default: the fast path) and a linear read-out: of the last step for the
adding problem (MSE) and the remember-the-first-word task (cross-entropy), of every
step for the copy-memory task.  Optimiser Adam, gradient-norm clipping.  Test
metrics are computed every ``eval_every`` steps on a fixed test set drawn with a
different seed.  Every ``probe_every`` training steps (and before the first and
after the last), ``||dL/dh_t||`` of the task loss on a fixed probe batch is
recorded for every t (from the layer's ``grad_trace``): the training dynamics of
the gradient's reach, drawn by ``--plot`` as a (training step x time step) heatmap.

Time steps are t = 0..T-1 (``out[t]`` is h_t); the initial state is t = -1, so
each recorded row has T+1 entries, entry k for t = k - 1.
"""
import argparse
import contextlib
import json
import math
import sys
import time

import numpy as np

from . import add_cell_options, add_output_options, cell_list, write_plot
from .. import display, get_num_threads, nn, optim, set_num_threads, tasks
from ..autograd import Tensor, no_grad
from ..inspect import numerics
from ..nn import functional as F

#: The cells a user names on the command line ("rnn" is tanh or relu by --nonlinearity).
CELLS = ("rnn", "lstm", "gru")


def cell_label(cell, nonlinearity="tanh"):
    """How tables name a cell: ``"rnn (tanh)"``, ``"lstm"``, ``"gru"``."""
    return "rnn (%s)" % nonlinearity if cell == "rnn" else cell


def make_layer(cell, input_size, H, dtype=np.float32, mode="sequence", nonlinearity="tanh", forget_bias=None):
    """An ``nn.RNN``/``nn.LSTM``/``nn.GRU`` from a short cell name."""
    if cell == "rnn":
        return nn.RNN(input_size, H, nonlinearity=nonlinearity, dtype=dtype, mode=mode)
    if cell == "lstm":
        return nn.LSTM(input_size, H, dtype=dtype, mode=mode, forget_bias=forget_bias)
    if cell == "gru":
        return nn.GRU(input_size, H, dtype=dtype, mode=mode)
    raise ValueError("unknown cell %r; choose one of %s" % (cell, ", ".join(CELLS)))


class SeqModel(nn.Module):
    """A recurrent layer and a linear read-out for one of ``tinybptt.tasks``."""

    def __init__(self, task, cell, H, dtype=np.float32, mode="sequence", nonlinearity="tanh", forget_bias=None):
        super().__init__()
        info = tasks.TASKS[task]
        self.task, self.cell, self.info = task, cell, info
        self.rnn = make_layer(cell, info.input_size, H, dtype, mode, nonlinearity, forget_bias)
        with np.errstate(over="ignore"):  # Linear casts an uninitialised float64 buffer to float32 first
            self.head = nn.Linear(H, info.output_size, dtype=dtype)
        self.dtype = np.dtype(dtype)

    def forward(self, x, state=None):
        return self.read_out(*self.rnn(x, state))

    def read_out(self, out, final):
        """The prediction from the layer's results (``out``, its final state): of every step's output for
        the copy task, (T*B, C); of the last step's otherwise, (B, output)."""
        if self.info.loss == "ce_all":
            T, B, H = out.shape
            return self.head(out.reshape(T * B, H))  # (T*B, C)
        # The last step's output out[-1] is the top layer's final state h_n[-1], which the layer
        # returns as an output of its own: reading it there, the loss's gradient reaches the
        # backward kernel as dL/dh_n, where out[-1] would scatter it into a (T, B, H) array of
        # zeros first (a training step of the adding problem, T=100, B=32, H=64: RNN 0.1 ms faster,
        # about 7%; LSTM 0.15-0.18 ms)
        h_n = final[0] if self.cell == "lstm" else final
        return self.head(h_n[-1])  # (B, output)

    def loss(self, x, y, state=None):
        """(loss, prediction) of the task on the batch ``x``, ``y``; ``state`` is the layer's initial state."""
        pred = self(x, state)
        if self.info.loss == "mse":
            return F.mse_loss(pred, Tensor(np.asarray(y, dtype=self.dtype))), pred
        target = np.asarray(y).reshape(-1)
        return F.cross_entropy(pred, target), pred

    def metrics(self, x, y):
        """Loss (and accuracy for classification) without building a graph."""
        with no_grad():
            loss, pred = self.loss(x, y)
        m = {"loss": float(loss.item())}
        if self.info.loss != "mse":
            p = np.asarray(pred.data).argmax(axis=-1)
            target = np.asarray(y).reshape(-1)
            if self.info.loss == "ce_all":  # score only the recall phase
                L = 10
                T = np.asarray(y).shape[0]
                mask = (np.arange(T)[:, None] >= T - L) * np.ones_like(np.asarray(y), dtype=bool)
                mask = mask.reshape(-1)
                m["accuracy"] = float(np.mean(p[mask] == target[mask]))
            else:
                m["accuracy"] = float(np.mean(p == target))
        return m


def step_gradient_log10(model, x, y):
    """log10 ||dL/dh_t|| of the task loss (layer 0, whole batch) for t = -1..T-1: entry k is t = k - 1,
    entry 0 the gradient of the (zero) initial state.  The layer records its gradient trace for
    this one backward pass whatever its ``record_grad_trace`` says."""
    T, B = x.shape[0], x.shape[1]
    H = model.rnn.hidden_size
    dt = model.dtype
    h0 = Tensor(np.zeros((1, B, H), dtype=dt), requires_grad=True)
    state = (h0, Tensor(np.zeros((1, B, H), dtype=dt))) if model.cell == "lstm" else h0
    with grad_trace_recording(model.rnn, True):
        loss, _ = model.loss(x, y, state)
    model.zero_grad()
    loss.backward()
    tr = model.rnn.grad_trace.h[0]  # (T, B, H)
    logs = [numerics.log10_norm(h0.grad)] + [numerics.log10_norm(tr[t]) for t in range(T)]
    model.zero_grad()
    return logs


@contextlib.contextmanager
def grad_trace_recording(layer, on):
    """``layer.record_grad_trace`` set to ``on`` inside the block (for the forward passes made
    there: a layer decides at its forward whether that graph records), restored after."""
    was = layer.record_grad_trace
    layer.record_grad_trace = on
    try:
        yield layer
    finally:
        layer.record_grad_trace = was


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def default_probe_every(steps):
    """About 30 probes over a run: every ``steps // 30`` steps (at least every step)."""
    return max(1, steps // 30)


def train(task="adding", cell="lstm", T=100, H=64, batch=32, lr=1e-2, clip=1.0, steps=3000, seed=0,
          eval_every=100, test_size=1000, dtype="float32", mode="sequence", nonlinearity="tanh", forget_bias=None,
          progress=True, log=print, model=None, record_gradients=True, probe_every=None):
    """Train one model; returns a dict (configuration, history, final test metrics, gradient norms).

    ``log`` receives the periodic metric lines (``None`` for silence).  ``model`` may be
    a ``SeqModel`` to continue training.  With ``record_gradients``, ``result["probe"]``
    holds log10 ||dL/dh_t|| on the fixed probe batch (the first ``batch`` test
    sequences) before training and after every ``probe_every`` steps and the last
    (default ``default_probe_every(steps)``; 0: only before and after):
    ``{"every", "steps": [0, N, 2N, ..., steps], "time_steps": [-1, ..., T-1],
    "log10": one row of T+1 values per probe step (None where exactly 0)}``.
    The training steps themselves run without the layer's gradient trace, which
    only the probes read (the layer's own setting is restored at the end).
    """
    if task not in tasks.TASKS:
        raise ValueError("train: unknown task %r; choose one of %s" % (task, sorted(tasks.TASKS)))
    dt = np.dtype(dtype)
    if model is None:
        nn.manual_seed(seed)
        model = SeqModel(task, cell, H, dt, mode, nonlinearity, forget_bias)
    rng = np.random.default_rng(seed)
    test = tasks.make_batch(task, T, test_size, np.random.default_rng(seed + 10_000), dtype=dt)
    result = _new_result(task, cell, T, H, batch, lr, clip, steps, seed, eval_every, test_size, dt, mode,
                         nonlinearity, forget_bias)
    every = default_probe_every(steps) if probe_every is None else int(probe_every)
    probe = _Probe(model, test, batch, task, T, every) if record_gradients else None
    _probe_at(probe, 0)
    loop = _Loop(model, lr, clip)  # (its clock starts here: the first test evaluation counts)
    result["history"].append(_history_entry(0, None, None, 0.0, model.metrics(*test)))
    name = cell_label(cell, nonlinearity)
    with display.Progress(steps, desc="%s %s T=%d" % (task, name, T), enabled=progress) as bar, \
            grad_trace_recording(model.rnn, False):
        for step in range(1, steps + 1):
            lv = loop.step(*tasks.make_batch(task, T, batch, rng, dtype=dt))
            bar.update(1, loss="%.4f" % lv)
            if every and step % every == 0:
                _probe_at(probe, step)
            if step % eval_every == 0 or step == steps:
                rec = loop.evaluate(step, test)
                result["history"].append(rec)
                if log is not None:
                    msg = _log_line(name, rec)
                    bar.write(msg) if progress else log(msg)
    result["train_seconds"] = time.time() - loop.t0
    result["final"] = {k: v for k, v in result["history"][-1].items() if k.startswith("test_")}
    _probe_at(probe, steps)
    if probe is not None:
        result["probe"] = probe.record
        result["grad_log10_before"], result["grad_log10_after"] = probe.record["log10"][0], probe.record["log10"][-1]
    result["model"] = model
    return result


def _new_result(task, cell, T, H, batch, lr, clip, steps, seed, eval_every, test_size, dt, mode, nonlinearity,
                forget_bias):
    """``train``'s result before training: the configuration, the task's baseline, an empty history."""
    info = tasks.TASKS[task]
    return {
        "config": {"task": task, "cell": cell, "T": T, "H": H, "batch": batch, "lr": lr, "clip": clip,
                   "steps": steps, "seed": seed, "eval_every": eval_every, "test_size": test_size, "dtype": str(dt),
                   "mode": mode, "nonlinearity": nonlinearity if cell == "rnn" else None,
                   "forget_bias": forget_bias if cell == "lstm" else None, "optimizer": "adam"},
        "baseline": info.baseline(T), "baseline_name": info.baseline_name, "history": [],
    }


class _Probe:
    """The gradient probe: log10 ||dL/dh_t|| on a fixed batch of the test set, at chosen steps."""

    def __init__(self, model, test, batch, task, T, every):
        x_test, y_test = test
        self.model = model
        self.x, self.y = x_test[:, :batch], (y_test[:batch] if task != "copy" else y_test[:, :batch])
        self.record = {"every": every, "steps": [], "time_steps": list(range(-1, T)), "log10": []}

    def at(self, step):
        """Probe after ``step`` training steps (once per step)."""
        if not self.record["steps"] or self.record["steps"][-1] != step:
            self.record["steps"].append(step)
            self.record["log10"].append([_clean(v) for v in step_gradient_log10(self.model, self.x, self.y)])


def _probe_at(probe, step):
    if probe is not None:
        probe.at(step)


class _Loop:
    """One model's training steps (Adam, gradient-norm clipping) and the running mean of their losses."""

    def __init__(self, model, lr, clip):
        self.model, self.clip = model, clip
        self.params = model.parameters()
        self.opt = optim.Adam(self.params, lr=lr)
        self.run_loss, self.run_n, self.gnorm = 0.0, 0, None
        self.t0 = time.time()

    def step(self, x, y):
        """One training step on the batch; returns its loss."""
        loss, _ = self.model.loss(x, y)
        self.opt.zero_grad()
        loss.backward()
        if self.clip:
            self.gnorm = nn.utils.clip_grad_norm_(self.params, self.clip)
        else:
            self.gnorm = math.sqrt(sum(float(np.sum(np.square(p.grad, dtype=np.float64)))
                                       for p in self.params if p.grad is not None))
        self.opt.step()
        lv = float(loss.item())
        self.run_loss += lv
        self.run_n += 1
        return lv

    def evaluate(self, step, test):
        """The history entry after ``step`` steps: the mean training loss since the last one, test metrics."""
        rec = _history_entry(step, self.run_loss / self.run_n, float(self.gnorm), time.time() - self.t0,
                             self.model.metrics(*test))
        self.run_loss, self.run_n = 0.0, 0
        return rec


def _history_entry(step, train_loss, grad_norm, seconds, metrics):
    return {"step": step, "train_loss": train_loss, "grad_norm": grad_norm, "time": seconds,
            **{"test_" + k: v for k, v in metrics.items()}}


def _log_line(name, rec):
    return "%-8s step %5d  train %.4f  test %.4f%s  |grad| %.3g  %.0fs" % (
        name, rec["step"], rec["train_loss"], rec["test_loss"],
        "  acc %.3f" % rec["test_accuracy"] if "test_accuracy" in rec else "", rec["grad_norm"], rec["time"])


def summary_table(results):
    """A table comparing several ``train`` results (one row per cell)."""
    rows = []
    classify = bool(results) and tasks.TASKS[results[0]["config"]["task"]].loss != "mse"
    for r in results:
        c = r["config"]
        name = cell_label(c["cell"], c["nonlinearity"])
        f = r["final"]
        b = r.get("grad_log10_before")
        a = r.get("grad_log10_after")

        def ratio(g):
            if not g or g[-1] is None:
                return "-"
            if g[0] is None:
                return "0 (underflow)"
            return numerics.fmt_pow10(g[0] - g[-1])
        acc = ["%.3f" % f["test_accuracy"] if "test_accuracy" in f else "-"] if classify else []
        rows.append([name, "%.4f" % f["test_loss"]] + acc +
                    ["%.4f" % r["baseline"], ratio(b), ratio(a), "%.0f s" % r["train_seconds"]])
    loss = "test CE" if classify else "test MSE"
    headers = ["cell", loss] + (["accuracy"] if classify else []) + [
        "baseline", "|dL/dh_-1|/|dL/dh_T-1| before", "after", "train time"]
    return display.format_table(headers, rows, align="l" + "r" * (len(headers) - 1))


def gradient_sparklines(result, width=64):
    """Two sparklines of log10 ||dL/dh_t|| on the probe batch, before and after training, on one scale."""
    c = result["config"]
    b, a = result["grad_log10_before"], result["grad_log10_after"]
    vals = [v for v in b + a if v is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0, 0)
    width = min(width, c["T"] + 1)
    lines = ["%s: log10 ||dL/dh_t|| on a probe batch, t = -1 .. %d (shared scale %s .. %s)" % (
        cell_label(c["cell"], c["nonlinearity"]), c["T"] - 1, numerics.fmt_pow10(lo), numerics.fmt_pow10(hi))]
    for what, g in (("before", b), ("after", a)):
        lines.append("  %-6s  %s" % (what, display.sparkline([v if v is not None else float("-inf") for v in g],
                                                             lo, hi, width)))
    return "\n".join(lines)


def probe_heatmap(result, max_rows=8, width=64, color=None):
    """Terminal text: log10 ||dL/dh_t|| on the probe batch, one row per recorded training step
    (at most ``max_rows``, evenly spaced, always the first and last), t = -1 at the left."""
    pr = result["probe"]
    n = len(pr["steps"])
    m = min(max_rows, n)
    pick = sorted({round(i * (n - 1) / max(m - 1, 1)) for i in range(m)})
    rows = [[v if v is not None else float("-inf") for v in pr["log10"][i]] for i in pick]
    c = result["config"]
    head = "%s: log10 ||dL/dh_t|| on the probe batch while training (rows: training step; t = -1 .. %d left to right)" \
        % (cell_label(c["cell"], c["nonlinearity"]), c["T"] - 1)
    return head + "\n" + display.heatmap(rows, labels=["step %d" % pr["steps"][i] for i in pick],
                                          width=min(width, c["T"] + 1), color=color)


def plot_probe(results, path):
    """The (training step x time step) heatmap of log10 ||dL/dh_t|| on the probe batch, one panel
    per result, on one colour scale: vanishing seen to appear or heal as the network learns."""
    from ..inspect.plot import figure

    grids = [np.array([[np.nan if v is None else v for v in row] for row in r["probe"]["log10"]]) for r in results]
    fin = np.concatenate([g[np.isfinite(g)] for g in grids])
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
    fig, axes = figure(4.6 * len(results) + 1.2, 4.4, dpi=140, ncols=len(results))
    axes = np.atleast_1d(axes)
    for ax, r, g in zip(axes, results, grids):
        c, st = r["config"], r["probe"]["steps"]
        im = ax.imshow(np.ma.masked_invalid(g), aspect="auto", origin="lower", vmin=lo, vmax=hi, cmap="viridis",
                       interpolation="nearest", extent=(-1.5, c["T"] - 0.5, -0.5, len(st) - 0.5))
        ticks = sorted({0, len(st) // 2, len(st) - 1})
        ax.set_yticks(ticks)
        ax.set_yticklabels([str(st[i]) for i in ticks])
        ax.set_xlabel("time step t (-1: initial state)")
        ax.set_title("%s, %s T=%d" % (cell_label(c["cell"], c["nonlinearity"]), c["task"], c["T"]), fontsize=10)
    axes[0].set_ylabel("training step")
    fig.colorbar(im, ax=list(axes), pad=0.01, fraction=0.04).set_label(r"$\log_{10}\|\partial L/\partial h_t\|$"
                                                                      " on the probe batch")
    fig.savefig(path)
    return path


# --------------------------------------------------------------------------- command line


def build_parser(parser=None):
    """The options of ``tinybptt train`` (on ``parser``, e.g. a sub-command's, or a new one)."""
    p = parser or argparse.ArgumentParser(prog="tinybptt train")
    p.description = ("Train a recurrent network on a long-range task (Adam, gradient clipping, float32 "
                     "sequence mode), with periodic test metrics and the per-step gradient norms "
                     "||dL/dh_t|| before and after training. Several cells (--cell rnn,lstm,gru) give a "
                     "comparison table.")
    p.add_argument("--task", default="adding", choices=sorted(tasks.TASKS),
                   help="adding (MSE; baseline 1/6), copy (copy-memory), first (remember the first word)")
    p.add_argument("--cell", default="lstm", help="rnn, lstm, gru, or a comma-separated list (default lstm)")
    p.add_argument("--T", type=int, default=100, help="sequence length / delay (default 100)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping threshold, 0 for none (default 1)")
    p.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--eval-every", type=int, default=100, help="test metrics every N steps (default 100)")
    p.add_argument("--test-size", type=int, default=1000, help="test sequences (default 1000)")
    p.add_argument("--probe-every", type=int, default=None,
                   help="record ||dL/dh_t|| on a fixed probe batch every N steps (default: steps/30, about 30 "
                        "probes; 0: only before and after training)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw the (training step x time step) heatmap of log10 ||dL/dh_t|| (matplotlib)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads the C kernels may split a large matrix product over (tinybptt.set_num_threads; "
                        "default 1). At the default H=64 nothing is large enough to split; from H of a few "
                        "hundred two threads pay, when both cores are idle")
    add_cell_options(p, dtype="float32")
    add_output_options(p, json_help="write configuration, history, final metrics and the probe record "
                                    "of ||dL/dh_t|| (time steps t = -1..T-1)")
    return p


def main(argv=None):
    """``tinybptt train [options]``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cells = cell_list(args.cell)
    bad = [c for c in cells if c not in CELLS]
    if bad or not cells:
        print("tinybptt train: unknown cell %s; choose from %s" % (", ".join(bad) or "''", ", ".join(CELLS)),
              file=sys.stderr)
        return 2
    threads_before = get_num_threads()
    try:
        set_num_threads(args.threads)  # (its own check says what a thread count may be)
    except ValueError as exc:
        parser.error("--threads: %s" % exc)
    try:
        return _run(args, cells)
    finally:
        set_num_threads(threads_before)


def _run(args, cells):
    """Train each cell of ``cells`` as ``args`` say, then print and write what the options ask for."""
    results = []
    for cell in cells:
        results.append(train(task=args.task, cell=cell, T=args.T, H=args.H, batch=args.batch, lr=args.lr,
                             clip=args.clip, steps=args.steps, seed=args.seed, eval_every=args.eval_every,
                             test_size=args.test_size, dtype=args.dtype, nonlinearity=args.nonlinearity,
                             forget_bias=args.forget_bias, progress=not args.quiet,
                             log=None if args.quiet else print, probe_every=args.probe_every))
        print(gradient_sparklines(results[-1]))
        print(probe_heatmap(results[-1]))
    print()
    print("%s, T=%d, H=%d, batch %d, Adam lr %g, clip %g, %d steps, %s, seed %d%s" % (
        args.task, args.T, args.H, args.batch, args.lr, args.clip, args.steps, args.dtype, args.seed,
        ", %d threads" % args.threads if args.threads > 1 else ""))
    print(summary_table(results))
    if args.json:
        out = [{k: v for k, v in r.items() if k != "model"} for r in results]
        with open(args.json, "w") as f:
            json.dump(out if len(out) > 1 else out[0], f, indent=1)
        print("wrote %s" % args.json)
    if args.plot:
        write_plot(lambda path: plot_probe(results, path), args.plot)
    return 0

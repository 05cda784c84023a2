"""Train a recurrent network on a long-range task and watch its per-step gradients change.

``tinybptt train --task adding --cell lstm --T 100`` is this module's ``main``;
``train(...)`` is the same as a function returning a dict of everything measured.

The model is one recurrent layer (``tinybptt.nn.RNN/LSTM/GRU``, ``mode="sequence"``,
float32 by default: the fast path) and a linear read-out: of the last step for the
adding problem (MSE) and the remember-the-first-word task (cross-entropy), of every
step for the copy-memory task.  Optimiser Adam, gradient-norm clipping.  Test
metrics are computed every ``eval_every`` steps on a fixed test set drawn with a
different seed.  Before and after training, ``dL/dh_t`` of the task loss on a fixed
probe batch is recorded for every t (from the layer's ``grad_trace``).
"""
import math
import time

import numpy as np

from .. import nn, optim, tasks
from ..autograd import Tensor, no_grad
from ..inspect import numerics
from ..nn import functional as F

CELLS = ("rnn", "lstm", "gru")


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

    def forward(self, x):
        res = self.rnn(x)
        out = res[0]
        if self.info.loss == "ce_all":
            T, B, H = out.shape
            return self.head(out.reshape(T * B, H))  # (T*B, C)
        return self.head(out[-1])  # (B, output)

    def loss(self, x, y):
        pred = self(x)
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
    """log10 ||dL/dh_t|| of the task loss for t = 1..T (layer 0, whole batch), plus log10 ||dL/dh_0||."""
    T, B = x.shape[0], x.shape[1]
    H = model.rnn.hidden_size
    dt = model.dtype
    h0 = Tensor(np.zeros((1, B, H), dtype=dt), requires_grad=True)
    state = (h0, Tensor(np.zeros((1, B, H), dtype=dt))) if model.cell == "lstm" else h0
    out = model.rnn(x, state)[0]
    if model.info.loss == "ce_all":
        pred = model.head(out.reshape(T * B, H))
        loss = F.cross_entropy(pred, np.asarray(y).reshape(-1))
    else:
        pred = model.head(out[-1])
        loss = (F.mse_loss(pred, Tensor(np.asarray(y, dtype=dt))) if model.info.loss == "mse"
                else F.cross_entropy(pred, np.asarray(y).reshape(-1)))
    model.zero_grad()
    loss.backward()
    tr = model.rnn.grad_trace.h[0]  # (T, B, H)
    logs = [numerics.log10_norm(h0.grad)] + [numerics.log10_norm(tr[t]) for t in range(T)]
    model.zero_grad()
    return logs


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def train(task="adding", cell="lstm", T=100, H=64, batch=32, lr=1e-2, clip=1.0, steps=3000, seed=0,
          eval_every=100, test_size=1000, dtype="float32", mode="sequence", nonlinearity="tanh", forget_bias=None,
          progress=True, log=print, model=None, record_gradients=True):
    """Train one model; returns a dict (configuration, history, final test metrics, gradient norms).

    ``log`` receives the periodic metric lines (``None`` for silence).  ``model`` may be
    a ``SeqModel`` to continue training.
    """
    from ..display import Progress

    if task not in tasks.TASKS:
        raise ValueError("train: unknown task %r; choose one of %s" % (task, sorted(tasks.TASKS)))
    dt = np.dtype(dtype)
    if model is None:
        nn.manual_seed(seed)
        model = SeqModel(task, cell, H, dt, mode, nonlinearity, forget_bias)
    params = model.parameters()
    opt = optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    x_test, y_test = tasks.make_batch(task, T, test_size, np.random.default_rng(seed + 10_000), dtype=dt)
    x_probe, y_probe = x_test[:, :batch], y_test[:batch] if task != "copy" else y_test[:, :batch]
    info = tasks.TASKS[task]
    result = {
        "config": {"task": task, "cell": cell, "T": T, "H": H, "batch": batch, "lr": lr, "clip": clip,
                   "steps": steps, "seed": seed, "eval_every": eval_every, "test_size": test_size, "dtype": str(dt),
                   "mode": mode, "nonlinearity": nonlinearity if cell == "rnn" else None,
                   "forget_bias": forget_bias if cell == "lstm" else None, "optimizer": "adam"},
        "baseline": info.baseline(T), "baseline_name": info.baseline_name, "history": [],
    }
    if record_gradients:
        result["grad_log10_before"] = [_clean(v) for v in step_gradient_log10(model, x_probe, y_probe)]
    t0 = time.time()
    first = model.metrics(x_test, y_test)
    result["history"].append({"step": 0, "train_loss": None, "grad_norm": None, "time": 0.0,
                              **{"test_" + k: v for k, v in first.items()}})
    run_loss, run_n = 0.0, 0
    name = cell if cell != "rnn" else "rnn(%s)" % nonlinearity
    with Progress(steps, desc="%s %s T=%d" % (task, name, T), enabled=progress) as bar:
        for step in range(1, steps + 1):
            x, y = tasks.make_batch(task, T, batch, rng, dtype=dt)
            loss, _ = model.loss(x, y)
            opt.zero_grad()
            loss.backward()
            gnorm = nn.utils.clip_grad_norm_(params, clip) if clip else math.sqrt(
                sum(float(np.sum(np.square(p.grad, dtype=np.float64))) for p in params if p.grad is not None))
            opt.step()
            lv = float(loss.item())
            run_loss += lv
            run_n += 1
            bar.update(1, loss="%.4f" % lv)
            if step % eval_every == 0 or step == steps:
                m = model.metrics(x_test, y_test)
                rec = {"step": step, "train_loss": run_loss / run_n, "grad_norm": float(gnorm),
                       "time": time.time() - t0, **{"test_" + k: v for k, v in m.items()}}
                result["history"].append(rec)
                run_loss, run_n = 0.0, 0
                if log is not None:
                    msg = "%-8s step %5d  train %.4f  test %.4f%s  |grad| %.3g  %.0fs" % (
                        name, step, rec["train_loss"], m["loss"],
                        "  acc %.3f" % m["accuracy"] if "accuracy" in m else "", gnorm, rec["time"])
                    bar.write(msg) if progress else log(msg)
    result["train_seconds"] = time.time() - t0
    final = result["history"][-1]
    result["final"] = {k: v for k, v in final.items() if k.startswith("test_")}
    if record_gradients:
        result["grad_log10_after"] = [_clean(v) for v in step_gradient_log10(model, x_probe, y_probe)]
    result["model"] = model
    return result


def summary_table(results):
    """A table comparing several ``train`` results (one row per cell)."""
    from ..display import format_table

    rows = []
    classify = bool(results) and tasks.TASKS[results[0]["config"]["task"]].loss != "mse"
    for r in results:
        c = r["config"]
        name = c["cell"] if c["cell"] != "rnn" else "rnn (%s)" % c["nonlinearity"]
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
        "baseline", "|dL/dh_0|/|dL/dh_T| before", "after", "train time"]
    return format_table(headers, rows, align="l" + "r" * (len(headers) - 1))

"""The BPTT benchmark suite: tinybptt against PyTorch, JAX and NumPy, side by side.

``tinybptt bench`` (or ``python -m tinybptt.bench``) times the workload of
DESIGN.md "Measuring performance" -- forward + backward of a one-layer recurrent
network, loss ``sum(out**2)`` over all outputs, the input not requiring grad,
zero-grad included, median of repeated runs after warm-up -- for every

    cell (lstm, gru, rnn) x config (T, B, I, H) x dtype x thread count

and every *contender*:

    tinybptt:sequence  tinybptt.nn.<CELL>(mode="sequence"), C backend
    tinybptt:cell      mode="cell" (one fused step node per time step), C backend
    tinybptt:ops       mode="ops" (one graph node per primitive op), C backend
    tinybptt:numpy     mode="sequence" on the NumPy reference backend
    torch              torch.nn.LSTM / GRU / RNN
    jax                jax.jit(jax.value_and_grad(loss)) over lax.scan of the same cell
    torch-ops          a PyTorch eager Python loop of primitive ops (the op-level peer)
    numpy              a hand-written NumPy BPTT (forward loop, backward loop, weight
                       gradients as one GEMM over all steps)

How the measurement is kept fair
--------------------------------
* Every contender runs in a worker subprocess started with ``OMP_NUM_THREADS``,
  ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` (and XLA's flags) set *before*
  NumPy, PyTorch or JAX is imported; the workers also call
  ``torch.set_num_threads`` / ``tinybptt.set_num_threads``.  One worker per
  library family (tinybptt+NumPy, PyTorch, JAX) stays alive for a whole thread
  count, and the parent asks each in turn to time the same (cell, config): the
  contenders of one row are measured within seconds of each other, in one run.
  A worker is idle (blocked on a pipe) while another one measures.
* Every contender gets the same weights and input (generated from one seed with
  NumPy, in PyTorch's parameter names and gate order) and reports its loss and
  the norms of its weight gradients; the parent compares them with the
  reference peer and marks any disagreement (``!``) and leaves that contender
  out of "best peer".  ``--check`` compares full gradients element by element.
* Forward and backward are timed separately (JAX: the jitted loss alone is
  "forward", value_and_grad minus it is "backward").  For tinybptt, extra runs
  with every ``tinybptt.kernels.backend`` function wrapped in a timer split the
  step into kernel time and Python/graph overhead.

Ratios (tinybptt / best peer) are what matters on a shared, noisy machine; the
targets of issue 5 are shown as pass/fail columns.
"""
import argparse
import datetime
import gc
import importlib.util
import json
import math
import os
import platform
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

# --------------------------------------------------------------------------- grid definitions

#: (T, B, I, H) of the standard configurations (DESIGN.md "Measuring performance").
CONFIGS = {
    "tiny": (50, 1, 32, 32),
    "small": (100, 16, 64, 64),
    "medium": (100, 32, 256, 256),
    "large": (100, 64, 512, 512),
    "long": (1000, 8, 64, 64),
}
#: Gates per cell: the G of the shape letters.
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
CELLS = ("lstm", "gru", "rnn")
MODES = ("sequence", "cell", "ops")
PEERS = ("torch", "jax", "torch-ops", "numpy")
#: Short column names for the tables.
SHORT = {
    "tinybptt:sequence": "seq",
    "tinybptt:cell": "cell",
    "tinybptt:ops": "ops",
    "tinybptt:numpy": "np-backend",
    "torch": "torch",
    "jax": "jax",
    "torch-ops": "torch-ops",
    "numpy": "numpy-bptt",
}
#: Which worker process family runs a contender.
FAMILY = {"torch": "torch", "torch-ops": "torch", "jax": "jax", "numpy": "tinybptt"}
#: Python packages a peer needs (checked without importing them in the parent).
NEEDS = {"torch": "torch", "torch-ops": "torch", "jax": "jax", "numpy": "numpy"}

#: issue 5 targets: mode="sequence" time / best peer time, per config (default 0.8).
SEQ_TARGET = {"large": 1.1}
SEQ_TARGET_DEFAULT = 0.8
#: mode="ops" time / PyTorch eager op loop time.
OPS_TARGET = 1.0
#: Single-thread GEMM rate used for the FLOP floor when no --gemm run measured one
#: (DESIGN.md: MKL through torch.matmul on the development machine), GFLOP/s.
FLOOR_GFLOPS = {"float32": 135.0, "float64": 66.0}

#: A ratio is marked noisy (``~``) when either side's timed runs have an interquartile range
#: above this fraction of their median.
NOISY_SPREAD = 0.5

#: Relative tolerance of the loss / gradient-norm agreement check, per dtype.
AGREE_RTOL = {"float32": 2e-3, "float64": 1e-7}


def is_tinybptt(contender):
    return contender.startswith("tinybptt:")


def seq_target(config):
    return SEQ_TARGET.get(config, SEQ_TARGET_DEFAULT)


def parse_config(name):
    """``"small"`` or ``"100x16x64x64"`` (T x B x I x H) -> (name, (T, B, I, H))."""
    if name in CONFIGS:
        return name, CONFIGS[name]
    parts = name.lower().replace(",", "x").split("x")
    if len(parts) == 4 and all(p.isdigit() and int(p) > 0 for p in parts):
        return name, tuple(int(p) for p in parts)
    raise ValueError("bench: unknown config %r; use one of %s or TxBxIxH such as 100x16x64x64"
                     % (name, ", ".join(CONFIGS)))


def workload_flops(cell, T, B, I, H):
    """GEMM FLOPs of one forward + backward (input not requiring grad).

    forward  2*T*B*G*H*(I + H)   (input and recurrent projections)
    backward 2*T*B*G*H*(I + 2H)  (dW_ih, dW_hh and dh = dgates @ W_hh; no dx)
    Elementwise work is O(T*B*G*H) and left out.
    """
    G = GATES[cell]
    return 2.0 * T * B * G * H * (I + H) + 2.0 * T * B * G * H * (I + 2 * H)


# --------------------------------------------------------------------------- the shared problem


def make_problem(cell, T, B, I, H, dtype="float32", seed=0):
    """Input and weights every contender uses, in PyTorch's names, shapes and gate order.

    Weights are uniform in (-1/sqrt(H), 1/sqrt(H)) like ``torch.nn``; the input is
    standard normal.  Generated in float64 and cast, so every process builds the
    very same arrays from the same seed.
    """
    G = GATES[cell]
    rng = np.random.default_rng(seed)
    k = 1.0 / math.sqrt(H)
    params = {
        "weight_ih_l0": rng.uniform(-k, k, (G * H, I)),
        "weight_hh_l0": rng.uniform(-k, k, (G * H, H)),
        "bias_ih_l0": rng.uniform(-k, k, (G * H,)),
        "bias_hh_l0": rng.uniform(-k, k, (G * H,)),
    }
    x = rng.standard_normal((T, B, I))
    dt = np.dtype(dtype)
    return x.astype(dt), {n: p.astype(dt) for n, p in params.items()}


PARAM_NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


# --------------------------------------------------------------------------- hand-written NumPy BPTT (a peer)


def _sigmoid(v):
    return 0.5 * (np.tanh(0.5 * v) + 1.0)  # overflow-free logistic


class NumpyBPTT:
    """Forward and backward through time written out by hand in NumPy.

    The input projection of all T steps is one GEMM; the backward loop only
    propagates dh (and dc); the weight gradients are one GEMM over all steps.
    It is a peer and, in the tests, an oracle independent of tinybptt's engine.
    """

    def __init__(self, cell, params):
        self.cell = cell
        self.p = params
        self.grads = {n: np.zeros_like(v) for n, v in params.items()}

    def forward(self, x):
        """out (T, B, H) and the loss sum(out**2); keeps what backward needs."""
        cell, p = self.cell, self.p
        T, B, I = x.shape
        H = p["weight_hh_l0"].shape[1]
        dt = x.dtype
        wih, whh, bih, bhh = p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"]
        xp = (x.reshape(T * B, I) @ wih.T).reshape(T, B, -1) + bih  # (T, B, G*H)
        if cell != "gru":
            xp += bhh
        hs = np.zeros((T + 1, B, H), dtype=dt)  # hs[0] = h_0 = 0
        if cell == "lstm":
            acts = np.empty((T, B, 4 * H), dtype=dt)
            cs = np.zeros((T + 1, B, H), dtype=dt)
            tcs = np.empty((T, B, H), dtype=dt)
            for t in range(T):
                a = xp[t] + hs[t] @ whh.T
                acts[t, :, :2 * H] = _sigmoid(a[:, :2 * H])
                acts[t, :, 2 * H:3 * H] = np.tanh(a[:, 2 * H:3 * H])
                acts[t, :, 3 * H:] = _sigmoid(a[:, 3 * H:])
                i, f, g, o = np.split(acts[t], 4, axis=1)
                cs[t + 1] = f * cs[t] + i * g
                tcs[t] = np.tanh(cs[t + 1])
                hs[t + 1] = o * tcs[t]
            self.saved = (x, hs, acts, cs, tcs)
        elif cell == "gru":
            acts = np.empty((T, B, 3 * H), dtype=dt)  # r, z, n
            hns = np.empty((T, B, H), dtype=dt)  # W_hn h + b_hn
            for t in range(T):
                hp = hs[t] @ whh.T + bhh
                rz = _sigmoid(xp[t, :, :2 * H] + hp[:, :2 * H])
                acts[t, :, :2 * H] = rz
                r, z = rz[:, :H], rz[:, H:]
                hns[t] = hp[:, 2 * H:]
                n = np.tanh(xp[t, :, 2 * H:] + r * hns[t])
                acts[t, :, 2 * H:] = n
                hs[t + 1] = (1 - z) * n + z * hs[t]
            self.saved = (x, hs, acts, hns)
        else:
            for t in range(T):
                hs[t + 1] = np.tanh(xp[t] + hs[t] @ whh.T)
            self.saved = (x,hs)
        out = hs[1:]
        return out, float(np.sum(out * out))

    def backward(self):
        """Gradients of sum(out**2) into self.grads (zeroed first)."""
        cell, p = self.cell, self.p
        x, hs = self.saved[0], self.saved[1]
        T, B, I = x.shape
        H = hs.shape[2]
        whh = p["weight_hh_l0"]
        dout = 2 * hs[1:]
        dh = np.zeros((B, H), dtype=x.dtype)
        G = GATES[cell]
        dA = np.empty((T, B, G * H), dtype=x.dtype)  # d loss / d pre-activations (input side)
        if cell == "lstm":
            _, _, acts, cs, tcs = self.saved
            dc = np.zeros_like(dh)
            for t in range(T - 1, -1, -1):
                dh = dh + dout[t]
                i, f, g, o = np.split(acts[t], 4, axis=1)
                dc = dc + dh * o * (1 - tcs[t] * tcs[t])
                da = dA[t]
                da[:, :H] = dc * g * i * (1 - i)
                da[:, H:2 * H] = dc * cs[t] * f * (1 - f)
                da[:, 2 * H:3 * H] = dc * i * (1 - g * g)
                da[:, 3 * H:] = dh * tcs[t] * o * (1 - o)
                dc = dc * f
                dh = da @ whh
            dAh = dA
        elif cell == "gru":
            _, _, acts, hns = self.saved
            dAh = np.empty_like(dA)  # the recurrent side differs in the n gate: r * da_n
            for t in range(T - 1, -1, -1):
                dh = dh + dout[t]
                r, z, n = acts[t, :, :H], acts[t, :, H:2 * H], acts[t, :, 2 * H:]
                dn = dh * (1 - z) * (1 - n * n)
                dA[t, :, :H] = dn * hns[t] * r * (1 - r)
                dA[t, :, H:2 * H] = dh * (hs[t] - n) * z * (1 - z)
                dA[t, :, 2 * H:] = dn
                dAh[t, :, :2 * H] = dA[t, :, :2 * H]
                dAh[t, :, 2 * H:] = dn * r
                dh = dh * z + dAh[t] @ whh
        else:
            for t in range(T - 1, -1, -1):
                dh = dh + dout[t]
                dA[t] = dh * (1 - hs[t + 1] * hs[t + 1])
                dh = dA[t] @ whh
            dAh = dA
        g = self.grads
        g["weight_ih_l0"][...] = dA.reshape(T * B, -1).T @ x.reshape(T * B, I)
        g["weight_hh_l0"][...] = dAh.reshape(T * B, -1).T @ hs[:-1].reshape(T * B, H)
        g["bias_ih_l0"][...] = dA.sum(axis=(0, 1))
        g["bias_hh_l0"][...] = dAh.sum(axis=(0, 1))
        self.saved = None


# --------------------------------------------------------------------------- runners: one per contender
# A runner owns a model with the shared weights.  forward() returns a handle,
# backward(handle) does zero-grad + backward; loss_value(handle) and grads()
# report what was computed, for the agreement check.


class Runner:
    kernel_module = None  # tinybptt runners: the kernels backend module to instrument

    def forward(self):
        raise NotImplementedError

    def backward(self, handle):
        raise NotImplementedError

    def loss_value(self, handle):
        raise NotImplementedError

    def grads(self):
        raise NotImplementedError

    def step(self):
        """One timed iteration -> (forward s, backward s, total s, handle)."""
        t0 = time.perf_counter()
        h = self.forward()
        t1 = time.perf_counter()
        self.backward(h)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, t2 - t0, h


class NumpyRunner(Runner):
    def __init__(self, cell, x, params):
        self.model = NumpyBPTT(cell, params)
        self.x = x

    def forward(self):
        return self.model.forward(self.x)[1]

    def backward(self, handle):
        self.model.backward()

    def loss_value(self, handle):
        return handle

    def grads(self):
        return self.model.grads


class TinyRunner(Runner):
    """tinybptt.nn.<CELL>(I, H, dtype=..., mode=...) on a chosen kernel backend."""

    def __init__(self, cell, x, params, mode, backend, layer_kwargs=None, grad_trace=False):
        import tinybptt
        from tinybptt import kernels
        try:
            import tinybptt.nn as tnn
        except ImportError as exc:
            raise RuntimeError("tinybptt.nn is not available (%s)" % exc) from None
        cls = getattr(tnn, cell.upper(), None)
        if cls is None:
            raise RuntimeError("tinybptt.nn has no %s layer yet" % cell.upper())
        tinybptt.set_backend(backend)
        self.backend, self.kernels = backend, kernels
        self.kernel_module = kernels.BACKENDS[backend]
        T, B, I = x.shape
        H = params["weight_hh_l0"].shape[1]
        self.layer = cls(I, H, dtype=x.dtype, mode=mode, **(layer_kwargs or {}))
        if hasattr(self.layer, "record_grad_trace"):
            # No peer records per-step gradients; time the layer without its grad_trace
            # unless asked (--grad-trace).
            self.layer.record_grad_trace = bool(grad_trace)
        self.params = _tiny_named_params(self.layer)
        for name in PARAM_NAMES:
            p = self.params.get(name)
            if p is None:
                raise RuntimeError("tinybptt.nn.%s has no parameter %s (has %s)"
                                   % (cls.__name__, name, sorted(self.params)))
            if p.data.shape != params[name].shape:
                raise RuntimeError("tinybptt.nn.%s.%s has shape %s, expected %s"
                                   % (cls.__name__, name, p.data.shape, params[name].shape))
            p.data[...] = params[name]
        self.x = tinybptt.tensor(x)

    def forward(self):
        if self.kernels.backend is not self.kernel_module:  # another runner in this worker switched it
            self.kernels.set_backend(self.backend)
        res = self.layer(self.x)
        out = res[0] if isinstance(res, tuple) else res
        return (out * out).sum()

    def backward(self, loss):
        self.layer.zero_grad()
        loss.backward()

    def loss_value(self, loss):
        return float(loss.item())

    def grads(self):
        return {n: self.params[n].grad for n in PARAM_NAMES}


def _tiny_named_params(layer):
    """{name: Parameter} of a tinybptt layer, whatever way it lists them."""
    named = getattr(layer, "named_parameters", None)
    if named is not None:
        got = named()
        return dict(got.items() if isinstance(got, dict) else got)
    return {n: getattr(layer, n) for n in PARAM_NAMES if hasattr(layer, n)}


class TorchRunner(Runner):
    """torch.nn.LSTM / GRU / RNN (the cuDNN-free CPU path: ATen's fused loop over MKL GEMMs)."""

    def __init__(self, cell, x, params):
        import torch
        self.torch = torch
        T, B, I = x.shape
        H = params["weight_hh_l0"].shape[1]
        dt = getattr(torch, str(x.dtype))
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.mod = cls(I, H, dtype=dt)
        with torch.no_grad():
            for name, p in self.mod.named_parameters():
                p.copy_(torch.from_numpy(params[name]))
        self.x = torch.from_numpy(x)

    def forward(self):
        out = self.mod(self.x)[0]
        return (out * out).sum()

    def backward(self, loss):
        self.mod.zero_grad()
        loss.backward()

    def loss_value(self, loss):
        return float(loss.item())

    def grads(self):
        return {n: p.grad.numpy() for n, p in self.mod.named_parameters()}


class TorchOpsRunner(Runner):
    """A PyTorch eager Python loop of primitive ops: the op-level peer of mode="ops".

    The textbook op sequence (``nn.rnn.ops_step``): per step
    ``gi = x[t] @ W_ih^T + b_ih``, ``gh = h @ W_hh^T + b_hh``, then ``a = gi + gh``
    split into gates (GRU: gi and gh split separately), the gate nonlinearities and
    the state update op by op; outputs stacked.  tinybptt's ``mode="ops"`` runs the
    same formulas with leaner nodes: each product-plus-bias is one ``linear`` node;
    the RNN and LSTM form ``a`` as one product ``[x[t], h] @ [W_ih^T; W_hh^T] +
    (b_ih + b_hh)`` (``nn.rnn._ops_step_joint``: concat and linear where this loop
    has two matmuls and three adds); the GRU update runs as ``n + z * (h - n)``.
    """

    def __init__(self, cell, x, params):
        import torch
        self.torch = torch
        self.cell = cell
        self.w = {n: torch.from_numpy(v.copy()).requires_grad_(True) for n, v in params.items()}
        self.x = torch.from_numpy(x)

    def forward(self):
        torch, w, x = self.torch, self.w, self.x
        T, B, _ = x.shape
        H = w["weight_hh_l0"].shape[1]
        wih, whh = w["weight_ih_l0"].t(), w["weight_hh_l0"].t()
        bih, bhh = w["bias_ih_l0"], w["bias_hh_l0"]
        h = torch.zeros(B, H, dtype=x.dtype)
        outs = []
        if self.cell == "lstm":
            c = torch.zeros(B, H, dtype=x.dtype)
            for t in range(T):
                a = (x[t] @ wih + bih) + (h @ whh + bhh)
                i, f, g, o = a.chunk(4, 1)
                i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
                c = f * c + i * g
                h = o * torch.tanh(c)
                outs.append(h)
        elif self.cell == "gru":
            for t in range(T):
                xa = x[t] @ wih + bih
                ha = h @ whh + bhh
                xr, xz, xn = xa.chunk(3, 1)
                hr, hz, hn = ha.chunk(3, 1)
                r = torch.sigmoid(xr + hr)
                z = torch.sigmoid(xz + hz)
                n = torch.tanh(xn + r * hn)
                h = (1 - z) * n + z * h
                outs.append(h)
        else:
            for t in range(T):
                h = torch.tanh((x[t] @ wih + bih) + (h @ whh + bhh))
                outs.append(h)
        out = torch.stack(outs)
        return (out * out).sum()

    def backward(self, loss):
        for p in self.w.values():
            p.grad = None
        loss.backward()

    def loss_value(self, loss):
        return float(loss.item())

    def grads(self):
        return {n: p.grad.numpy() for n, p in self.w.items()}


class JaxRunner(Runner):
    """``jax.jit(jax.value_and_grad(loss))`` over ``lax.scan`` of the cell, PyTorch formulas.

    The input projection of all steps is hoisted out of the scan (one GEMM), as
    a JAX user would write it.  "Forward" is the jitted loss alone; "backward"
    is value_and_grad's time minus that.
    """

    def __init__(self, cell, x, params):
        import jax
        import jax.numpy as jnp
        from jax import lax
        jax.config.update("jax_enable_x64", True)
        self.jax = jax
        T, B, I = x.shape
        H = params["weight_hh_l0"].shape[1]
        dt = x.dtype

        def loss(p, xs):
            xp = jnp.einsum("tbi,gi->tbg", xs, p["weight_ih_l0"]) + p["bias_ih_l0"]
            whh_t = p["weight_hh_l0"].T
            h0 = jnp.zeros((B, H), dtype=dt)
            if cell == "lstm":
                xp = xp + p["bias_hh_l0"]

                def step(carry, xa):
                    h, c = carry
                    a = xa + h @ whh_t
                    i = jax.nn.sigmoid(a[:, :H])
                    f = jax.nn.sigmoid(a[:, H:2 * H])
                    g = jnp.tanh(a[:, 2 * H:3 * H])
                    o = jax.nn.sigmoid(a[:, 3 * H:])
                    c = f * c + i * g
                    h = o * jnp.tanh(c)
                    return (h, c), h
                _, outs = lax.scan(step, (h0, h0), xp)
            elif cell == "gru":
                bhh = p["bias_hh_l0"]

                def step(h, xa):
                    ha = h @ whh_t + bhh
                    r = jax.nn.sigmoid(xa[:, :H] + ha[:, :H])
                    z = jax.nn.sigmoid(xa[:, H:2 * H] + ha[:, H:2 * H])
                    n = jnp.tanh(xa[:, 2 * H:] + r * ha[:, 2 * H:])
                    h = (1 - z) * n + z * h
                    return h, h
                _, outs = lax.scan(step, h0, xp)
            else:
                xp = xp + p["bias_hh_l0"]

                def step(h, xa):
                    h = jnp.tanh(xa + h @ whh_t)
                    return h, h
                _, outs = lax.scan(step, h0, xp)
            return jnp.sum(outs * outs)

        self.p = {n: jnp.asarray(v) for n, v in params.items()}
        self.x = jnp.asarray(x)
        self.f_loss = jax.jit(loss)
        self.f_vg = jax.jit(jax.value_and_grad(loss))
        self._grads = None

    def forward(self):
        return self.f_loss(self.p, self.x).block_until_ready()

    def backward(self, handle):
        val, g = self.f_vg(self.p, self.x)
        self.jax.block_until_ready(g)
        self._grads = g
        return val

    def step(self):
        t0 = time.perf_counter()
        self.forward()
        t1 = time.perf_counter()
        val = self.backward(None)
        t2 = time.perf_counter()
        fwd, total = t1 - t0, t2 - t1
        return fwd, max(total - fwd, 0.0), total, val

    def loss_value(self, handle):
        return float(handle)

    def grads(self):
        return {n: np.asarray(v) for n, v in self._grads.items()}


def make_runner(contender, cell, x, params, layer_kwargs=None, grad_trace=False):
    if contender == "numpy":
        return NumpyRunner(cell, x, params)
    if contender == "torch":
        return TorchRunner(cell, x, params)
    if contender == "torch-ops":
        return TorchOpsRunner(cell, x, params)
    if contender == "jax":
        return JaxRunner(cell, x, params)
    if contender == "tinybptt:numpy":
        return TinyRunner(cell, x, params, "sequence", "numpy", layer_kwargs, grad_trace)
    if is_tinybptt(contender):
        return TinyRunner(cell, x, params, contender.split(":", 1)[1], "c", layer_kwargs, grad_trace)
    raise ValueError("bench: unknown contender %r" % contender)


# --------------------------------------------------------------------------- timing in a worker


class KernelTimer:
    """Wrap every public function of a kernels backend module in a timer.

    Functions the backend module re-exports from its helpers (``c.py`` takes
    ``seq_forward`` etc. from ``c_rnn.py``) are wrapped too; the validation
    helpers are not.  Only the outermost kernel call is timed (a C-backend ``seq_forward`` that
    calls ``matmul`` internally counts once).  ``phase`` ("fwd"/"bwd") says
    which bucket the time goes to.  Modules read ``kernels.backend.<fn>`` at
    call time, so patching the module's attributes is seen by every caller.
    """

    SKIP = {"ptr", "fn", "build_info", "set_num_threads", "get_num_threads",
            "set_flush_to_zero", "get_flush_to_zero"}

    def __init__(self, module):
        self.module = module
        self.saved = {}
        self.depth = 0
        self.phase = "fwd"
        self.seconds = {"fwd": 0.0, "bwd": 0.0}
        self.calls = {"fwd": 0, "bwd": 0}

    def _wrap(self, f):
        def timed(*args, **kwargs):
            if self.depth:
                return f(*args, **kwargs)
            self.depth = 1
            t0 = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                self.seconds[self.phase] += time.perf_counter() - t0
                self.calls[self.phase] += 1
                self.depth = 0
        timed.__wrapped__ = f
        return timed

    def __enter__(self):
        for name, f in list(vars(self.module).items()):
            mod = getattr(f, "__module__", "") or ""
            if (name.startswith("_") or name in self.SKIP or not isinstance(f, types.FunctionType)
                    or not mod.startswith("tinybptt.kernels") or mod.endswith(".validate")):
                continue
            self.saved[name] = f
            setattr(self.module, name, self._wrap(f))
        return self

    def __exit__(self, *exc):
        for name, f in self.saved.items():
            setattr(self.module, name, f)
        self.saved.clear()


def _median_ms(xs):
    return 1e3 * statistics.median(xs) if xs else None


class gc_protocol:
    """The garbage collector during a batch of timed runs: timeit's convention.

    Collect once before the batch, keep the cyclic collector off while it runs
    (so no collection pause lands inside one contender's timing), restore it
    after.  ``each_run=True`` is the older protocol: a full ``gc.collect()``
    before every run.  That measures a cold start: a full collection walks the
    whole heap (about 10 ms with NumPy alone, more with PyTorch or JAX loaded),
    and the first Python and NumPy operations after it run several times slower
    (a 1600-element NumPy multiply: about 1 us warm, 40 us right after a
    collection), which swamps the tiny configs for every contender and most for
    the ones that do more in Python.  A training loop never collects between steps.
    """

    def __init__(self, each_run=False):
        self.each_run = bool(each_run)
        self.was_enabled = None

    def __enter__(self):
        gc.collect()
        self.was_enabled = gc.isenabled()
        gc.disable()
        return self

    def before_run(self):
        if self.each_run:
            gc.collect()

    def __exit__(self, *exc):
        if self.was_enabled:
            gc.enable()


def warm_up(runner, warmup=1, gc_each_run=False):
    """Run ``warmup`` untimed iterations; returns the fastest one's time, the loss and gradient norms."""
    first = handle = None
    with gc_protocol(gc_each_run) as gcp:
        for _ in range(max(1, warmup)):
            gcp.before_run()
            _, _, total, handle = runner.step()
            first = total if first is None else min(first, total)
    grads = runner.grads()
    return {"loss": runner.loss_value(handle), "warmup_s": first,
            "grad_norms": {n: float(np.linalg.norm(np.asarray(grads[n], dtype=np.float64))) for n in PARAM_NAMES}}


def timed_runs(runner, reps, gc_each_run=False):
    """``reps`` timed iterations -> lists of forward, backward and total times in ms (see gc_protocol)."""
    f, b, t = [], [], []
    with gc_protocol(gc_each_run) as gcp:
        for _ in range(reps):
            gcp.before_run()
            fwd, bwd, total, _ = runner.step()
            f.append(1e3 * fwd)
            b.append(1e3 * bwd)
            t.append(1e3 * total)
    return {"fwd_samples": f, "bwd_samples": b, "total_samples": t}


def plan_reps(first_s, repeat, budget=2.0, max_iter_s=20.0, min_repeat=3):
    """How many timed runs: ``repeat`` capped so they take about ``budget`` seconds, at least
    ``min_repeat``; 0 past ``max_iter_s`` per iteration (the caller then times a single run)."""
    if first_s > max_iter_s:
        return 0
    return max(1, min(repeat, max(min_repeat, int(budget / max(first_s, 1e-6)))))


def add_medians(res, stat="median"):
    """fwd/bwd/total ms (the median, or with ``stat="min"`` the fastest run) and the spread
    (interquartile range / median) from the samples; ``total_median_ms`` and ``total_min_ms`` both kept."""
    t = res["total_samples"]
    pick = min if stat == "min" else statistics.median
    res["stat"] = stat
    res["reps"] = len(t)
    res["fwd_ms"] = pick(res["fwd_samples"]) if res["fwd_samples"] else None
    res["bwd_ms"] = pick(res["bwd_samples"]) if res["bwd_samples"] else None
    res["total_median_ms"] = statistics.median(t)
    res["total_min_ms"] = min(t)
    res["total_ms"] = pick(t)
    if len(t) >= 4:
        q = statistics.quantiles(t, n=4)
        res["spread"] = (q[2] - q[0]) / res["total_median_ms"]
    else:
        res["spread"] = (max(t) - min(t)) / res["total_median_ms"] if len(t) > 1 else None
    return res


def time_runner(runner, repeat, warmup=1, budget=2.0, max_iter_s=20.0, min_repeat=3, gc_each_run=False):
    """Warm up, then time up to ``repeat`` iterations (see plan_reps); medians in ms."""
    out = warm_up(runner, warmup, gc_each_run)
    reps = plan_reps(out["warmup_s"], repeat, budget, max_iter_s, min_repeat)
    if reps == 0:
        out["note"] = "a single timed run (%.1f s per iteration > --max-iter-s)" % out["warmup_s"]
    out.update(timed_runs(runner, max(reps, 1), gc_each_run))
    return add_medians(out)


def kernel_split(runner, reps, gc_each_run=False):
    """Kernel time (fwd, bwd), whole-step time and kernel calls of an instrumented iteration.

    Of ``reps`` instrumented iterations the fastest is reported, so the kernel
    share and the overhead (step minus kernels) come from one undisturbed run.
    """
    k_fwd, k_bwd, calls, totals = [], [], [], []
    with gc_protocol(gc_each_run) as gcp:
        for _ in range(max(1, reps)):
            gcp.before_run()
            with KernelTimer(runner.kernel_module) as kt:
                t0 = time.perf_counter()
                kt.phase = "fwd"
                h = runner.forward()
                kt.phase = "bwd"
                runner.backward(h)
                totals.append(time.perf_counter() - t0)
            k_fwd.append(kt.seconds["fwd"])
            k_bwd.append(kt.seconds["bwd"])
            calls.append(kt.calls["fwd"] + kt.calls["bwd"])
    best = min(range(len(totals)), key=totals.__getitem__)  # the least disturbed instrumented run
    return {"kernel_fwd_ms": 1e3 * k_fwd[best], "kernel_bwd_ms": 1e3 * k_bwd[best],
            "kernel_ms": 1e3 * (k_fwd[best] + k_bwd[best]), "split_total_ms": 1e3 * totals[best],
            "kernel_calls": calls[best]}


def memory_profile(runner):
    """Bytes NumPy allocated (seen by tracemalloc): held after forward, and peak over the step.

    NumPy reports its allocations to tracemalloc; memory that C code mallocs
    itself, or that PyTorch/JAX allocate, is not seen.
    """
    import tracemalloc
    gc.collect()
    h = runner.forward()  # one untraced step so gradient buffers exist at the baseline
    runner.backward(h)
    del h
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        h = runner.forward()
        held, peak_fwd = tracemalloc.get_traced_memory()
        runner.backward(h)
        del h
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return {"saved_bytes": held - base, "peak_fwd_bytes": peak_fwd - base, "peak_bytes": peak - base}


_RUNNERS = {}  # worker-side cache: runners kept between the rounds of one grid row


def _runner_key(req):
    return json.dumps([req["contender"], req["cell"], req["shape"], req["dtype"], req.get("seed", 0),
                       req.get("layer_kwargs"), req.get("grad_trace", False)], sort_keys=True)


def measure(req):
    """Worker side of one measurement request.

    Without ``reps``: warm up, plan the number of timed runs from the warm-up
    time and time them (the first round).  With ``reps``: time that many runs
    of the runner kept from the first round (``keep``), after one more warm-up
    iteration when ``rewarm`` is set.  ``final`` adds the kernel split, the
    memory profile and/or the gradients.
    """
    gc_each = bool(req.get("gc_each_run", False))
    key = _runner_key(req)
    runner = _RUNNERS.get(key)
    if runner is None:
        cell = req["cell"]
        T, B, I, H = req["shape"]
        x, params = make_problem(cell, T, B, I, H, req["dtype"], req.get("seed", 0))
        runner = make_runner(req["contender"], cell, x, params, req.get("layer_kwargs"), req.get("grad_trace", False))
        if req.get("keep"):
            _RUNNERS[key] = runner
    if req.get("reps") is None:
        res = warm_up(runner, req.get("warmup", 1), gc_each)
        reps = plan_reps(res["warmup_s"], req.get("repeat", 10), req.get("budget", 2.0),
                         req.get("max_iter_s", 20.0), req.get("min_repeat", 3))
        if reps == 0:  # too slow for the budget: one timed run, and no further rounds
            res["note"] = "a single timed run (%.1f s per iteration > --max-iter-s)" % res["warmup_s"]
            res["single"] = True
        res.update(timed_runs(runner, max(reps, 1), gc_each))
    else:
        res = {}
        if req.get("rewarm"):
            with gc_protocol(gc_each):
                runner.step()
        res.update(timed_runs(runner, req["reps"], gc_each))
    if req.get("final", True):
        if req.get("kernel_split") and runner.kernel_module is not None:
            res.update(kernel_split(runner, req.get("split_repeat", 3), gc_each))
        if req.get("memory") and isinstance(runner, (TinyRunner, NumpyRunner)):
            res.update(memory_profile(runner))
            if isinstance(runner, TinyRunner):  # the nn engineer's own count of the saved activations
                try:
                    from tinybptt.bptt import activation_bytes
                    ab = activation_bytes(runner.layer, runner.x, checkpoint=getattr(runner.layer, "checkpoint", None))
                    res["layer_stored_bytes"], res["layer_peak_bytes"] = int(ab["stored"]), int(ab["peak"])
                except Exception as exc:  # noqa: BLE001 - optional instrumentation
                    res["layer_bytes_error"] = "%s: %s" % (type(exc).__name__, exc)
        if req.get("return_grads"):
            g = runner.grads()
            res["grads"] = {n: np.asarray(g[n], dtype=np.float64).tolist() for n in PARAM_NAMES}
        _RUNNERS.pop(key, None)
    return res


def gemm_run(req):
    """Worker side of the kernel runs: benchmarks/bench_gemm.py's run()."""
    path = req["bench_gemm"]
    spec = importlib.util.spec_from_file_location("bench_gemm", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.run(req["sizes"], req["dtype"], req["threads"], req["repeat"])
    return {"rows": json.loads(json.dumps(list(rows), default=_json_default))}


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def worker_main(family, threads):
    """Serve JSON-line requests on stdin until EOF; replies go to the original stdout.

    Anything else printed (library warnings) is sent to stderr so it cannot
    corrupt the protocol.
    """
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if family == "torch":
        try:
            import torch
            torch.set_num_threads(threads)
            try:
                torch.set_num_interop_threads(threads)
            except RuntimeError:
                pass
        except ImportError:
            pass
    if family == "tinybptt":
        try:
            import tinybptt
            tinybptt.set_num_threads(threads)
        except Exception:  # noqa: BLE001 - reported per request instead
            pass
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        try:
            if req["op"] == "measure":
                res = measure(req)
            elif req["op"] == "gemm":
                res = gemm_run(req)
            elif req["op"] == "drop":  # end of a grid row: forget the kept runners
                _RUNNERS.clear()
                gc.collect()
                res = {}
            elif req["op"] == "info":
                res = worker_info(family)
            else:
                raise ValueError("unknown op %r" % req["op"])
            res["ok"] = True
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the parent
            res = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
        proto.write(json.dumps(res, default=_json_default) + "\n")
        proto.flush()


def worker_info(family):
    info = {"numpy": np.__version__}
    if family == "torch":
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    if family == "jax":
        import jax
        info["jax"] = jax.__version__
    if family == "tinybptt":
        import tinybptt
        info["tinybptt_threads"] = tinybptt.get_num_threads()
    return info


# --------------------------------------------------------------------------- parent: workers


def thread_env(threads):
    """Environment that pins every library to ``threads`` threads (set before import)."""
    s = str(threads)
    env = {k: s for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                          "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}
    xla = "--xla_cpu_multi_thread_eigen=%s intra_op_parallelism_threads=%d" % (
        "false" if threads == 1 else "true", threads)
    env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + xla).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


class Worker:
    """A subprocess serving measurement requests for one library family and thread count."""

    def __init__(self, family, threads, log_dir):
        self.family, self.threads = family, threads
        env = dict(os.environ)
        env.update(thread_env(threads))
        self.log_path = os.path.join(log_dir, "worker-%s-%dt.log" % (family, threads))
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tinybptt.bench", "--worker", family, "--worker-threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env, text=True, bufsize=1)

    def request(self, req, timeout):
        if self.proc.poll() is not None:
            return {"ok": False, "error": "worker exited (code %s); see %s" % (self.proc.returncode, self.log_path)}
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"ok": False, "error": "worker died; see %s" % self.log_path}
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close(kill=True)
            return {"ok": False, "error": "timed out after %.0f s" % timeout, "timeout": True}
        line = self.proc.stdout.readline()
        if not line:
            tail = self._log_tail()
            self.close(kill=True)
            return {"ok": False, "error": "worker crashed: %s" % tail}
        return json.loads(line)

    def _log_tail(self):
        try:
            with open(self.log_path) as f:
                return " | ".join(f.read().strip().splitlines()[-3:])
        except OSError:
            return "(no log)"

    def close(self, kill=False):
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                try:
                    self.proc.stdin.close()
                    self.proc.wait(timeout=30)
                except Exception:  # noqa: BLE001
                    self.proc.kill()
        self.proc.wait()
        self.log.close()


class WorkerPool:
    """Lazily started workers, one per family, all pinned to one thread count."""

    def __init__(self, threads, log_dir):
        self.threads, self.log_dir = threads, log_dir
        self.workers = {}

    def request(self, family, req, timeout=900.0):
        w = self.workers.get(family)
        if w is None or w.proc.poll() is not None:
            w = self.workers[family] = Worker(family, self.threads, self.log_dir)
        return w.request(req, timeout)

    def broadcast(self, req, timeout=60.0):
        """Send ``req`` to every live worker (e.g. ``{"op": "drop"}``)."""
        for w in self.workers.values():
            if w.proc.poll() is None:
                w.request(req, timeout)

    def close(self):
        for w in self.workers.values():
            w.close()
        self.workers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def family_of(contender):
    return "tinybptt" if is_tinybptt(contender) else FAMILY[contender]


def peer_available(peer):
    return importlib.util.find_spec(NEEDS[peer]) is not None


def tinybptt_status():
    """(available modes note, build info) of this installation, without timing anything."""
    notes = []
    try:
        import tinybptt.nn as tnn
        missing = [c.upper() for c in CELLS if not hasattr(tnn, c.upper())]
        if missing:
            notes.append("tinybptt.nn has no %s yet" % ", ".join(missing))
    except ImportError as exc:
        notes.append("tinybptt.nn is not importable (%s)" % exc)
    return notes


# --------------------------------------------------------------------------- progress display


class Progress:
    def __init__(self, total, enabled=True):
        self.total, self.n = total, 0
        self.bar = None
        if not enabled:
            self.mode = "off"
            return
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, file=sys.stderr, unit="run", dynamic_ncols=True, leave=False)
            self.mode = "tqdm"
        except ImportError:
            self.mode = "text"

    def update(self, desc):
        self.n += 1
        if self.mode == "tqdm":
            self.bar.set_description(desc[:60])
            self.bar.update(1)
        elif self.mode == "text":
            sys.stderr.write("[%d/%d] %s\n" % (self.n, self.total, desc))
            sys.stderr.flush()

    def write(self, msg):
        if self.mode == "tqdm":
            self.bar.write(msg, file=sys.stderr)
        elif self.mode == "text":
            sys.stderr.write(msg + "\n")

    def close(self):
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- the grid


def contenders_for(modes, backends, peers):
    out = []
    if "c" in backends:
        out += ["tinybptt:%s" % m for m in modes]
    if "numpy" in backends:
        out.append("tinybptt:numpy")
    out += list(peers)
    return out


def measure_one(pool, req, timeout):
    """One request, medians added: for the scaling and check runs."""
    res = pool.request(family_of(req["contender"]), req, timeout=timeout)
    if res.get("ok"):
        add_medians(res)
    return res


def measure_row(pool, contenders, base, rounds, timeout, skip=None, stat="median", settle_s=0.0):
    """Time every contender on one (cell, config), interleaved over ``rounds`` rounds.

    Round 1 warms each contender up and plans its timed runs from the warm-up
    time; later rounds time the same number again on the runner the worker
    kept.  Noise bursts of a shared machine thus hit every contender alike.
    ``settle_s``: a pause before each contender's batch, for multi-threaded
    runs.  Thread pools keep spinning for a while after their last job
    (OpenBLAS for about 0.1 s), and on two cores that starves whoever runs
    next: tinybptt's 2-thread LSTM small took 8.0 ms (median) right after
    2-thread OpenBLAS GEMMs, 4.3 ms after a 0.2 s pause, 4.5 ms without them.
    Returns {contender: result} with samples merged and medians computed.
    """
    skip = skip or {}
    out = {c: None for c in contenders}
    reps = {}
    for rnd in range(rounds):
        for c in contenders:
            if c in skip or (out[c] is not None and not out[c].get("ok")):
                continue
            if rnd > 0 and reps.get(c, 0) == 0:
                continue
            last = rnd == rounds - 1
            req = dict(base, contender=c, keep=not last, final=last)
            if c == "jax":
                req["warmup"] = base.get("warmup", 1) + 1  # the first call compiles
            req["kernel_split"] = base.get("kernel_split", False) and is_tinybptt(c)
            if rnd > 0:
                req["reps"] = reps[c]
                req["rewarm"] = out[c]["warmup_s"] < 0.25
            if last and rnd > 0:  # instrumented runs: 3 when cheap, 1 for slow configs
                req["split_repeat"] = 3 if out[c]["warmup_s"] < 0.3 else 1
            if settle_s > 0:
                time.sleep(settle_s)
            res = pool.request(family_of(c), req, timeout=timeout)
            if not res.get("ok"):
                out[c] = res
                continue
            if rnd == 0:
                reps[c] = 0 if res.get("single") else len(res["fwd_samples"])
                if reps[c] == 0 and rounds > 1:  # too slow for more rounds: finish it now
                    req2 = dict(req, reps=0, final=True, keep=False, split_repeat=1)
                    fin = pool.request(family_of(c), req2, timeout=timeout)
                    res.update({k: v for k, v in fin.items() if k not in ("fwd_samples", "bwd_samples",
                                                                        "total_samples")})
                out[c] = res
            else:
                for k in ("fwd_samples", "bwd_samples", "total_samples"):
                    out[c][k] += res.pop(k)
                out[c].update(res)
    pool.broadcast({"op": "drop"})
    for c, res in out.items():
        if res is not None and res.get("ok"):
            add_medians(res, stat)
            res["rounds"] = rounds
    return out


def run_grid(args, progress_enabled=True):
    """Measure every (threads, dtype, cell, config, contender); returns (results, notes)."""
    notes = []
    peers = []
    for p in args.peers:
        if p == "numpy" or peer_available(p):
            peers.append(p)
        else:
            notes.append("peer %s skipped: %s is not installed" % (p, NEEDS[p]))
    notes += tinybptt_status()
    contenders = contenders_for(args.modes, args.backends, peers)
    configs = [parse_config(c) for c in args.configs]
    total = len(args.threads) * len(args.dtype) * len(args.cells) * len(configs)
    prog = Progress(total, progress_enabled and not args.quiet)
    results = []
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="tinybptt-bench-")
    rounds = max(1, args.rounds)
    per_round = lambda n: max(1, -(-n // rounds))  # noqa: E731 - ceil(n / rounds)
    try:
        for threads in args.threads:
            with WorkerPool(threads, log_dir) as pool:
                for dtype in args.dtype:
                    for cell in args.cells:
                        for cname, shape in configs:
                            skip = {c: _skip_reason(args, c, cname, shape) for c in contenders}
                            skip = {c: why for c, why in skip.items() if why}
                            base = {"op": "measure", "cell": cell, "shape": list(shape), "dtype": dtype,
                                    "seed": args.seed, "repeat": per_round(args.repeat), "warmup": args.warmup,
                                    "budget": args.budget / rounds, "max_iter_s": args.max_iter_s,
                                    "min_repeat": per_round(min(args.min_repeat, args.repeat)),
                                    "kernel_split": not args.no_split, "grad_trace": args.grad_trace,
                                    "gc_each_run": args.gc_each_run}
                            got = measure_row(pool, contenders, base, rounds, args.timeout, skip, args.stat,
                                              settle_s=args.settle if threads > 1 else 0.0)
                            desc = "%dt %s %s %s" % (threads, dtype, cell, cname)
                            for c in contenders:
                                rec = {"cell": cell, "config": cname, "shape": list(shape), "dtype": dtype,
                                       "threads": threads, "contender": c}
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
                                    prog.write("  %s %s: error: %s" % (desc, c, rec["note"]))
                                results.append(rec)
                            prog.update(desc)
    finally:
        prog.close()
    agree_check(results)
    return results, notes


def _skip_reason(args, contender, cname, shape):
    T, B, I, H = shape
    if contender == "tinybptt:numpy" and cname in args.skip_numpy_backend:
        return "skipped on %s (NumPy backend too slow for the time budget; --skip-numpy-backend)" % cname
    return None


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def agree_check(results):
    """Mark each result whose loss or gradient norms disagree with the reference contender.

    The reference is, in order of preference, torch, the hand-written NumPy
    BPTT, jax, tinybptt:sequence.  Sets rec["agree"] to True/False and
    rec["agree_err"] to the largest relative difference.
    """
    groups = {}
    for r in results:
        if r["status"] == "ok":
            groups.setdefault((r["threads"], r["dtype"], r["cell"], r["config"]), []).append(r)
    for (_, dtype, _, _), rs in groups.items():
        by = {r["contender"]: r for r in rs}
        ref = next((by[c] for c in ("torch", "numpy", "jax", "tinybptt:sequence") if c in by), None)
        if ref is None:
            continue
        tol = AGREE_RTOL.get(dtype, 1e-3)
        for r in rs:
            err = _rel(r["loss"], ref["loss"])
            for n in PARAM_NAMES:
                a, b = r["grad_norms"][n], ref["grad_norms"][n]
                err = max(err, _rel(a, b) if abs(b) > 1e-30 else abs(a))
            r["agree_ref"] = ref["contender"]
            r["agree_err"] = err
            r["agree"] = bool(err <= tol)


# --------------------------------------------------------------------------- summaries and tables


def _fmt_ms(v):
    if v is None:
        return "-"
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    if v >= 1:
        return "%.2f" % v
    return "%.3f" % v


def _fmt_ratio(v):
    return "-" if v is None else "%.2fx" % v


def summarize(results, floor_gflops=None):
    """One summary row per (threads, dtype, cell, config): times, best peer, ratios, targets.

    ``floor_gflops`` maps (dtype, threads) to a measured GEMM rate for the FLOP
    floor; without one, DESIGN.md's single-thread rate times the thread count.
    """
    floor_gflops = floor_gflops or {}
    rows = {}
    order = []
    for r in results:
        key = (r["threads"], r["dtype"], r["cell"], r["config"])
        if key not in rows:
            rows[key] = {"threads": r["threads"], "dtype": r["dtype"], "cell": r["cell"], "config": r["config"],
                         "shape": r["shape"], "by": {}}
            order.append(key)
        rows[key]["by"][r["contender"]] = r
    out = []
    for key in order:
        row = rows[key]
        by = row["by"]
        ok = {c: r for c, r in by.items() if r["status"] == "ok" and r.get("agree", True)}
        peers = {c: r["total_ms"] for c, r in ok.items() if not is_tinybptt(c)}
        best = min(peers, key=peers.get) if peers else None
        row["best_peer"] = best
        row["best_ms"] = peers.get(best)
        gf = floor_gflops.get((row["dtype"], row["threads"]))
        if gf is None and row["dtype"] in FLOOR_GFLOPS:
            gf = FLOOR_GFLOPS[row["dtype"]] * row["threads"]
        row["floor_gflops"] = gf
        row["floor_ms"] = 1e3 * workload_flops(row["cell"], *row["shape"]) / (gf * 1e9) if gf else None

        def ratio(c, den):
            return ok[c]["total_ms"] / den if c in ok and den else None
        row["seq_ratio"] = ratio("tinybptt:sequence", row["best_ms"])
        mins = {c: r.get("total_min_ms") for c, r in ok.items() if not is_tinybptt(c) and r.get("total_min_ms")}
        seq_min = (ok.get("tinybptt:sequence") or {}).get("total_min_ms")
        row["seq_ratio_min"] = seq_min / min(mins.values()) if seq_min and mins else None
        row["cell_ratio"] = ratio("tinybptt:cell", row["best_ms"])
        row["npb_ratio"] = ratio("tinybptt:numpy", row["best_ms"])
        tops = ok.get("torch-ops")
        row["ops_ratio"] = ratio("tinybptt:ops", tops["total_ms"] if tops else None)
        def noisy(c, den_c):
            sp = [(ok.get(x) or {}).get("spread") for x in (c, den_c)]
            return any(v is not None and v > NOISY_SPREAD for v in sp)
        row["seq_noisy"] = noisy("tinybptt:sequence", best)
        row["ops_noisy"] = noisy("tinybptt:ops", "torch-ops")
        row["seq_target"] = seq_target(row["config"])
        row["seq_pass"] = None if row["seq_ratio"] is None else row["seq_ratio"] <= row["seq_target"]
        row["ops_pass"] = None if row["ops_ratio"] is None else row["ops_ratio"] <= OPS_TARGET
        out.append(row)
    return out


def _passfail(v):
    return "-" if v is None else ("PASS" if v else "FAIL")


def render_table(headers, rows, md=False, title=None):
    """A plain-text (aligned) or Markdown table."""
    rows = [[str(c) for c in r] for r in rows]
    lines = []
    if md:
        if title:
            lines.append("**%s**" % title)
            lines.append("")
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---" if k == 0 else "---:" for k in range(len(headers))) + "|")
        for r in rows:
            lines.append("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(h), *(len(r[k]) for r in rows)) if rows else len(h) for k, h in enumerate(headers)]
        if title:
            lines.append(title)
        lines.append("  ".join(h.ljust(w) if k == 0 else h.rjust(w) for k, (h, w) in enumerate(zip(headers, widths))))
        lines.append("  ".join("-" * w for w in widths))
        for r in rows:
            lines.append("  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def _cell_ms(rec):
    if rec is None:
        return "-"
    if rec["status"] == "skipped":
        return "skip"
    if rec["status"] != "ok":
        return "err"
    s = _fmt_ms(rec["total_ms"])
    if rec.get("agree") is False:
        s += "!"
    if rec.get("reps", 2) < 2:
        s += "*"
    return s


def grid_tables(results, md=False, floor_gflops=None):
    """Per (threads, dtype, cell): a time table and a ratio/target table; then the split table."""
    summary = summarize(results, floor_gflops)
    contenders = []
    for r in results:
        if r["contender"] not in contenders:
            contenders.append(r["contender"])
    blocks = []
    groups = []
    for row in summary:
        g = (row["threads"], row["dtype"], row["cell"])
        if g not in groups:
            groups.append(g)
    for g in groups:
        threads, dtype, cell = g
        rows = [r for r in summary if (r["threads"], r["dtype"], r["cell"]) == g]
        name = "%s, %s, %d thread%s" % (cell.upper(), dtype, threads, "" if threads == 1 else "s")
        head = ["config", "T,B,I,H", "floor"] + [SHORT.get(c, c) for c in contenders] + ["best peer"]
        body = []
        for r in rows:
            body.append([r["config"], ",".join(map(str, r["shape"])), _fmt_ms(r["floor_ms"])]
                        + [_cell_ms(r["by"].get(c)) for c in contenders]
                        + [SHORT.get(r["best_peer"], "-") if r["best_peer"] else "-"])
        stat = next((rr.get("stat") for rr in results if rr.get("stat")), "median")
        blocks.append(render_table(head, body, md, title="%s: %s ms per forward+backward" % (name, stat)))
        head2 = ["config", "seq / best peer", "target", "seq", "same, fastest runs", "ops / torch-ops", "target", "ops",
                 "cell / best peer", "np-backend / best peer", "seq kernel / floor", "seq overhead"]
        body2 = []
        for r in rows:
            seq = r["by"].get("tinybptt:sequence") or {}
            kf = ov = "-"
            if seq.get("kernel_calls") and r["floor_ms"]:
                kf = _fmt_ratio(seq["kernel_ms"] / r["floor_ms"])
                ov = "%.0f%%" % (100 * (seq["split_total_ms"] - seq["kernel_ms"]) / seq["split_total_ms"])
            body2.append([r["config"], _fmt_ratio(r["seq_ratio"]) + ("~" if r["seq_noisy"] else ""),
                          "<=%.1fx" % r["seq_target"], _passfail(r["seq_pass"]), _fmt_ratio(r["seq_ratio_min"]),
                          _fmt_ratio(r["ops_ratio"]) + ("~" if r["ops_noisy"] else ""), "<=%.1fx" % OPS_TARGET,
                          _passfail(r["ops_pass"]),
                          _fmt_ratio(r["cell_ratio"]), _fmt_ratio(r["npb_ratio"]), kf, ov])
        blocks.append(render_table(head2, body2, md, title="%s: ratios (lower is better) and issue-5 targets" % name))
    return "\n\n".join(blocks), summary


def headline_table(summary, md=False):
    """mode="sequence" / best peer for every cell and config, one row per (threads, dtype, cell)."""
    configs = list(dict.fromkeys(r["config"] for r in summary))
    groups = list(dict.fromkeys((r["threads"], r["dtype"], r["cell"]) for r in summary))
    head = ["threads", "dtype", "cell"] + configs + ["seq targets met", "ops targets met"]
    body = []
    for g in groups:
        rows = {r["config"]: r for r in summary if (r["threads"], r["dtype"], r["cell"]) == g}
        cells = []
        for c in configs:
            r = rows.get(c)
            if r is None or r["seq_ratio"] is None:
                cells.append("-")
            else:
                cells.append("%s%s %s (%s)" % (_fmt_ratio(r["seq_ratio"]), "~" if r["seq_noisy"] else "",
                                               "PASS" if r["seq_pass"] else "FAIL",
                                             SHORT.get(r["best_peer"], r["best_peer"])))
        sp = [r["seq_pass"] for r in rows.values() if r["seq_pass"] is not None]
        op = [r["ops_pass"] for r in rows.values() if r["ops_pass"] is not None]
        body.append([g[0], g[1], g[2].upper()] + cells + ["%d/%d" % (sum(sp), len(sp)), "%d/%d" % (sum(op), len(op))])
    return render_table(head, body, md, title="Headline: mode=\"sequence\" time / best peer's time (best peer in "
                                              "brackets); target <=0.8x, <=1.1x on large")


def split_table(results, md=False):
    """Forward / backward and kernel / Python-overhead split of every measured contender."""
    head = ["cell", "config", "dtype", "thr", "contender", "fwd ms", "bwd ms", "total ms",
            "kernel ms (fwd/bwd)", "overhead ms", "overhead %", "kernel calls", "runs", "spread"]
    body = []
    for r in results:
        if r["status"] != "ok":
            continue
        k = r.get("kernel_ms")
        calls = r.get("kernel_calls")
        if k is not None and calls:
            st = r["split_total_ms"]
            ov = st - k
            kcol = "%s (%s/%s)" % (_fmt_ms(k), _fmt_ms(r["kernel_fwd_ms"]), _fmt_ms(r["kernel_bwd_ms"]))
            ocol, pcol = _fmt_ms(ov), "%.0f%%" % (100 * ov / st)
        else:
            kcol = ocol = pcol = "-"
        bwd = _fmt_ms(r["bwd_ms"]) + ("^" if r["contender"] == "jax" else "")
        body.append([r["cell"], r["config"], r["dtype"], r["threads"], SHORT.get(r["contender"], r["contender"]),
                     _fmt_ms(r["fwd_ms"]), bwd, _fmt_ms(r["total_ms"]), kcol, ocol, pcol,
                     "-" if calls is None else calls, r["reps"],
                     "-" if r.get("spread") is None else "%.0f%%" % (100 * r["spread"])])
    return render_table(head, body, md, title="Forward/backward split; tinybptt kernel time vs Python/graph overhead")


def notes_text(results, notes, md=False, floor_gflops=None):
    lines = list(notes)
    for r in results:
        if r["status"] == "error":
            lines.append("%s %s %s %dt %s: error: %s" % (r["cell"], r["config"], r["dtype"], r["threads"],
                                                          r["contender"], r["note"]))
        elif r["status"] == "skipped":
            lines.append("%s %s %s %dt %s: %s" % (r["cell"], r["config"], r["dtype"], r["threads"],
                                                   r["contender"], r["note"]))
        elif r.get("agree") is False:
            lines.append("%s %s %s %dt %s: loss/gradient norms differ from %s by %.2g (relative) -- excluded from best peer"
                         % (r["cell"], r["config"], r["dtype"], r["threads"], r["contender"],
                            r["agree_ref"], r["agree_err"]))
        elif r.get("note"):
            lines.append("%s %s %s %dt %s: %s" % (r["cell"], r["config"], r["dtype"], r["threads"],
                                                   r["contender"], r["note"]))
    legend = ("Legend: spread = interquartile range of the timed runs / median; `~` after a ratio: one side's "
              "spread exceeds %d%%, the ratio is noisy; `same, fastest runs`: the sequence ratio from each side's "
              "fastest run instead of the median (steadier when the machine is busy); kernel = time inside "
              "`tinybptt.kernels.backend` calls, overhead = the rest of the step (graph building, autograd, "
              "Python, NumPy glue), both from the fastest of up to 3 instrumented runs; `!` loss or gradient norms disagree with the reference peer; `*` a single timed run; "
              "`^` JAX backward = value_and_grad time minus the jitted loss time; "
              "floor = the workload's GEMM FLOPs / %s; "
              "ratios use the best peer whose loss and gradient norms agree with the reference."
              % ((100 * NOISY_SPREAD,) + (("the best GEMM GFLOP/s measured by this run's --gemm (%s)" % ", ".join(
                  "%s %dt: %.0f" % (k[0], k[1], v) for k, v in sorted(floor_gflops.items())))
                 if floor_gflops else
                 "DESIGN.md's single-thread GEMM rate (%s GFLOP/s float32, %s float64) x threads"
                 % (FLOOR_GFLOPS["float32"], FLOOR_GFLOPS["float64"]),)))
    out = [legend]
    if lines:
        out.append("Notes:")
        out += [("- " if md else "  ") + line for line in lines]
    return "\n".join(out)


# --------------------------------------------------------------------------- correctness check (--check)


def run_check(args, progress_enabled=True):
    """Full gradient comparison of every contender with the reference on tiny configs.

    For each cell, float64 and float32, configs tiny and 20x3x5x7: every contender
    returns its loss and all weight gradients for the same weights and input;
    they are compared element by element with torch (or the NumPy BPTT when
    torch is missing).  Returns rows with the errors and a pass flag.
    """
    peers = [p for p in args.peers if p == "numpy" or peer_available(p)]
    contenders = contenders_for(args.modes, args.backends, peers)
    shapes = [("tiny", CONFIGS["tiny"]), ("20x3x5x7", (20, 3, 5, 7))]
    tol = {"float64": 1e-9, "float32": 1e-4}
    rows = []
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="tinybptt-bench-")
    total = len(args.cells) * len(shapes) * 2 * len(contenders)
    prog = Progress(total, progress_enabled and not args.quiet)
    with WorkerPool(args.threads[0], log_dir) as pool:
        for dtype in ("float64", "float32"):
            for cell in args.cells:
                for cname, shape in shapes:
                    got = {}
                    for c in contenders:
                        req = {"op": "measure", "contender": c, "cell": cell, "shape": list(shape), "dtype": dtype,
                               "seed": args.seed + 1, "repeat": 1, "warmup": 1, "min_repeat": 1,
                               "return_grads": True}
                        got[c] = measure_one(pool, req, args.timeout)
                        prog.update("check %s %s %s %s" % (dtype, cell, cname, c))
                    ref_name = next((c for c in ("torch", "numpy") if got.get(c, {}).get("ok")), None)
                    for c in contenders:
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
                            lerr = _rel(r["loss"], ref["loss"])
                            row.update(status="ok", loss=r["loss"], loss_err=lerr, grad_err=gerr,
                                       passed=bool(lerr <= tol[dtype] and gerr <= tol[dtype] * 10))
                        rows.append(row)
    prog.close()
    return rows


def check_table(rows, md=False):
    """One row per (dtype, cell, config); per contender the larger of its loss error and its
    gradient error relative to the reference (max |g - g_ref| / max |g_ref|), PASS/FAIL."""
    contenders = list(dict.fromkeys(r["contender"] for r in rows))
    keys = list(dict.fromkeys((r["dtype"], r["cell"], r["config"]) for r in rows))
    by = {(r["dtype"], r["cell"], r["config"], r["contender"]): r for r in rows}
    head = ["dtype", "cell", "config", "vs"] + [SHORT.get(c, c) for c in contenders]
    body = []
    fails = []
    for k in keys:
        line = list(k)
        ref = next((by[k + (c,)]["ref"] for c in contenders if (k + (c,)) in by), None)
        line.append(SHORT.get(ref, ref) if ref else "-")
        for c in contenders:
            r = by.get(k + (c,))
            if r is None:
                line.append("-")
            elif r["status"] == "ok":
                line.append("%.0e %s" % (max(r["loss_err"], r["grad_err"]), "ok" if r["passed"] else "FAIL"))
            elif r["status"] == "reference":
                line.append("(ref)")
            else:
                line.append(r["status"])
                if r.get("note"):
                    fails.append("%s %s %s %s: %s" % (k + (c, r["note"])))
        body.append(line)
    text = render_table(head, body, md, title="Correctness check: each contender's loss and full weight gradients "
                                              "against the reference for the same weights and input (largest "
                                              "relative error; ok = within 1e-9 float64 / 1e-4 float32 for the "
                                              "loss, 10x that for the gradients)")
    if fails:
        text += "\n\n" + "\n".join(("- " if md else "  ") + f for f in fails)
    return text


# --------------------------------------------------------------------------- scaling runs


def scaling_points(base=(100, 16, 64, 64)):
    """Sweeps of T, H and B around ``base`` (T, B, I, H); I follows H in the H sweep."""
    T0, B0, I0, H0 = base
    pts = []
    for T in (25, 50, 100, 200, 400, 800):
        pts.append(("T", T, (T, B0, I0, H0)))
    for H in (32, 64, 128, 256, 512):
        pts.append(("H", H, (T0, B0, H, H)))
    for B in (1, 4, 16, 64, 256):
        pts.append(("B", B, (T0, B, I0, H0)))
    return pts


#: (config, checkpoint values) of the checkpointed-vs-full runs; checkpoint=k keeps every k-th state
#: (None = full BPTT).  Memory O(T/k + k): k ~ sqrt(T) is the sweet spot.
CHECKPOINT_RUNS = (("long", (None, 8, 32, 128)), ("medium", (None, 10, 32)))


def checkpoint_kwargs(k):
    """Layer keyword arguments that turn on checkpointed BPTT (None -> full BPTT)."""
    return None if k is None else {"checkpoint": k}


def run_scaling(args, progress_enabled=True):
    """Time and NumPy-allocated memory of tinybptt (and torch's time) against T, H and B;
    then checkpointed against full BPTT on the long config."""
    rows = []
    pts = scaling_points()
    cells = args.cells
    dtype = args.dtype[0]
    threads = args.threads[0]
    with_torch = "torch" in args.peers and peer_available("torch")
    n_ck = sum(len(ks) for _, ks in CHECKPOINT_RUNS)
    total = len(cells) * (len(pts) * (2 + with_torch) + n_ck)
    prog = Progress(total, progress_enabled and not args.quiet)
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="tinybptt-bench-")
    common = {"op": "measure", "dtype": dtype, "seed": args.seed, "repeat": args.scaling_repeat, "warmup": 1,
              "grad_trace": args.grad_trace, "gc_each_run": args.gc_each_run,
              "budget": args.budget / 2, "max_iter_s": args.max_iter_s, "min_repeat": 1}
    with WorkerPool(threads, log_dir) as pool:
        for cell in cells:
            for axis, val, shape in pts:
                row = {"cell": cell, "axis": axis, "value": val, "shape": list(shape), "dtype": dtype,
                       "threads": threads}
                for c in ["tinybptt:sequence", "numpy"] + (["torch"] if with_torch else []):
                    req = dict(common, contender=c, cell=cell, shape=list(shape), memory=c != "torch")
                    row[c] = measure_one(pool, req, args.timeout)
                    prog.update("scaling %s %s=%d %s" % (cell, axis, val, SHORT[c]))
                rows.append(row)
            for cname, ks in CHECKPOINT_RUNS:
                shape = CONFIGS[cname]
                for k in ks:
                    row = {"cell": cell, "axis": "checkpoint", "value": k, "config": cname, "shape": list(shape),
                           "dtype": dtype, "threads": threads}
                    req = dict(common, contender="tinybptt:sequence", cell=cell, shape=list(shape), memory=True,
                               layer_kwargs=checkpoint_kwargs(k))
                    row["tinybptt:sequence"] = measure_one(pool, req, args.timeout)
                    prog.update("checkpoint %s %s k=%s" % (cell, cname, k))
                    rows.append(row)
    prog.close()
    return rows


def _fmt_bytes(b):
    if b is None:
        return "-"
    for unit, k in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if abs(b) >= k:
            return "%.1f %s" % (b / k, unit)
    return "%d B" % b


def _slope(xs, ys):
    """Least-squares exponent p of y ~ x^p (log-log fit); None with too few points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else None


def _get(res, key):
    return res.get(key) if res and res.get("ok") else None


def scaling_tables(rows, md=False):
    blocks = []
    sweeps = [r for r in rows if r["axis"] in ("T", "H", "B")]
    cells = []
    for r in rows:
        if r["cell"] not in cells:
            cells.append(r["cell"])
    for cell in cells:
        for axis in ("T", "H", "B"):
            rs = [r for r in sweeps if r["cell"] == cell and r["axis"] == axis]
            if not rs:
                continue
            head = [axis, "T,B,I,H", "seq ms", "torch ms", "numpy-bptt ms", "seq / torch",
                    "seq saved (fwd)", "seq peak", "numpy-bptt saved", "numpy-bptt peak"]
            body = []
            for r in rs:
                s, t, n = r.get("tinybptt:sequence"), r.get("torch"), r.get("numpy")
                st, tt = _get(s, "total_ms"), _get(t, "total_ms")
                body.append([r["value"], ",".join(map(str, r["shape"])), _fmt_ms(st), _fmt_ms(tt),
                             _fmt_ms(_get(n, "total_ms")), _fmt_ratio(st / tt if st and tt else None),
                             _fmt_bytes(_get(s, "saved_bytes")), _fmt_bytes(_get(s, "peak_bytes")),
                             _fmt_bytes(_get(n, "saved_bytes")), _fmt_bytes(_get(n, "peak_bytes"))])
            vals = [r["value"] for r in rs]
            fits = []
            for label, c, key in (("seq time", "tinybptt:sequence", "total_ms"), ("torch time", "torch", "total_ms"),
                                  ("seq saved memory", "tinybptt:sequence", "saved_bytes")):
                p = _slope(vals, [_get(r.get(c), key) for r in rs])
                if p is not None:
                    fits.append("%s ~ %s^%.2f" % (label, axis, p))
            title = "%s scaling with %s (%s): %s" % (cell.upper(), axis, rs[0]["dtype"], "; ".join(fits) or "no fit")
            blocks.append(render_table(head, body, md, title=title))
        ck = [r for r in rows if r["cell"] == cell and r["axis"] == "checkpoint"]
        if ck:
            head = ["config", "checkpoint k", "total ms", "fwd ms", "bwd ms", "time vs full",
                    "held after fwd", "peak", "peak vs full", "layer: stored", "layer: peak"]
            body = []
            full = {}
            for r in ck:
                s = r["tinybptt:sequence"]
                if r["value"] is None and s.get("ok"):
                    full[r["config"]] = s
            for r in ck:
                s = r["tinybptt:sequence"]
                f = full.get(r["config"])
                label = "full BPTT" if r["value"] is None else str(r["value"])
                if not s.get("ok"):
                    body.append([r["config"], label] + ["-"] * 8 + [s.get("error", "?")[:80]])
                    continue
                tr = s["total_ms"] / f["total_ms"] if f else None
                mr = s["peak_bytes"] / f["peak_bytes"] if f and f.get("peak_bytes") else None
                body.append([r["config"], label, _fmt_ms(s["total_ms"]), _fmt_ms(s["fwd_ms"]), _fmt_ms(s["bwd_ms"]),
                             _fmt_ratio(tr), _fmt_bytes(s.get("saved_bytes")), _fmt_bytes(s.get("peak_bytes")),
                             _fmt_ratio(mr), _fmt_bytes(s.get("layer_stored_bytes")),
                             _fmt_bytes(s.get("layer_peak_bytes"))])
            blocks.append(render_table(head, body, md, title="%s checkpointed BPTT against full BPTT" % cell.upper()))
    blocks.append("Memory is what NumPy allocated as seen by tracemalloc: `saved` = held after the forward pass "
                  "(the graph's saved activations and outputs), `peak` = the most held at once during "
                  "forward+backward, both above the baseline of parameters and gradient buffers. "
                  "Memory the C kernels malloc themselves is not included; PyTorch's is not measured. "
                  "`layer: stored/peak` is tinybptt.bptt.activation_bytes(): the bytes the graph keeps "
                  "between forward and backward, and with checkpointing the stored states plus the largest "
                  "recomputed segment.")
    return "\n\n".join(blocks)


# --------------------------------------------------------------------------- GEMM kernel runs


GEMM_SIZES = (16, 32, 64, 128, 256, 512, 1024)


def bench_gemm_path():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(here, "benchmarks", "bench_gemm.py")


def run_gemm(args):
    """benchmarks/bench_gemm.py's run() in a pinned worker per thread count and dtype."""
    path = bench_gemm_path()
    if not os.path.exists(path):
        return [], ["GEMM runs skipped: %s not found (needs a source checkout)" % path]
    rows, notes = [], []
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="tinybptt-bench-")
    for threads in args.threads:
        with WorkerPool(threads, log_dir) as pool:
            for dtype in args.dtype:
                req = {"op": "gemm", "bench_gemm": path, "sizes": list(args.gemm_sizes), "dtype": dtype,
                       "threads": threads, "repeat": args.gemm_repeat}
                res = pool.request("tinybptt", req, timeout=args.timeout)
                if res.get("ok"):
                    for r in res["rows"]:
                        rr = dict(r)
                        rr.setdefault("dtype", dtype)
                        rr.setdefault("threads", threads)
                        rows.append(rr)
                else:
                    notes.append("GEMM %s %dt: error: %s" % (dtype, threads, res.get("error")))
    return rows, notes


#: issue 5's GEMM targets: tb / torch.matmul GFLOP/s >= 0.85 for sizes 256-1024, tb / NumPy >= 1.0 for 16-128.
GEMM_TORCH_TARGET = 0.85
GEMM_NUMPY_TARGET = 1.0


def gemm_table(rows, md=False):
    """GFLOP/s per implementation and size, with the issue-5 GEMM targets as pass/fail columns."""
    if not rows:
        return ""
    impls = []
    for r in rows:
        for k in (r.get("gflops") or {}):
            if k not in impls:
                impls.append(k)
    head = ["n", "dtype", "threads", "kernel"] + ["%s GFLOP/s" % k.replace("_", " ") for k in impls] + [
        "tb / torch", "target", "tb / numpy", "target"]
    body = []
    for r in rows:
        g = r.get("gflops") or {}
        n = r.get("size")
        tt, tn = r.get("tb_over_torch"), r.get("tb_over_numpy")
        t_target = t_res = n_target = n_res = "-"
        if isinstance(n, int) and 256 <= n <= 1024 and tt is not None:
            t_target, t_res = ">=%.2f" % GEMM_TORCH_TARGET, "PASS" if tt >= GEMM_TORCH_TARGET else "FAIL"
        if isinstance(n, int) and 16 <= n <= 128 and tn is not None:
            n_target, n_res = ">=%.2f" % GEMM_NUMPY_TARGET, "PASS" if tn >= GEMM_NUMPY_TARGET else "FAIL"
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


# --------------------------------------------------------------------------- machine description


def machine_info():
    """CPU, cores, load, library versions and tinybptt's build -- for the top of RESULTS.md."""
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": platform.python_version(), "platform": platform.platform(),
            "cores": os.cpu_count(), "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
            f.seek(0)
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
            info["simd"] = " ".join(x for x in ("avx512f", "avx2", "fma", "sse4_2") if x in flags)
    except OSError:
        info["cpu"] = platform.processor() or "unknown"
    try:
        info["loadavg"] = " ".join("%.2f" % v for v in os.getloadavg())
    except OSError:
        pass
    from importlib import metadata
    for pkg in ("torch", "jax", "jaxlib"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = "not installed"
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = "%s %s" % (blas.get("name", "?"), blas.get("version", ""))
    except Exception:  # noqa: BLE001 - older NumPy
        pass
    try:
        from tinybptt import kernels
        info["tinybptt_build"] = kernels.c_backend.build_info() if kernels.c_backend else "C backend not built"
    except Exception as exc:  # noqa: BLE001
        info["tinybptt_build"] = "unknown (%s)" % exc
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        info["git"] = subprocess.run(["git", "-C", root, "log", "-1", "--format=%h %s"], capture_output=True,
                                     text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        pass
    return info


def machine_text(info, md=False):
    keys = ("date", "cpu", "simd", "cores", "loadavg", "loadavg_end", "platform", "python", "numpy", "numpy_blas", "torch",
            "jax", "jaxlib", "tinybptt_build", "git")
    lines = []
    for k in keys:
        if k in info:
            lines.append(("- **%s**: %s" if md else "%-15s %s") % (k if md else k + ":", info[k]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def plot_results(summary, path, scaling=None):
    """Ratio-to-best-peer bars per cell and config, with the target lines (``path``); scaling
    curves in ``<path>-scaling.png`` (or in ``path`` itself when there is no grid).  Returns the paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not summary:
        return [plot_scaling(scaling, path, plt)] if scaling else []
    groups = []
    for r in summary:
        g = (r["threads"], r["dtype"], r["cell"])
        if g not in groups:
            groups.append(g)
    n = max(1, len(groups))
    fig, axes = plt.subplots(n, 1, figsize=(9, 3.2 * n), squeeze=False)
    series = (("seq_ratio", "sequence / best peer"), ("cell_ratio", "cell / best peer"),
              ("ops_ratio", "ops / torch-ops"), ("npb_ratio", "NumPy backend / best peer"))
    for ax, g in zip(axes[:, 0], groups):
        rows = [r for r in summary if (r["threads"], r["dtype"], r["cell"]) == g]
        xs = np.arange(len(rows))
        width = 0.8 / len(series)
        for k, (key, label) in enumerate(series):
            vals = np.array([r[key] if r[key] is not None else np.nan for r in rows], dtype=float)
            px = xs + (k - (len(series) - 1) / 2) * width
            ax.plot(px, vals, "o", ms=7, label=label)
            for x_, v in zip(px, vals):
                if np.isfinite(v):
                    ax.annotate("%.2f" % v, (x_, v), textcoords="offset points", xytext=(0, 6), ha="center",
                                fontsize=6)
        for x_, r in zip(xs, rows):  # the sequence-mode target of each config
            ax.hlines(r["seq_target"], x_ - 0.45, x_ + 0.45, colors="green", linestyles="--", lw=1)
        ax.axhline(1.0, color="black", ls=":", lw=1)
        ax.set_xticks(xs)
        ax.set_xticklabels([r["config"] for r in rows])
        ax.set_yscale("log")
        ax.set_ylabel("time ratio (log)")
        ax.margins(y=0.25)
        ax.set_title("%s %s, %d thread(s): tinybptt time / peer time, lower is better; "
                     "green dashes: sequence target" % (g[2].upper(), g[1], g[0]), fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths = [path]
    if scaling:
        root, ext = os.path.splitext(path)
        paths.append(plot_scaling(scaling, root + "-scaling" + (ext or ".png"), plt))
    return paths


def plot_scaling(scaling, spath, plt):
    """Time and saved memory against T, H and B (log-log), one column per axis."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for j, axis in enumerate(("T", "H", "B")):
        for cell in dict.fromkeys(r["cell"] for r in scaling):
            rs = [r for r in scaling if r["cell"] == cell and r["axis"] == axis]
            vals = [r["value"] for r in rs]
            for c, style in (("tinybptt:sequence", "-o"), ("torch", "--s"), ("numpy", ":^")):
                ts = [_get(r.get(c), "total_ms") for r in rs]
                if any(t is not None for t in ts):
                    axes[0, j].plot(vals, [np.nan if t is None else t for t in ts], style,
                                    label="%s %s" % (cell, SHORT[c]))
            mem = [_get(r.get("tinybptt:sequence"), "saved_bytes") for r in rs]
            if any(m is not None for m in mem):
                axes[1, j].plot(vals, [np.nan if m is None else m / 2**20 for m in mem], "-o", label="%s seq" % cell)
        for i in range(2):
            axes[i, j].set_xscale("log")
            axes[i, j].set_yscale("log")
            axes[i, j].set_xlabel(axis)
        axes[0, j].set_ylabel("ms per fwd+bwd")
        axes[1, j].set_ylabel("MB saved by forward")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(spath, dpi=110)
    plt.close(fig)
    return spath


# --------------------------------------------------------------------------- command line


def _csv(kind, allowed=None, conv=str):
    def parse(s):
        items = [conv(p.strip()) for p in s.split(",") if p.strip()]
        if allowed is not None:
            bad = [i for i in items if i not in allowed]
            if bad:
                raise argparse.ArgumentTypeError("unknown %s %s; choose from %s" % (kind, ",".join(map(str, bad)),
                                                                                 ",".join(allowed)))
        return items
    return parse


def build_parser(prog="tinybptt bench"):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Time forward+backward of RNN/LSTM/GRU layers: tinybptt's modes against PyTorch, JAX and "
                    "NumPy, all pinned to the same thread count, in one run.",
        epilog="Example: tinybptt bench --cells lstm --configs tiny,small --repeat 5")
    p.add_argument("--cells", type=_csv("cell", CELLS), default=list(CELLS), help="lstm,gru,rnn (default all)")
    p.add_argument("--configs", type=_csv("config"), default=list(CONFIGS),
                   help="tiny,small,medium,large,long or TxBxIxH (default all five)")
    p.add_argument("--dtype", type=_csv("dtype", ("float32", "float64")), default=["float32"],
                   help="float32 and/or float64 (default float32)")
    p.add_argument("--modes", type=_csv("mode", MODES), default=list(MODES), help="tinybptt modes (C backend)")
    p.add_argument("--backends", type=_csv("backend", ("c", "numpy")), default=["c", "numpy"],
                   help="c: the modes above; numpy: also mode=sequence on the NumPy reference backend")
    p.add_argument("--peers", type=_csv("peer", PEERS), default=list(PEERS),
                   help="torch,jax,torch-ops,numpy (missing ones are skipped with a note); '' for none")
    p.add_argument("--threads", type=_csv("thread count", conv=int), default=[1], help="e.g. 1,2 (default 1)")
    p.add_argument("--repeat", type=int, default=20, help="most timed runs per measurement (default 20)")
    p.add_argument("--min-repeat", type=int, default=3, help="fewest timed runs, whatever the budget (default 3)")
    p.add_argument("--rounds", type=int, default=6,
                   help="interleave the contenders of a row over this many rounds of timed runs (default 6: "
                        "on a shared machine a contender's speed can halve for a second at a time, and "
                        "short rounds spread such bursts over every contender)")
    p.add_argument("--settle", type=float, default=0.2,
                   help="with more than one thread, seconds of pause before each contender's batch, so the "
                        "thread pools of the one before stop spinning (default 0.2)")
    p.add_argument("--stat", choices=("median", "min"), default="median",
                   help="statistic of the timed runs used for times and ratios (default median, the protocol; "
                        "min is steadier on a busy machine)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs (JAX gets one more, for compilation)")
    p.add_argument("--budget", type=float, default=2.0,
                   help="seconds of timed runs per measurement: caps the repeats of slow contenders (default 2)")
    p.add_argument("--max-iter-s", type=float, default=20.0,
                   help="a contender whose warm-up iteration takes longer is timed once only (default 20)")
    p.add_argument("--skip-numpy-backend", type=_csv("config"), default=[],
                   help="configs on which to skip the NumPy-backend contender, e.g. large")
    p.add_argument("--grad-trace", action="store_true",
                   help="time tinybptt layers with layer.record_grad_trace on (their default); off by default "
                        "because no peer records per-step gradients")
    p.add_argument("--no-split", action="store_true", help="skip the instrumented kernel/overhead runs")
    p.add_argument("--gc-each-run", action="store_true",
                   help="a full gc.collect() before every timed run (the older protocol, a cold start); "
                        "default: collect once per batch of runs and keep the collector off while they run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds before a measurement is abandoned")
    p.add_argument("--json", metavar="FILE", help="write every measurement (and machine info) as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown")
    p.add_argument("--plot", metavar="FILE.png", help="plot ratios to the best peer (and scaling curves)")
    p.add_argument("--check", action="store_true",
                   help="compare every contender's loss and full gradients with the reference peer, then exit")
    p.add_argument("--scaling", action="store_true",
                   help="also run the scaling sweeps (T, H, B; checkpointed vs full BPTT) for the first dtype "
                        "and thread count")
    p.add_argument("--scaling-only", action="store_true", help="run only the scaling sweeps")
    p.add_argument("--scaling-repeat", type=int, default=5)
    p.add_argument("--gemm", action="store_true", help="also run benchmarks/bench_gemm.py (GEMM GFLOP/s)")
    p.add_argument("--gemm-only", action="store_true", help="run only the GEMM kernel runs")
    p.add_argument("--floor-from-gemm", action="store_true",
                   help="FLOP floor from this run's best measured GEMM rate instead of DESIGN.md's 135/66 GFLOP/s "
                        "(on a busy machine the measured rate is too low to be a floor)")
    p.add_argument("--gemm-sizes", type=_csv("size", conv=int), default=list(GEMM_SIZES))
    p.add_argument("--gemm-repeat", type=int, default=5)
    p.add_argument("--log-dir", help="where worker stderr logs go (default: a new temp dir)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-threads", type=int, default=1, help=argparse.SUPPRESS)
    return p


def main(argv=None, prog="tinybptt bench"):
    """Entry point of ``tinybptt bench``; returns the process exit code."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.worker_threads)
        return 0
    for c in args.configs:
        try:
            parse_config(c)
        except ValueError as exc:
            parser.error(str(exc))
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if any(t < 1 for t in args.threads):
        parser.error("--threads: thread counts must be at least 1")
    command = "tinybptt bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    out = {"command": command, "machine": machine_info()}
    code = 0
    if args.check:
        out["check"] = run_check(args)
        if any(r["status"] == "ok" and not r["passed"] for r in out["check"]):
            code = 1
    else:
        if args.gemm or args.gemm_only:  # first, so the grid's FLOP floor can use the measured rate
            out["gemm"], out["gemm_notes"] = run_gemm(args)
            if args.floor_from_gemm:
                out["floor_gflops"] = [[k[0], k[1], v] for k, v in gemm_floor_rates(out["gemm"]).items()]
        if not (args.scaling_only or args.gemm_only):
            out["results"], out["notes"] = run_grid(args)
        if args.scaling or args.scaling_only:
            out["scaling"] = run_scaling(args)
        if args.plot and (out.get("results") or out.get("scaling")):
            try:
                summary = summarize(out["results"], _floor(out)) if out.get("results") else None
                out["plots"] = [os.path.abspath(p) for p in plot_results(summary, args.plot, out.get("scaling"))]
            except ImportError:
                out.setdefault("notes", []).append("--plot: matplotlib is not installed; no plot written")
    try:
        out["machine"]["loadavg_end"] = " ".join("%.2f" % v for v in os.getloadavg())
    except OSError:
        pass
    if out.get("results"):
        out["summary"] = [{k: v for k, v in r.items() if k != "by"} for r in summarize(out["results"], _floor(out))]
    print(render(out, md=False))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=_json_default)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render(out, md=True, header=True, plot_dir=os.path.dirname(os.path.abspath(args.markdown)))
                    + "\n")
    return code


def _floor(out):
    return {(d, t): v for d, t, v in out.get("floor_gflops") or []}


def load_warning(machine, threads=1):
    """A warning when other processes likely competed for the cores this run used.

    The 1-minute load average counts this run's own ``threads`` busy threads too;
    the rest is other work.  It is harmful once it exceeds the cores this run
    left free (plus a margin): any at all for a run using every core.
    """
    cores = machine.get("cores") or 1
    loads = []
    for key in ("loadavg", "loadavg_end"):
        try:
            loads.append(float(str(machine.get(key, "")).split()[0]))
        except (ValueError, IndexError):
            pass
    if not loads:
        return None
    others = max(loads) - threads
    if others > max(cores - threads, 0) + 0.25:
        return ("Warning: the machine was busy (1-minute load average up to %.1f on %d cores, this run using %d "
                "thread%s): other processes competed for the CPU, so absolute times are inflated and %s; compare "
                "ratios and look at the spread." % (max(loads), cores, threads, "" if threads == 1 else "s",
                                                    "multi-thread results (which then suffer badly, for every "
                                                    "contender) are unreliable" if threads > 1 else
                                                    "some rows may be disturbed"))
    return None


def _run_threads(out):
    ts = [r.get("threads", 1) for key in ("results", "scaling", "gemm") for r in out.get(key) or []]
    return max(ts) if ts else 1


def render(out, md=False, header=False, headline=True, plot_dir=None, embed_plots=True):
    """All tables of one ``tinybptt bench`` run (the dict written by --json), as text or Markdown.

    ``plot_dir``: the directory the Markdown will live in, for relative image links;
    ``embed_plots=False`` names the plot files instead of embedding them.
    """
    blocks = []
    if header:
        blocks += ["Command: `%s`" % out["command"], machine_text(out["machine"], md=md)]
    warn = (load_warning(out.get("machine") or {}, _run_threads(out))
            if any(out.get(k) for k in ("results", "scaling", "gemm")) else None)
    if warn:
        blocks.append(("**%s**" if md else "%s") % warn)
    if out.get("check"):
        blocks.append(check_table(out["check"], md))
    if out.get("gemm") or out.get("gemm_notes"):
        blocks.append(gemm_table(out.get("gemm") or [], md))
        blocks += [("- " if md else "") + n for n in out.get("gemm_notes") or []]
    if out.get("results"):
        floor = _floor(out)
        tables, summary = grid_tables(out["results"], md, floor)
        if headline:
            blocks.append(headline_table(summary, md))
        blocks += [tables, split_table(out["results"], md), notes_text(out["results"], out.get("notes") or [], md, floor)]
    if out.get("scaling"):
        blocks.append(scaling_tables(out["scaling"], md))
    if out.get("plots"):
        rel = [os.path.relpath(p, plot_dir) if plot_dir else p for p in out["plots"]]
        if md and embed_plots:
            blocks.append("\n\n".join("![%s](%s)" % (os.path.basename(p), p) for p in rel))
        elif md:
            blocks.append("Plots written by this run (not in git: `*.png` is ignored): "
                          + ", ".join("`%s`" % p for p in rel))
        else:
            blocks.append("plots: " + ", ".join(out["plots"]))
    return "\n\n".join(b for b in blocks if b)


"""One runner per contender: the same workload written in each library.

A runner owns a model holding the shared weights.  ``forward()`` returns a
handle, ``backward(handle)`` does zero-grad + backward; ``loss_value(handle)``
and ``grads()`` report what was computed, for the agreement check.

    tinybptt:sequence  tinybptt.nn.<CELL>(mode="sequence"), C backend
    tinybptt:cell      mode="cell" (one fused step node per time step), C backend
    tinybptt:ops       mode="ops" (one graph node per primitive op), C backend
    tinybptt:numpy     mode="sequence" on the NumPy reference backend
    torch              torch.nn.LSTM / GRU / RNN
    jax                jax.jit(jax.value_and_grad(loss)) over lax.scan of the same cell
    torch-ops          a PyTorch eager Python loop of primitive ops (the op-level peer)
    numpy              tinybptt's NumPy reference kernels called directly, no autograd
                       graph (a baseline: never the peer a target is measured against)
"""
import time

import numpy as np

from ..kernels.cells import cell_kind
from .problems import PARAM_NAMES, is_tinybptt


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
    """``tinybptt.kernels.numpy.seq_forward`` / ``seq_backward`` on the workload, without the engine.

    The cell formulas are the reference kernels' own; this runner only adds the
    loss ``sum(out**2)`` (its gradient ``2*out`` goes in as ``d_out``) and keeps
    the saved activations between forward and backward.
    """

    def __init__(self, cell, x, params):
        from ..kernels import numpy as ref
        self.ref, self.kind = ref, cell_kind(cell, "tanh")
        self.x = x
        self.p = [params[n] for n in PARAM_NAMES]
        B, H = x.shape[1], params["weight_hh_l0"].shape[1]
        self.h0 = np.zeros((B, H), dtype=x.dtype)
        self.c0 = self.h0 if self.kind == "lstm" else None
        self.saved = self.out = self._grads = None

    def forward(self):
        self.out, _, self.saved = self.ref.seq_forward(self.kind, self.x, self.h0, self.c0, *self.p)
        return float(np.sum(self.out * self.out))

    def backward(self, handle):
        g = self.ref.seq_backward(self.kind, self.saved, 2 * self.out, need_dx=False, need_trace=False)
        self._grads = dict(zip(PARAM_NAMES, (g["dw_ih"], g["dw_hh"], g["db_ih"], g["db_hh"])))
        self.saved = self.out = None

    def loss_value(self, handle):
        return handle

    def grads(self):
        return self._grads


class LayerRunner(Runner):
    """A layer with PyTorch's conventions (tinybptt.nn or torch.nn): ``self.layer(self.x)[0]`` is
    the output, ``layer.zero_grad()`` and ``loss.backward()`` do the rest."""

    def forward(self):
        out = self.layer(self.x)[0]
        return (out * out).sum()

    def backward(self, loss):
        self.layer.zero_grad()
        loss.backward()

    def loss_value(self, loss):
        return float(loss.item())


class TinyRunner(LayerRunner):
    """tinybptt.nn.<CELL>(I, H, dtype=..., mode=...) on a chosen kernel backend."""

    def __init__(self, cell, x, params, mode, backend, layer_kwargs=None, grad_trace=False):
        import tinybptt
        import tinybptt.nn as tnn
        from tinybptt import kernels
        cls = getattr(tnn, cell.upper())
        tinybptt.set_backend(backend)
        self.backend, self.kernels = backend, kernels
        self.kernel_module = kernels.BACKENDS[backend]
        I, H = x.shape[2], params["weight_hh_l0"].shape[1]
        self.layer = cls(I, H, dtype=x.dtype, mode=mode, **(layer_kwargs or {}))
        # No peer records per-step gradients; time the layer without its grad_trace unless asked.
        self.layer.record_grad_trace = bool(grad_trace)
        self.params = dict(self.layer.named_parameters())
        for name in PARAM_NAMES:
            p = self.params[name]
            if p.data.shape != params[name].shape:
                raise RuntimeError("tinybptt.nn.%s.%s has shape %s, expected %s"
                                   % (cls.__name__, name, p.data.shape, params[name].shape))
            p.data[...] = params[name]
        self.x = tinybptt.tensor(x)

    def forward(self):
        if self.kernels.backend is not self.kernel_module:  # another runner in this worker switched it
            self.kernels.set_backend(self.backend)
        return super().forward()

    def grads(self):
        return {n: self.params[n].grad for n in PARAM_NAMES}


class TorchRunner(LayerRunner):
    """torch.nn.LSTM / GRU / RNN (the cuDNN-free CPU path: ATen's fused loop over MKL GEMMs)."""

    def __init__(self, cell, x, params):
        import torch
        I, H = x.shape[2], params["weight_hh_l0"].shape[1]
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.layer = cls(I, H, dtype=getattr(torch, str(x.dtype)))
        with torch.no_grad():
            for name, p in self.layer.named_parameters():
                p.copy_(torch.from_numpy(params[name]))
        self.x = torch.from_numpy(x)

    def grads(self):
        return {n: p.grad.numpy() for n, p in self.layer.named_parameters()}


def torch_ops_step(torch, cell, x_t, h, c, wih, whh, bih, bhh):
    """One step of ``cell`` as a PyTorch user writes it op by op -> (h, c)."""
    if cell == "lstm":
        a = (x_t @ wih + bih) + (h @ whh + bhh)
        i, f, g, o = a.chunk(4, 1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        return o * torch.tanh(c), c
    if cell == "gru":
        xr, xz, xn = (x_t @ wih + bih).chunk(3, 1)
        hr, hz, hn = (h @ whh + bhh).chunk(3, 1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None
    return torch.tanh((x_t @ wih + bih) + (h @ whh + bhh)), None


class TorchOpsRunner(Runner):
    """A PyTorch eager Python loop of primitive ops: the op-level peer of mode="ops".

    The textbook op sequence (``torch_ops_step``): per step
    ``gi = x[t] @ W_ih^T + b_ih``, ``gh = h @ W_hh^T + b_hh``, then ``a = gi + gh``
    split into gates (GRU: gi and gh split separately), the gate nonlinearities and
    the state update op by op; outputs stacked.  tinybptt's ``mode="ops"`` runs the
    same formulas with leaner nodes: each product-plus-bias is one ``linear`` node;
    the RNN and LSTM form ``a`` as one product ``[x[t], h] @ [W_ih^T; W_hh^T] +
    (b_ih + b_hh)`` (concat and linear where this loop has two matmuls and three
    adds); the GRU update runs as ``n + z * (h - n)``.
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
        weights = (w["weight_ih_l0"].t(), w["weight_hh_l0"].t(), w["bias_ih_l0"], w["bias_hh_l0"])
        h = torch.zeros(B, H, dtype=x.dtype)
        c = torch.zeros(B, H, dtype=x.dtype) if self.cell == "lstm" else None
        outs = []
        for t in range(T):
            h, c = torch_ops_step(torch, self.cell, x[t], h, c, *weights)
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


def jax_cell_step(jax, cell, H, whh_t, bhh):
    """The scan body of ``cell`` for JAX: (carry, projected input) -> (carry, h).

    For the RNN and LSTM ``b_hh`` is already folded into the projected input
    (pass ``bhh=None``); the GRU needs it inside the step, where ``r`` scales it.
    """
    jnp = jax.numpy
    if cell == "lstm":
        def step(carry, xa):
            h, c = carry
            a = xa + h @ whh_t
            i, f = jax.nn.sigmoid(a[:, :H]), jax.nn.sigmoid(a[:, H:2 * H])
            g, o = jnp.tanh(a[:, 2 * H:3 * H]), jax.nn.sigmoid(a[:, 3 * H:])
            c = f * c + i * g
            h = o * jnp.tanh(c)
            return (h, c), h
    elif cell == "gru":
        def step(h, xa):
            ha = h @ whh_t + bhh
            r = jax.nn.sigmoid(xa[:, :H] + ha[:, :H])
            z = jax.nn.sigmoid(xa[:, H:2 * H] + ha[:, H:2 * H])
            n = jnp.tanh(xa[:, 2 * H:] + r * ha[:, 2 * H:])
            h = (1 - z) * n + z * h
            return h, h
    else:
        def step(h, xa):
            h = jnp.tanh(xa + h @ whh_t)
            return h, h
    return step


def jax_layer(jax, cell, H):
    """``layer(p, xs) -> outs (T, B, H)``: the input projection of all steps is one einsum
    hoisted out of ``lax.scan`` over the step (as a JAX user would write it)."""
    jnp = jax.numpy

    def layer(p, xs):
        B = xs.shape[1]
        xp = jnp.einsum("tbi,gi->tbg", xs, p["weight_ih_l0"]) + p["bias_ih_l0"]
        bhh = p["bias_hh_l0"] if cell == "gru" else None
        if bhh is None:
            xp = xp + p["bias_hh_l0"]
        step = jax_cell_step(jax, cell, H, p["weight_hh_l0"].T, bhh)
        h0 = jnp.zeros((B, H), dtype=xs.dtype)
        _, outs = jax.lax.scan(step, (h0, h0) if cell == "lstm" else h0, xp)
        return outs
    return layer


class JaxRunner(Runner):
    """``jax.jit(jax.value_and_grad(loss))`` over ``lax.scan`` of the cell, PyTorch formulas.

    "Forward" is the jitted loss alone; "backward" is value_and_grad's time minus that.
    """

    def __init__(self, cell, x, params):
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        self.jax = jax
        layer = jax_layer(jax, cell, params["weight_hh_l0"].shape[1])

        def loss(p, xs):
            outs = layer(p, xs)
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

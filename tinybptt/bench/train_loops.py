"""The adding-problem training loop, written once per library, from the same starting weights.

Each loop is what a user of that library would write: one recurrent layer and a
linear read-out of its last output, mean squared error, Adam, gradient-norm
clipping.  tinybptt and PyTorch read the last output where their layers return it
on its own, as the final hidden state ``h_n`` (one array of (B, H), whose gradient
the layer's backward takes as it is; out[-1] would first be scattered into a
(T, B, H) array of zeros); JAX's jitted step has no such choice to make.
``step(x, y)`` trains on one batch and returns the loss as a Python
float (every loop reads its loss each step, as a training log does);
``evaluate(x, y)`` is the test loss without building a graph.

    tinybptt  tinybptt.apps.train.SeqModel (nn.<CELL>(mode="sequence"), default
              settings), tinybptt.optim.Adam, tinybptt.nn.utils.clip_grad_norm_
    torch     torch.nn.<CELL> + torch.nn.Linear, torch.optim.Adam,
              torch.nn.utils.clip_grad_norm_
    jax       one jax.jit of the whole update: value_and_grad over lax.scan of the
              cell (runners.jax_layer), the global-norm clip and Adam written out
"""
import math

import numpy as np

from .problems import make_problem

#: The adding problem's input has two features (value, marker) and one target.
INPUT_SIZE, OUTPUT_SIZE = 2, 1
BETAS, EPS = (0.9, 0.999), 1e-8


def initial_weights(cell, H, dtype="float32", seed=0):
    """The layer's weights (PyTorch names) and the read-out's ``head.weight`` (1, H), ``head.bias`` (1,):
    uniform in (-1/sqrt(H), 1/sqrt(H)), as torch.nn initialises both."""
    _, w = make_problem(cell, 1, 1, INPUT_SIZE, H, dtype, seed)
    rng = np.random.default_rng(seed + 1)
    k = 1.0 / math.sqrt(H)
    w["head.weight"] = rng.uniform(-k, k, (OUTPUT_SIZE, H)).astype(dtype)
    w["head.bias"] = rng.uniform(-k, k, (OUTPUT_SIZE,)).astype(dtype)
    return w


class TinyLoop:
    """tinybptt: the model of ``tinybptt train`` (apps.train.SeqModel) with the layer's default settings,
    trained with the same optimiser and clipping.  The layer records its gradient trace at every step,
    as in a user's own loop (``tinybptt train`` itself records it only at its probes)."""

    def __init__(self, cell, weights, H, lr, clip, dtype="float32"):
        from .. import optim
        from ..apps.train import SeqModel
        from ..nn.utils import clip_grad_norm_
        self.model = SeqModel("adding", cell, H, np.dtype(dtype))
        named = dict(self.model.named_parameters())
        for name, value in weights.items():
            named[name if name.startswith("head.") else "rnn." + name].data[...] = value
        self.params = self.model.parameters()
        self.opt = optim.Adam(self.params, lr=lr, betas=BETAS, eps=EPS)
        self.clip, self.clip_grad_norm_ = clip, clip_grad_norm_

    def step(self, x, y):
        loss, _ = self.model.loss(x, y)
        self.opt.zero_grad()
        loss.backward()
        self.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        return float(loss.item())

    def evaluate(self, x, y):
        return self.model.metrics(x, y)["loss"]


class TorchLoop:
    """PyTorch: torch.nn.<CELL> and a Linear read-out, torch.optim.Adam, clip_grad_norm_."""

    def __init__(self, cell, weights, H, lr, clip, dtype="float32"):
        import torch
        self.torch = torch
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        dt = getattr(torch, dtype)
        self.rnn = cls(INPUT_SIZE, H, dtype=dt)
        self.head = torch.nn.Linear(H, OUTPUT_SIZE, dtype=dt)
        with torch.no_grad():
            for name, p in self.rnn.named_parameters():
                p.copy_(torch.from_numpy(weights[name]))
            self.head.weight.copy_(torch.from_numpy(weights["head.weight"]))
            self.head.bias.copy_(torch.from_numpy(weights["head.bias"]))
        self.params = list(self.rnn.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.Adam(self.params, lr=lr, betas=BETAS, eps=EPS)
        self.clip = clip

    def _loss(self, x, y):
        final = self.rnn(self.torch.from_numpy(x))[1]
        h_n = final[0] if isinstance(final, tuple) else final  # LSTM: (h_n, c_n)
        pred = self.head(h_n[-1])
        return self.torch.nn.functional.mse_loss(pred, self.torch.from_numpy(y))

    def step(self, x, y):
        loss = self._loss(x, y)
        self.opt.zero_grad()
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        return float(loss.item())

    def evaluate(self, x, y):
        with self.torch.no_grad():
            return float(self._loss(x, y).item())


def jax_update(jax, cell, H, lr, clip):
    """``update(params, m, v, t, x, y) -> (params, m, v, loss)``: one jitted training step.

    The clip is PyTorch's: scale every gradient by ``clip / (norm + 1e-6)`` when the
    global norm exceeds ``clip``; Adam is torch.optim.Adam's rule with bias correction.
    """
    from .runners import jax_layer
    jnp, tree = jax.numpy, jax.tree_util
    layer = jax_layer(jax, cell, H)
    b1, b2 = BETAS

    def loss_fn(p, x, y):
        pred = layer(p, x)[-1] @ p["head.weight"].T + p["head.bias"]
        return jnp.mean((pred - y) ** 2)

    def update(p, m, v, t, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in tree.tree_leaves(g)))
        scale = jnp.minimum(1.0, clip / (norm + 1e-6))
        g = tree.tree_map(lambda a: a * scale, g)
        m = tree.tree_map(lambda a, b: b1 * a + (1 - b1) * b, m, g)
        v = tree.tree_map(lambda a, b: b2 * a + (1 - b2) * b * b, v, g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        p = tree.tree_map(lambda a, mm, vv: a - lr * (mm / c1) / (jnp.sqrt(vv / c2) + EPS), p, m, v)
        return p, m, v, loss

    return jax.jit(update), jax.jit(loss_fn)


class JaxLoop:
    """JAX: the whole training step (gradient, clip, Adam) as one jitted function."""

    def __init__(self, cell, weights, H, lr, clip, dtype="float32"):
        import jax
        import jax.numpy as jnp
        self.jnp = jnp
        self.p = {n: jnp.asarray(w) for n, w in weights.items()}
        self.m = {n: jnp.zeros_like(w) for n, w in self.p.items()}
        self.v = {n: jnp.zeros_like(w) for n, w in self.p.items()}
        self.t = 0
        self.update, self.loss_fn = jax_update(jax, cell, H, lr, clip)

    def step(self, x, y):
        self.t += 1
        self.p, self.m, self.v, loss = self.update(self.p, self.m, self.v, float(self.t),
                                                   self.jnp.asarray(x), self.jnp.asarray(y))
        return float(loss)

    def evaluate(self, x, y):
        return float(self.loss_fn(self.p, self.jnp.asarray(x), self.jnp.asarray(y)))


LOOPS = {"tinybptt": TinyLoop, "tinybptt-ftz": TinyLoop, "torch": TorchLoop, "jax": JaxLoop}


def make_loop(contender, cell, H, lr, clip, dtype="float32", seed=0):
    weights = initial_weights(cell, H, dtype, seed)
    return LOOPS[contender](cell, weights, H, lr, clip, dtype)

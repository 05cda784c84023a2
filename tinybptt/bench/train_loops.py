"""The training loops of the bench, written once per library, from the same starting weights.

Two tasks, each trained by every library on the same batches:

``adding``     the adding problem (T=100, B=32, H=64): one recurrent layer and a
               linear read-out of its last output, mean squared error;
``agreement``  subject-verb agreement (``tinybptt.tasks.agreement``, B=64): word
               embeddings (E=32), one recurrent layer (H=64), a linear read-out of
               two classes at each sentence's decision step, cross-entropy.  The
               batches are drawn from a pool of sentences made once (as
               ``tinybptt agreement`` trains), each padded to the pool's longest
               prefix, so every step runs the same T steps in every library (and
               JAX compiles its step once).

Every loop is what a user of that library would write, with Adam and gradient-norm
clipping.  tinybptt and PyTorch read the adding problem's last output where their
layers return it on its own, as the final hidden state ``h_n`` (one array of
(B, H), whose gradient the layer's backward takes as it is; out[-1] would first be
scattered into a (T, B, H) array of zeros); JAX's jitted step has no such choice
to make.  ``step(*batch)`` trains on one batch and returns the loss as a Python
float (every loop reads its loss each step, as a training log does);
``evaluate(*test_set)`` is the task's loss on its test set, without building a graph.

    tinybptt  the models of ``tinybptt train`` (apps.train.SeqModel) and ``tinybptt
              agreement`` (apps.agreement.AgreementRNN) with the layer's default
              settings, tinybptt.optim.Adam, tinybptt.nn.utils.clip_grad_norm_
    torch     torch.nn.Embedding, torch.nn.<CELL>, torch.nn.Linear, torch.optim.Adam,
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


class AddingTask:
    """The adding problem: batches ``(x (T, B, 2), y (B, 1))`` from ``tinybptt.tasks.adding_problem``."""

    name = "adding"
    title = "adding problem"
    metric = "test MSE"
    config = {"T": 100, "B": 32, "H": 64, "lr": 1e-2, "clip": 1.0, "dtype": "float32", "test_size": 1000}

    def __init__(self, seed=0, config=None):
        self.config = dict(self.config, **(config or {}))
        self.seed = seed

    def weights(self, cell):
        """The layer's weights (PyTorch names) and the read-out's ``head.weight`` (1, H), ``head.bias`` (1,)."""
        return initial_weights(cell, self.config["H"], self.config["dtype"], self.seed)

    def batch(self, rng):
        from ..tasks import adding_problem
        c = self.config
        return adding_problem(c["T"], c["B"], rng, c["dtype"])

    def test_set(self):
        from ..tasks import adding_problem
        c = self.config
        return adding_problem(c["T"], c["test_size"], np.random.default_rng(self.seed + 10_000), c["dtype"])

    def describe(self):
        c = self.config
        return "T=%d, B=%d, H=%d, Adam lr %g, clip %g, %s, test set of %d" % (
            c["T"], c["B"], c["H"], c["lr"], c["clip"], c["dtype"], c["test_size"])


class AgreementTask:
    """Subject-verb agreement: batches ``(ids (T, B) int64, positions (B,), labels (B,))`` drawn from a pool.

    The pool (``pool_size`` sentences, distances 0-20, up to 4 attractors) and the
    test set are made once from the seed; every batch and the test set are padded to
    the same T, the longest prefix of either.
    """

    name = "agreement"
    title = "subject-verb agreement"
    metric = "test cross-entropy"
    config = {"B": 64, "E": 32, "H": 64, "lr": 3e-3, "clip": 1.0, "dtype": "float32", "pool_size": 4000,
              "test_size": 1000}

    def __init__(self, seed=0, config=None):
        from ..tasks.agreement import load_grammar
        self.config = c = dict(self.config, **(config or {}))
        self.seed = seed
        grammar = load_grammar()
        self.vocab_size = grammar.vocab_size
        pool = grammar.batch(c["pool_size"], np.random.default_rng(seed + 20_000))
        test = grammar.batch(c["test_size"], np.random.default_rng(seed + 10_000))
        T = max(pool.ids.shape[0], test.ids.shape[0])
        self.pool = (_pad(pool.ids, T), pool.positions, pool.labels)
        self.test = (_pad(test.ids, T), test.positions, test.labels)

    def weights(self, cell):
        """Embedding ``embedding.weight`` (V, E) standard normal (as torch.nn.Embedding), the layer's
        weights and the read-out's ``head.weight`` (2, H), ``head.bias`` (2,) uniform in
        (-1/sqrt(H), 1/sqrt(H)), as torch.nn initialises them."""
        c = self.config
        H, dt = c["H"], c["dtype"]
        _, w = make_problem(cell, 1, 1, c["E"], H, dt, self.seed)
        rng = np.random.default_rng(self.seed + 1)
        k = 1.0 / math.sqrt(H)
        w["embedding.weight"] = rng.standard_normal((self.vocab_size, c["E"])).astype(dt)
        w["head.weight"] = rng.uniform(-k, k, (2, H)).astype(dt)
        w["head.bias"] = rng.uniform(-k, k, (2,)).astype(dt)
        return w

    def batch(self, rng):
        ids, positions, labels = self.pool
        pick = rng.integers(0, len(labels), size=self.config["B"])
        return ids[:, pick], positions[pick], labels[pick]

    def test_set(self):
        return self.test

    def describe(self):
        c = self.config
        return ("T=%d, B=%d, vocabulary %d, E=%d, H=%d, Adam lr %g, clip %g, %s, batches from a pool of %d "
                "sentences, test set of %d" % (self.pool[0].shape[0], c["B"], self.vocab_size, c["E"], c["H"],
                                               c["lr"], c["clip"], c["dtype"], c["pool_size"], c["test_size"]))


def _pad(ids, T):
    """(T0, N) ids padded with 0 (``<pad>``) to (T, N)."""
    out = np.zeros((T, ids.shape[1]), dtype=ids.dtype)
    out[:ids.shape[0]] = ids
    return out


TASKS = {"adding": AddingTask, "agreement": AgreementTask}


def initial_weights(cell, H, dtype="float32", seed=0):
    """The adding problem's weights: the layer's (PyTorch names) and the read-out's ``head.weight`` (1, H),
    ``head.bias`` (1,): uniform in (-1/sqrt(H), 1/sqrt(H)), as torch.nn initialises both."""
    _, w = make_problem(cell, 1, 1, INPUT_SIZE, H, dtype, seed)
    rng = np.random.default_rng(seed + 1)
    k = 1.0 / math.sqrt(H)
    w["head.weight"] = rng.uniform(-k, k, (OUTPUT_SIZE, H)).astype(dtype)
    w["head.bias"] = rng.uniform(-k, k, (OUTPUT_SIZE,)).astype(dtype)
    return w


class TinyLoop:
    """tinybptt: the model of ``tinybptt train`` (adding) or ``tinybptt agreement`` with the layer's default
    settings, trained with the same optimiser and clipping.  The layer records its gradient trace at every
    step, as in a user's own loop (``tinybptt train`` itself records it only at its probes)."""

    def __init__(self, task, cell, weights):
        from .. import optim
        from ..nn.utils import clip_grad_norm_
        c, dt = task.config, np.dtype(task.config["dtype"])
        if task.name == "adding":
            from ..apps.train import SeqModel
            self.model = SeqModel("adding", cell, c["H"], dt)
        else:
            from ..apps.agreement import AgreementRNN
            self.model = AgreementRNN(cell, task.vocab_size, c["E"], c["H"], dt)
        self.task = task.name
        named = dict(self.model.named_parameters())
        for name, value in weights.items():
            named[name if name.startswith(("head.", "embedding.")) else "rnn." + name].data[...] = value
        self.params = self.model.parameters()
        self.opt = optim.Adam(self.params, lr=c["lr"], betas=BETAS, eps=EPS)
        self.clip, self.clip_grad_norm_ = c["clip"], clip_grad_norm_

    def loss(self, *batch):
        if self.task == "adding":
            return self.model.loss(*batch)[0]
        from ..nn import functional as F
        ids, positions, labels = batch
        return F.cross_entropy(self.model(ids, positions), labels)

    def step(self, *batch):
        loss = self.loss(*batch)
        self.opt.zero_grad()
        loss.backward()
        self.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        return float(loss.item())

    def evaluate(self, *test):
        if self.task == "adding":
            return self.model.metrics(*test)["loss"]
        from ..autograd import no_grad
        with no_grad():
            return float(self.loss(*test).item())


class TorchLoop:
    """PyTorch: torch.nn.<CELL> and a Linear read-out (and torch.nn.Embedding for agreement),
    torch.optim.Adam, clip_grad_norm_."""

    def __init__(self, task, cell, weights):
        import torch
        self.torch, self.task = torch, task.name
        c = task.config
        dt, H = getattr(torch, c["dtype"]), c["H"]
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        if task.name == "adding":
            self.embedding, self.rnn = None, cls(INPUT_SIZE, H, dtype=dt)
        else:
            self.embedding = torch.nn.Embedding(task.vocab_size, c["E"], dtype=dt)
            self.rnn = cls(c["E"], H, dtype=dt)
        self.head = torch.nn.Linear(H, weights["head.weight"].shape[0], dtype=dt)
        modules = [m for m in (self.embedding, self.rnn, self.head) if m is not None]
        with torch.no_grad():
            for name, p in self.rnn.named_parameters():
                p.copy_(torch.from_numpy(weights[name]))
            for prefix, m in (("head.", self.head), ("embedding.", self.embedding)):
                for name, p in (m.named_parameters() if m is not None else ()):
                    p.copy_(torch.from_numpy(weights[prefix + name]))
        self.params = [p for m in modules for p in m.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=c["lr"], betas=BETAS, eps=EPS)
        self.clip = c["clip"]

    def _out(self, *batch):
        """The adding problem's prediction, or the agreement logits."""
        torch = self.torch
        if self.task == "adding":
            final = self.rnn(torch.from_numpy(batch[0]))[1]
            h_n = final[0] if isinstance(final, tuple) else final  # LSTM: (h_n, c_n)
            return self.head(h_n[-1])
        ids, positions = (torch.from_numpy(a) for a in batch[:2])
        out = self.rnn(self.embedding(ids))[0]
        return self.head(out[positions, torch.arange(ids.shape[1])])

    def loss(self, *batch):
        F = self.torch.nn.functional
        loss = F.mse_loss if self.task == "adding" else F.cross_entropy
        return loss(self._out(*batch), self.torch.from_numpy(batch[-1]))

    def step(self, *batch):
        loss = self.loss(*batch)
        self.opt.zero_grad()
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        return float(loss.item())

    def evaluate(self, *test):
        with self.torch.no_grad():
            return float(self.loss(*test).item())


def jax_loss(jax, task, cell):
    """``loss(params, *batch)``: the task's loss in JAX, from ``out``, the prediction (adding) or the
    logits (agreement)."""
    from .runners import jax_layer
    jnp = jax.numpy
    layer = jax_layer(jax, cell, task.config["H"])

    def out(p, *batch):
        if task.name == "adding":
            return layer(p, batch[0])[-1] @ p["head.weight"].T + p["head.bias"]
        ids, positions = batch[:2]
        h = layer(p, p["embedding.weight"][ids])[positions, jnp.arange(ids.shape[1])]
        return h @ p["head.weight"].T + p["head.bias"]

    def loss(p, *batch):
        if task.name == "adding":
            return jnp.mean((out(p, *batch) - batch[1]) ** 2)
        log_p = jax.nn.log_softmax(out(p, *batch), axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, batch[2][:, None], axis=1))

    return loss


def jax_update(jax, loss_fn, lr, clip):
    """``update(params, m, v, t, *batch) -> (params, m, v, loss)``: one jitted training step.

    The clip is PyTorch's: scale every gradient by ``clip / (norm + 1e-6)`` when the
    global norm exceeds ``clip``; Adam is torch.optim.Adam's rule with bias correction.
    """
    jnp, tree = jax.numpy, jax.tree_util
    b1, b2 = BETAS

    def update(p, m, v, t, *batch):
        loss, g = jax.value_and_grad(loss_fn)(p, *batch)
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in tree.tree_leaves(g)))
        scale = jnp.minimum(1.0, clip / (norm + 1e-6))
        g = tree.tree_map(lambda a: a * scale, g)
        m = tree.tree_map(lambda a, b: b1 * a + (1 - b1) * b, m, g)
        v = tree.tree_map(lambda a, b: b2 * a + (1 - b2) * b * b, v, g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        p = tree.tree_map(lambda a, mm, vv: a - lr * (mm / c1) / (jnp.sqrt(vv / c2) + EPS), p, m, v)
        return p, m, v, loss

    return jax.jit(update)


class JaxLoop:
    """JAX: the whole training step (gradient, clip, Adam) as one jitted function."""

    def __init__(self, task, cell, weights):
        import jax
        import jax.numpy as jnp
        self.jnp = jnp
        self.p = {n: jnp.asarray(w) for n, w in weights.items()}
        self.m = {n: jnp.zeros_like(w) for n, w in self.p.items()}
        self.v = {n: jnp.zeros_like(w) for n, w in self.p.items()}
        self.t = 0
        loss = jax_loss(jax, task, cell)
        self.update = jax_update(jax, loss, task.config["lr"], task.config["clip"])
        self.loss_fn = jax.jit(loss)

    def step(self, *batch):
        self.t += 1
        self.p, self.m, self.v, loss = self.update(self.p, self.m, self.v, float(self.t),
                                                   *(self.jnp.asarray(a) for a in batch))
        return float(loss)

    def evaluate(self, *test):
        return float(self.loss_fn(self.p, *(self.jnp.asarray(a) for a in test)))


LOOPS = {"tinybptt": TinyLoop, "tinybptt-ftz": TinyLoop, "torch": TorchLoop, "jax": JaxLoop}


def make_loop(contender, cell, task="adding", seed=0, config=None):
    """``contender``'s training loop of ``cell`` on ``task`` (a name of ``TASKS`` or a task object;
    ``config`` overrides entries of a named task's configuration), from the task's starting weights."""
    if isinstance(task, str):
        task = TASKS[task](seed, config)
    return LOOPS[contender](task, cell, task.weights(cell))

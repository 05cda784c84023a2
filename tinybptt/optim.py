"""Optimisers: ``SGD`` (with momentum) and ``Adam``, following PyTorch's update rules.

Usage::

    opt = tinybptt.optim.Adam(model.parameters(), lr=1e-2)
    for x, y in data:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

``step()`` gives every parameter a *new* array (``p.data = p.data - update``)
instead of writing into the old one.  A graph recorded before the step keeps
the weights it was computed with, so backpropagating through it later (as
truncated BPTT with k2 > k1 does) uses the right Jacobians.

Speed: the parameters laid end to end.  A recurrent model has a handful of
small arrays (an RNN with H=64: six of them, 4,500 numbers in all), and Adam is
a dozen NumPy operations per parameter; each call costs about a microsecond
whatever its size, so a step spent most of its time starting calls.  The
optimiser state (``m``, ``v``, the momentum buffer) therefore lives in one flat
array per dtype (``_Flat``), each parameter's state being a view of its slice.
When every parameter has a gradient, as in a plain training loop, the
gradients are copied into one flat array and the update is computed once over
all of them (Adam; SGD with momentum); otherwise each parameter with a gradient
is updated on its own views.  Both run the same update function, which spells
out the formula.  The layout is made from the parameter list at the first step.
"""
import numpy as np

from .autograd import Tensor
from .errors import DTypeError, GraphError, ShapeError, describe


def grad_array(who, k, p):
    """Parameter ``p``'s ``.grad`` as a NumPy float array (None if it has none).

    A list or a Tensor is taken as its values, bool and integer gradients become
    float64 (scaling an integer array in place would truncate it); complex, string
    and object gradients are a DTypeError naming ``who`` and parameter ``k``.
    """
    g = p.grad
    if g is None:
        return None
    if not isinstance(g, np.ndarray):
        g = g.data if isinstance(g, Tensor) else np.asarray(g)
    kind = g.dtype.kind
    if kind == "f":
        return g
    if kind not in "biu":
        raise DTypeError("%s: parameter %d (%s) has a .grad of dtype %s (%s); a gradient must be real numbers"
                         % (who, k, describe(p.data), g.dtype, "its real part would be used, silently"
                            if kind == "c" else "not numbers"))
    return g.astype(np.float64)


class _Flat:
    """The parameters of one dtype laid end to end, with flat state buffers.

    ``buffer(name)`` is a zero-initialised flat array over all the parameters
    (``"m"``, ``"v"``, ``"momentum_buffer"``, or scratch space); ``view(name, j)``
    is parameter ``j``'s part of it, shaped like the parameter.
    """

    def __init__(self, params, index):
        self.params, self.index = params, index  # index: each parameter's place in the optimiser's list
        self.dtype = params[0].dtype
        self.shapes = [p.shape for p in params]
        ends = np.cumsum([p.size for p in params]).tolist()
        self.slices = [slice(a, b) for a, b in zip([0] + ends[:-1], ends)]
        self.buffers = {}
        self._views = {}  # name -> every parameter's view of buffer(name), made once
        self.size = ends[-1]

    def buffer(self, name):
        b = self.buffers.get(name)
        if b is None:
            b = self.buffers[name] = np.zeros(self.size, self.dtype)
        return b

    def view(self, name, j):
        return self.buffer(name)[self.slices[j]].reshape(self.shapes[j])

    def gather(self, arrays, name):
        """``arrays`` (one per parameter, shaped like it) copied end to end into ``buffer(name)``."""
        return np.concatenate([a.reshape(-1) for a in arrays], out=self.buffer(name))

    def views(self, name):
        """Every parameter's view of ``buffer(name)``, made once: a list, in the parameters' order."""
        v = self._views.get(name)
        if v is None:
            v = self._views[name] = [self.view(name, j) for j in range(len(self.params))]
        return v

    def subtract(self, name):
        """Every parameter gets a new array: ``p.data - update``, ``update`` its view of ``buffer(name)``."""
        for p, u in zip(self.params, self.views(name)):
            p.data = np.subtract(p.data, u)


class Optimizer:
    """Base class: holds the parameter list and per-parameter state."""

    def __init__(self, params, defaults):
        who = type(self).__name__
        if isinstance(params, Tensor):
            params = [params]
        elif hasattr(params, "parameters") and callable(params.parameters):
            raise TypeError("%s: got a %s; pass its parameters: %s(model.parameters(), ...)"
                            % (who, type(params).__name__, who))
        try:
            self.params = list(params)
        except TypeError:
            raise TypeError("%s: params must be an iterable of Parameters (e.g. model.parameters()), got %s"
                            % (who, type(params).__name__)) from None
        if not self.params:
            raise ValueError("%s: got an empty parameter list" % who)
        seen = set()
        for k, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise GraphError("%s: every parameter must be a Tensor with requires_grad=True, got %r"
                                 % (who, type(p).__name__ if not isinstance(p, Tensor) else p))
            if id(p) in seen:  # it would be updated twice per step
                raise ValueError("%s: parameter %d (shape %s) appears more than once in the list; pass each "
                                 "parameter once" % (who, k, tuple(p.shape)))
            seen.add(id(p))
        for k, v in defaults.items():
            try:
                ok = float(v) >= 0  # False for NaN
            except (TypeError, ValueError):
                raise TypeError("%s: %s must be a number, got %r" % (who, k, v)) from None
            if not ok or not np.isfinite(float(v)):
                raise ValueError("%s: %s must be >= 0 and finite, got %r" % (who, k, v))
        self.defaults = defaults
        self.state = {}  # id(param) -> dict of NumPy arrays (views of the flat buffers) / counters
        self._flats = None  # [_Flat], one per dtype, made at the first step

    def _groups(self):
        """The parameters as ``_Flat`` groups, one per dtype (made once, with the state's views)."""
        if self._flats is None:
            by_dtype = {}
            for k, p in enumerate(self.params):
                by_dtype.setdefault(p.dtype, []).append(k)
            self._flats = [_Flat([self.params[k] for k in ks], ks) for ks in by_dtype.values()]
            for flat in self._flats:
                for j, p in enumerate(flat.params):
                    self.state[id(p)] = self._new_state(flat, j)
        return self._flats

    def _new_state(self, flat, j):
        return {}

    def _grads(self, flat):
        """Each parameter's ``.grad`` (None if it has none), checked against the parameter: a gradient of
        another shape would broadcast into (and silently reshape) the parameter, and a parameter whose
        dtype changed since the first step would be updated from (and turned into) the old dtype."""
        who = type(self).__name__ + ".step"
        out = []
        dt = flat.dtype
        for k, p, shape in zip(flat.index, flat.params, flat.shapes):
            if p.data.dtype is not dt and p.data.dtype != dt:
                raise DTypeError("%s: parameter %d (%s) was %s when the optimiser first stepped; its state is "
                                 "kept in that dtype, so make a new optimiser after converting the model"
                                 % (who, k, describe(p.data), flat.dtype))
            g = p.grad
            if type(g) is not np.ndarray or g.dtype.kind != "f":  # the common case needs no call
                g = grad_array(who, k, p)
            if g is not None and (g.shape != p.shape or p.shape != shape):
                what = (".grad has shape %s; a gradient must have its parameter's shape" % (g.shape,)
                        if g.shape != p.shape else "its shape was %s when the optimiser first stepped" % (shape,))
                raise ShapeError("%s: parameter %d has shape %s but %s" % (who, k, tuple(p.shape), what))
            out.append(g)
        return out

    def _checked_groups(self):
        """``[(flat, grads)]`` for every dtype group, every gradient checked before any parameter is
        changed: an error leaves all the parameters and the optimiser state as they were."""
        return [(flat, self._grads(flat)) for flat in self._groups()]

    def zero_grad(self):
        """Forget every parameter's gradient."""
        for p in self.params:
            p.grad = None

    def step(self):
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule::

        g = grad + weight_decay * p
        buf = momentum * buf + g          (buf = g on the first step)
        p = p - lr * buf                   (p - lr * g without momentum)
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)

    def _new_state(self, flat, j):
        return {"momentum_buffer": flat.view("momentum_buffer", j)} if self.momentum else {}

    def _step(self, g, p, buf, out=None):
        """The rule above for one parameter, or for all of them laid end to end -> the step to subtract
        (written into ``out`` if given)."""
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            buf *= self.momentum  # buf starts at 0, so the first step gives buf = g, as PyTorch's copy does
            buf += g
            g = buf
        return np.multiply(g, self.lr, out=out)

    def step(self):
        """Update every parameter that has a gradient."""
        for flat, grads in self._checked_groups():
            # all at once (see the module docstring) when there is a momentum buffer to update; plain
            # SGD is two operations per parameter, which copying the gradients together would not beat
            if self.momentum and all(g is not None for g in grads):
                g = flat.gather(grads, "grad")
                p = flat.gather([p.data for p in flat.params], "param") if self.weight_decay else None
                self._step(g, p, flat.buffer("momentum_buffer"), out=flat.buffer("step"))
                flat.subtract("step")
                continue
            for p, g in zip(flat.params, grads):
                if g is not None:
                    buf = self.state[id(p)]["momentum_buffer"] if self.momentum else None
                    p.data = (p.data - self._step(g, p.data, buf)).astype(p.dtype, copy=False)


def adam_update(m, v, g, t, lr, b1, b2, eps, scratch):
    """torch.optim.Adam's update of ``m`` and ``v`` (in place) by the gradient ``g`` at step ``t``
    (1, 2, ...); returns the step to subtract from the parameter, computed in ``scratch``::

        m = b1 * m + (1 - b1) * g                       (torch: m.lerp_(g, 1 - b1))
        v = b2 * v + (1 - b2) * g * g
        step = lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """
    np.subtract(g, m, out=scratch)  # m += (1 - b1) * (g - m)
    scratch *= 1 - b1
    m += scratch
    v *= b2  # v += (1 - b2) * g * g
    np.multiply(g, g, out=scratch)
    scratch *= 1 - b2
    v += scratch
    np.sqrt(v, out=scratch)  # the denominator, then the step
    scratch /= (1 - b2 ** t) ** 0.5
    scratch += eps
    np.divide(m, scratch, out=scratch)
    scratch *= lr / (1 - b1 ** t)
    return scratch


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), PyTorch's rule (weight decay added to the gradient, as in torch.optim.Adam)::

        g = grad + weight_decay * p
        m = b1 * m + (1 - b1) * g;   v = b2 * v + (1 - b2) * g^2
        p = p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    computed as torch computes it (``adam_update``).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, eps=eps, weight_decay=weight_decay))
        try:
            b1, b2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise ValueError("Adam: betas must be a pair of numbers (b1, b2), got %r" % (betas,)) from None
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError("Adam: betas must lie in [0, 1), got %r" % (betas,))
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), (float(b1), float(b2)), float(eps), float(weight_decay)

    def _new_state(self, flat, j):
        return {"step": 0, "m": flat.view("m", j), "v": flat.view("v", j)}

    def step(self):
        """Update every parameter that has a gradient."""
        b1, b2 = self.betas
        for flat, grads in self._checked_groups():
            states = [self.state[id(p)] for p in flat.params]
            t = states[0]["step"] + 1
            if all(g is not None for g in grads) and all(st["step"] == t - 1 for st in states):
                g = flat.gather(grads, "grad")  # all at once (see the module docstring)
                if self.weight_decay:
                    g += self.weight_decay * flat.gather([p.data for p in flat.params], "param")
                adam_update(flat.buffer("m"), flat.buffer("v"), g, t, self.lr, b1, b2, self.eps, flat.buffer("step"))
                flat.subtract("step")
                for st in states:
                    st["step"] = t
                continue
            for p, g, st in zip(flat.params, grads, states):
                if g is not None:
                    if self.weight_decay:
                        g = g + self.weight_decay * p.data
                    st["step"] += 1
                    step = adam_update(st["m"], st["v"], g, st["step"], self.lr, b1, b2, self.eps,
                                       np.empty(p.shape, flat.dtype))
                    p.data = (p.data - step).astype(p.dtype, copy=False)

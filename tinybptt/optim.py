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
"""
import numpy as np

from .autograd import Tensor
from .errors import GraphError, ShapeError


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
        self.state = {}  # id(param) -> dict of NumPy arrays / counters

    def _grad(self, k, p):
        """``p.grad`` checked against the parameter: a gradient of another shape would broadcast into
        (and silently reshape) the parameter."""
        g = p.grad
        if not isinstance(g, np.ndarray):
            g = np.asarray(g)
        if g.shape != p.shape:
            raise ShapeError("%s.step: parameter %d has shape %s but its .grad has shape %s; a gradient must "
                             "have its parameter's shape" % (type(self).__name__, k, tuple(p.shape), g.shape))
        return g

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

    def step(self):
        """Update every parameter that has a gradient."""
        for k, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = self._grad(k, p)
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                st = self.state.setdefault(id(p), {})
                buf = st.get("momentum_buffer")
                buf = g.copy() if buf is None else self.momentum * buf + g
                st["momentum_buffer"] = buf
                g = buf
            p.data = (p.data - self.lr * g).astype(p.dtype, copy=False)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), PyTorch's rule (weight decay added to the gradient, as in torch.optim.Adam)::

        g = grad + weight_decay * p
        m = b1 * m + (1 - b1) * g;   v = b2 * v + (1 - b2) * g^2
        p = p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
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

    def step(self):
        """Update every parameter that has a gradient."""
        b1, b2 = self.betas
        for k, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = self._grad(k, p)
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            st = self.state.setdefault(id(p), {"step": 0, "m": np.zeros_like(p.data), "v": np.zeros_like(p.data)})
            st["step"] += 1
            t = st["step"]
            st["m"] = b1 * st["m"] + (1 - b1) * g
            st["v"] = b2 * st["v"] + (1 - b2) * (g * g)
            m_hat = st["m"] / (1 - b1 ** t)
            v_hat = st["v"] / (1 - b2 ** t)
            p.data = (p.data - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(p.dtype, copy=False)

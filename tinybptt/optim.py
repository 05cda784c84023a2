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
from .errors import GraphError


class Optimizer:
    """Base class: holds the parameter list and per-parameter state."""

    def __init__(self, params, defaults):
        if isinstance(params, Tensor):
            params = [params]
        self.params = list(params)
        if not self.params:
            raise ValueError("%s: got an empty parameter list" % type(self).__name__)
        for p in self.params:
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise GraphError("%s: every parameter must be a Tensor with requires_grad=True, got %r"
                                 % (type(self).__name__, type(p).__name__ if not isinstance(p, Tensor) else p))
        for k, v in defaults.items():
            if isinstance(v, (int, float)) and v < 0:
                raise ValueError("%s: %s must be >= 0, got %r" % (type(self).__name__, k, v))
        self.defaults = defaults
        self.state = {}  # id(param) -> dict of NumPy arrays / counters

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
        for p in self.params:
            if p.grad is None:
                continue
            g = p.grad
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
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError("Adam: betas must lie in [0, 1), got %r" % (betas,))
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), (float(b1), float(b2)), float(eps), float(weight_decay)

    def step(self):
        """Update every parameter that has a gradient."""
        b1, b2 = self.betas
        for p in self.params:
            if p.grad is None:
                continue
            g = p.grad
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

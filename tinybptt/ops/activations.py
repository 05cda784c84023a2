"""Elementwise unary ops: tanh, sigmoid, relu, exp, log.

Each op's derivative is written beside the kernel call that computes it.  The
kernels (``tinybptt.kernels.backend``: C, or the NumPy reference) compute
exactly the formula in the comment; tanh, sigmoid, relu and exp express their
derivative through their OUTPUT y, so that is what forward saves.
"""
import numpy as np

from .. import kernels
from ..autograd import Function


class Tanh(Function):
    """``y = tanh(x)``.   dy/dx = 1 - y**2."""

    @staticmethod
    def forward(ctx, x):
        y = kernels.backend.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels.backend.tanh_backward(y, g)  # g * (1 - y*y)


class Sigmoid(Function):
    """``y = 1 / (1 + exp(-x))``.   dy/dx = y * (1 - y)."""

    @staticmethod
    def forward(ctx, x):
        y = kernels.backend.sigmoid(x)  # overflow-free for large |x|
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels.backend.sigmoid_backward(y, g)  # g * y * (1 - y)


class Relu(Function):
    """``y = max(x, 0)`` (NaN stays NaN).   dy/dx = 0 where y <= 0, else 1 (also at NaN, as PyTorch)."""

    @staticmethod
    def forward(ctx, x):
        y = kernels.backend.relu(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels.backend.relu_backward(y, g)  # where(y <= 0, 0, g): at NaN g passes


class Exp(Function):
    """``y = exp(x)``.   dy/dx = y."""

    @staticmethod
    def forward(ctx, x):
        with np.errstate(over="ignore", under="ignore"):  # exp(1000) = inf, exp(-1000) = 0: right answers
            y = np.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # IEEE results, no warnings
            return g * y


class Log(Function):
    """``y = log(x)``.   dy/dx = 1 / x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        with np.errstate(divide="ignore", invalid="ignore"):  # log(0) = -inf, log(-1) = nan
            return np.log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        with np.errstate(divide="ignore", invalid="ignore"):
            return g / x

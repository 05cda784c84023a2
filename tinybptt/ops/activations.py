"""Elementwise unary ops: tanh, sigmoid, relu, exp, log."""
import numpy as np

from .. import kernels
from ..autograd import Function

# --------------------------------------------------------------------------- elementwise unary
# tanh, sigmoid, relu and exp keep their OUTPUT for backward.


class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        y = kernels.backend.tanh(x)
        ctx.saved_tensors = (y,)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels.backend.tanh_backward(y, g)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        y = kernels.backend.sigmoid(x)
        ctx.saved_tensors = (y,)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels.backend.sigmoid_backward(y, g)


class Relu(Function):
    @staticmethod
    def forward(ctx, x):
        y = kernels.backend.relu(x)
        ctx.saved_tensors = (y,)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels.backend.relu_backward(y, g)


class Exp(Function):
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

"""The built-in ops: one small Function per op, forward beside backward.

Each ``forward`` computes with NumPy (or a kernel from ``tinybptt.kernels``)
and saves only what its ``backward`` needs; each ``backward`` returns one
gradient per forward argument.  Binary elementwise ops follow NumPy
broadcasting, so their backward must *un-broadcast*: sum the gradient over the
axes that broadcasting stretched, giving each input a gradient of its own shape.

Dtypes (PyTorch's rules where a PyTorch user would look): a Python number, a
NumPy scalar or a 0-d array combined with a tensor takes the tensor's dtype, so a
float32 tensor stays float32; two tensors, or a tensor and an array with
dimensions, promote as NumPy does (float32 with float64 gives float64); bool,
integer and float16 data become float64; complex operands raise DTypeError.
The in-place edits (``add_``, ``mul_``, ``t[idx] = v``, ...) are in ``inplace``.
"""
import numpy as np

from ..autograd import Tensor, float_dtype
from ..errors import ShapeError, is_index
from . import inplace
from .activations import Exp, Log, Relu, Sigmoid, Tanh
from .elementwise import Add, Cast, Div, Mul, Neg, Pow, Sub, unbroadcast  # noqa: F401  (unbroadcast: public for custom ops)
from .linalg import Linear, MatMul
from .operands import operand_array
from .reduce import Mean, Sum
from .shape import Concat, GetItem, Reshape, Split, Stack, Transpose

# --------------------------------------------------------------------------- Tensor methods and functions


def _operand(op, self, other):
    """The non-Tensor operand of a binary op on the tensor ``self``, as an array.

    The dtype rule is PyTorch's: a Python number, a NumPy scalar or a 0-d array
    takes the tensor's dtype (a float32 tensor stays float32); an array with
    dimensions keeps its own float dtype and promotes by NumPy's rule (float32 with
    float64 gives float64), bool/int/float16 arrays becoming float64.  Complex
    values raise DTypeError: they would lose their imaginary part (``operands.py``).
    """
    if type(other) is float or type(other) is int:  # the common case, first
        return np.asarray(other, dtype=self.data.dtype)
    arr = operand_array(op, other)
    return arr.astype(self.data.dtype) if arr.ndim == 0 else arr


def _arg(op, x):
    """An argument of a function-form op (``ops.tanh(x)``, ``ops.matmul(a, b)``): a Tensor stays,
    anything else becomes a float array as ``tinybptt.tensor`` would make it (``operands.py``)."""
    return x if isinstance(x, Tensor) else operand_array(op, x)


def _binary(fn, reflected=False):
    apply, op = fn.apply, fn.op_name()
    if reflected:
        def method(self, other):
            return apply(other if isinstance(other, Tensor) else _operand(op, self, other), self)
    else:
        def method(self, other):
            return apply(self, other if isinstance(other, Tensor) else _operand(op, self, other))
    return method


def _tensors(op, xs):
    if len(xs) == 1 and isinstance(xs[0], (list, tuple)):
        xs = tuple(xs[0])
    if not xs:
        raise ShapeError("%s: needs at least one tensor" % op)
    for x in xs:  # all Tensors (the common case): xs as it is, nothing allocated
        if not isinstance(x, Tensor):
            return tuple([_arg(op, x) for x in xs])
    return xs


def concat(tensors, axis=0):
    """Join tensors along an existing axis (like ``np.concatenate``)."""
    return Concat.apply(*_tensors("concat", (tensors,)), axis=axis)


def stack(tensors, axis=0):
    """Join tensors along a new axis (like ``np.stack``)."""
    return Stack.apply(*_tensors("stack", (tensors,)), axis=axis)


def split(x, sections, axis=0):
    """Split ``x`` into a tuple of tensors (like ``np.split``).

    ``sections``: a positive int (that many equal parts; it must divide the axis) or
    a list of int indices to cut at.  Unlike NumPy, a float is refused even when it is
    integral (``np.float64(2.0)``): a TypeError, as for a float ``axis``.
    """
    out = Split.apply(_arg("split", x), sections=sections, axis=axis)
    return out if isinstance(out, tuple) else (out,)


def matmul(a, b):
    return MatMul.apply(_arg("matmul", a), _arg("matmul", b))


def linear(x, w, b=None):
    """``x @ w + b`` in one node (``w`` of shape (K, N): the transpose of a PyTorch weight)."""
    x, w = _arg("linear", x), _arg("linear", w)
    return Linear.apply(x, w) if b is None else Linear.apply(x, w, _arg("linear", b))


def tanh(x):
    return Tanh.apply(_arg("tanh", x))


def sigmoid(x):
    return Sigmoid.apply(_arg("sigmoid", x))


def relu(x):
    return Relu.apply(_arg("relu", x))


def exp(x):
    return Exp.apply(_arg("exp", x))


def log(x):
    return Log.apply(_arg("log", x))


def _reshape(self, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Reshape.apply(self, shape=shape)


def _transpose(self, *dims):
    """Two ways to call it -- PyTorch's, and NumPy's permutation.

    * ``x.transpose(dim0, dim1)``: swap those two dims (PyTorch's ``transpose``),
      whatever ``x.ndim`` is -- on a 2-D tensor ``transpose(0, 1)`` is the matrix
      transpose, and on a 3-D tensor ``transpose(0, 1)`` swaps the first two dims.
    * ``x.transpose()`` reverses all dims (like ``x.T``); ``x.transpose((2, 0, 1))``
      with one tuple, or ``x.transpose(2, 0, 1)`` with ``ndim`` ints where ``ndim``
      is not 2, is NumPy's permutation: output dim ``k`` is input dim ``dims[k]``.
      ``x.permute(*dims)`` is the same permutation under PyTorch's name.
    """
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        return Transpose.apply(self, axes=tuple(dims[0]))
    if len(dims) == 2:
        return Transpose.apply(self, axes=_swap(self.ndim, *dims))
    return Transpose.apply(self, axes=dims or None)


def _swap(ndim, dim0, dim1):
    """The permutation of ``ndim`` dims that swaps ``dim0`` and ``dim1`` (checked)."""
    for d in (dim0, dim1):
        if not is_index(d, ndim):
            raise ShapeError("transpose: cannot swap dims %r and %r of a %d-D tensor" % (dim0, dim1, ndim))
    axes = list(range(ndim))
    axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
    return tuple(axes)


def _permute(self, *dims):
    """Reorder the dims: output dim ``k`` is input dim ``dims[k]`` (PyTorch's ``permute``).

    ``dims`` may be given as separate ints or one tuple; it must name every dim once.
    """
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    if len(dims) != self.ndim:
        raise ShapeError("permute: dims %s do not name each of the %d dims of a tensor of shape %s once"
                         % (dims, self.ndim, self.shape))
    return Transpose.apply(self, axes=dims)


def _getitem(self, idx):
    if isinstance(idx, Tensor):
        idx = idx.data
    elif isinstance(idx, tuple):
        idx = tuple(i.data if isinstance(i, Tensor) else i for i in idx)
    if isinstance(idx, np.ndarray) and idx.dtype.kind == "f":
        raise ShapeError("getitem: index arrays must be integers or booleans, got %s" % idx.dtype)
    return GetItem.apply(self, idx=idx)


Tensor.__add__ = _binary(Add)
Tensor.__radd__ = _binary(Add, reflected=True)
Tensor.__sub__ = _binary(Sub)
Tensor.__rsub__ = _binary(Sub, reflected=True)
Tensor.__mul__ = _binary(Mul)
Tensor.__rmul__ = _binary(Mul, reflected=True)
Tensor.__truediv__ = _binary(Div)
Tensor.__rtruediv__ = _binary(Div, reflected=True)
Tensor.__pow__ = _binary(Pow)
Tensor.__rpow__ = _binary(Pow, reflected=True)
Tensor.__matmul__ = _binary(MatMul)
Tensor.__rmatmul__ = _binary(MatMul, reflected=True)
Tensor.__neg__ = lambda self: Neg.apply(self)
Tensor.__getitem__ = _getitem
Tensor.tanh = tanh
Tensor.sigmoid = sigmoid
Tensor.relu = relu
Tensor.exp = exp
Tensor.log = log
Tensor.sum = lambda self, axis=None, keepdims=False: Sum.apply(self, axis=axis, keepdims=keepdims)
Tensor.mean = lambda self, axis=None, keepdims=False: Mean.apply(self, axis=axis, keepdims=keepdims)
Tensor.reshape = _reshape
Tensor.transpose = _transpose
Tensor.permute = _permute
Tensor.astype = lambda self, dtype: Cast.apply(self, dtype=float_dtype("astype", dtype))
Tensor.astype.__doc__ = "This tensor converted to ``dtype``, float32 or float64 (differentiable)."
Tensor.T = property(lambda self: Transpose.apply(self, axes=None))
for _name, _method in inplace.METHODS.items():
    setattr(Tensor, _name, _method)

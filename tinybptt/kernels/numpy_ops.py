"""The NumPy reference kernels for the primitive ops: matmul, bmm, the activations
and the embedding's backward pass.

This module is the oracle.  The C backend (``kernels/c.py``) exposes the same
functions with the same signatures and must agree with these to rounding.

Like the C kernels, these compute IEEE results silently, whatever ``np.seterr``
says: overflow gives inf, ``inf * 0`` gives NaN, tiny values underflow to 0,
and no NumPy warning is raised.  To find where a NaN or Inf first appears, use
``tinybptt.inspect.detect_anomaly()``.
"""
import numpy as np

from . import validate as V

# ---------------------------------------------------------------- matmul

def matmul(a, b, trans_a=False, trans_b=False, out=None, accumulate=False):
    """``op(a) @ op(b)`` for 2-D float arrays, op = transpose when the flag is set.

    With ``out`` given, the product is written into it (``accumulate=True``
    adds to what is there instead) and ``out`` is returned.
    """
    M, N, K, dtype = V.matmul_shapes("matmul", a, b, trans_a, trans_b)
    with np.errstate(all="ignore"):  # inf * 0 = NaN, overflow = inf: silently, as in C
        r = (a.T if trans_a else a) @ (b.T if trans_b else b)
    if out is None:
        return r
    V.check_out("matmul", out, (M, N), dtype)
    if accumulate:
        out += r
    else:
        out[...] = r
    return out


def bmm(a, b):
    """Batched matmul: ``out[s] = a[s] @ b[s]`` for a (S, M, K) and b (S, K, N) -> new (S, M, N).

    Any of S, M, N, K may be 0 (K = 0 gives zeros).
    """
    V.bmm_shapes("bmm", a, b)
    with np.errstate(all="ignore"):  # silently IEEE, as in C
        return np.matmul(a, b)


# ---------------------------------------------------------------- activations
# Backward passes take the saved forward OUTPUT y.

def tanh(x):
    V.check_float("tanh", x)
    x = np.asarray(x)  # an ndarray subclass (np.matrix) as a plain array, as C sees it
    return np.asarray(np.tanh(x))  # asarray: a 0-D input gives a 0-D array, not a NumPy scalar


def tanh_backward(y, dy):
    V.check_activation_backward("tanh_backward", y, dy)
    y, dy = np.asarray(y), np.asarray(dy)  # np.matrix: * would be a matrix product
    with np.errstate(all="ignore"):  # dy = inf at a saturated y = +-1 gives inf * 0 = NaN, silently
        return np.asarray(dy * (1 - y * y))


def sigmoid(x):
    """Overflow-free logistic: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) for x < 0."""
    V.check_float("sigmoid", x)
    x = np.asarray(x)  # an ndarray subclass (np.matrix) as a plain array, as C sees it
    out = np.empty(x.shape, dtype=x.dtype)
    pos = x >= 0
    with np.errstate(under="ignore"):  # exp(-1000) = 0 is the right answer, even under np.seterr(all="raise")
        out[pos] = 1 / (1 + np.exp(-x[pos]))
        e = np.exp(x[~pos])  # x < 0 or NaN here: exp cannot overflow
        out[~pos] = e / (1 + e)
    return out


def sigmoid_backward(y, dy):
    V.check_activation_backward("sigmoid_backward", y, dy)
    y, dy = np.asarray(y), np.asarray(dy)  # np.matrix: * would be a matrix product
    with np.errstate(all="ignore"):  # dy = inf at a saturated y gives inf * 0 = NaN, silently
        return np.asarray(dy * y * (1 - y))


def relu(x):
    V.check_float("relu", x)
    return np.where(x > 0, x, np.where(np.isnan(x), x, 0)).astype(x.dtype, copy=False)


def relu_backward(y, dy):
    """``dy`` where ``y > 0`` or ``y`` is NaN, else 0 (PyTorch's rule: zero exactly where ``y <= 0``)."""
    V.check_activation_backward("relu_backward", y, dy)
    return np.where(y <= 0, 0, dy).astype(dy.dtype, copy=False)


# ---------------------------------------------------------------- embedding

def embedding_backward(ids, grad, num_embeddings):
    """The gradient of an embedding lookup ``weight[ids]`` with respect to ``weight``.

    ``ids`` integer ids of any shape (n of them), each in [0, num_embeddings);
    ``grad`` the gradient on the lookup's output, of shape ``ids.shape + (E,)``,
    float32 or float64.  Returns a new (num_embeddings, E) array of grad's dtype
    whose row v is the sum of the rows ``grad[k]`` with ``ids[k] == v`` (zeros for
    an id that does not occur), summed in C order of ``ids``: the order the C
    kernel sums in, so both give the same bits.
    """
    E = V.embedding_backward_args("embedding_backward", ids, grad, num_embeddings)
    n = ids.size
    out = np.zeros((num_embeddings, E), dtype=grad.dtype)
    # ids flattened in C order, grad as (n, E) rows: np.add.at adds row k after row k-1
    np.add.at(out, np.asarray(ids).reshape(n), np.asarray(grad).reshape(n, E))
    return out

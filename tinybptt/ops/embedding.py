"""The embedding lookup: integer ids in, rows of a table out, as one op.

For a table ``weight`` (V, E) and ids of any shape, ``embedding(ids, weight)``
is ``weight[ids]``, of shape ``ids.shape + (E,)``: row ``ids[k]`` of the table
for each id.  Its backward pass sends each row of the incoming gradient ``g``
back to the row of the table it was read from::

    dweight = zeros(V, E);   for each id k (in C order):   dweight[ids[k]] += g[k]

so an id read several times collects all its gradients, and a row that was not
read gets zero.  That loop is a kernel (``kernels.backend.embedding_backward``).
For a (23, 64) batch of ids into an (83, 32) float32 table, on one core, the C
backend's takes about 10 us (4 in the C loop, the rest checking the ids and
the gradient), where ``np.add.at`` into the 2-D table -- the backward of the
generic indexing op ``weight[ids]``, and the NumPy reference here -- takes
about 420 us.
"""
import numpy as np

from .. import kernels
from ..autograd import Function, Tensor
from ..errors import ShapeError, describe
from ..kernels.validate import check_ids
from .operands import integer_array, operand_array


class Embedding(Function):
    """``weight[ids]`` for a table ``weight`` (V, E) and int64 ``ids`` of any shape (checked by the caller:
    ``embedding_lookup``); backward: the rows of the gradient summed into the rows they came from."""

    name = "embedding"  # PyTorch's node is EmbeddingBackward

    @staticmethod
    def forward(ctx, weight, ids=None):
        ctx.ids, ctx.num_embeddings = ids, weight.shape[0]
        # np.take is the gather weight[ids] without fancy indexing's general machinery:
        # the same copy, 3-4x faster for (23, 64) ids into an (83, 32) table
        return np.take(weight, ids, axis=0)

    @staticmethod
    def backward(ctx, g):
        return kernels.backend.embedding_backward(ctx.ids, g, ctx.num_embeddings)


def embedding(input, weight):
    """Rows of the table ``weight`` (num_embeddings, embedding_dim) picked by the integer ids
    ``input`` (any shape): a tensor of shape ``input.shape + (embedding_dim,)``.  PyTorch's
    ``F.embedding(input, weight)``.

    ``input`` is a Tensor or an array of integers (floats holding whole numbers are taken
    too), each in [0, num_embeddings); ``weight`` a Tensor or a float array.  The gradient
    reaches ``weight`` only (ids have none): each row gets the sum of the gradients of the
    positions that read it.
    """
    return embedding_lookup(input, weight, "embedding")


def embedding_lookup(ids, weight, who):
    """``embedding(ids, weight)`` with ``who`` naming the caller in error messages (``nn.Embedding``
    calls it as ``"Embedding(V, E)"``): the ids and the table checked, then one ``Embedding`` node."""
    if not isinstance(weight, Tensor):
        weight = Tensor(operand_array(who, weight, what="weight"))
    if weight.ndim != 2 or weight.shape[0] < 1:
        raise ShapeError("%s: weight must be a 2-D table (num_embeddings, embedding_dim) with at least one row, "
                         "got %s" % (who, describe(weight.data)))
    return Embedding.apply(weight, ids=embedding_ids(ids, weight.shape[0], who))


def embedding_ids(ids, num_embeddings, who):
    """``ids`` (a Tensor or an array) as a fresh C-contiguous int64 array, every id in [0, num_embeddings).

    Floats are accepted if they hold whole numbers (a Tensor of ids is float), anything else
    that is not integers is a DTypeError, an id out of range a ShapeError; both name ``who``.
    The copy is the op's own: editing the caller's array before backward cannot move a gradient.
    """
    idx = integer_array(who, ids.data if isinstance(ids, Tensor) else ids, "ids")
    check_ids(who, idx, num_embeddings)
    return np.array(idx, dtype=np.int64, order="C")

"""Feed-forward layers: ``Linear`` and ``Embedding`` (PyTorch names, shapes and init)."""
import numpy as np

from ..autograd import Tensor, _as_array, float_dtype
from ..errors import DTypeError, ShapeError, describe, integer_at_least
from ..ops.embedding import embedding_lookup
from . import init
from .functional import linear
from .module import Module, Parameter


def as_input(x, dtype, who):
    """``x`` as a Tensor of ``dtype``: arrays are converted, Tensors of another dtype are an error."""
    if isinstance(x, Tensor):
        if x.dtype != dtype:
            raise DTypeError(
                "%s: input is %s but the layer's parameters are %s; convert with x.astype(np.%s) "
                "or the layer with .to(np.%s)" % (who, describe(x.data), dtype, dtype, x.dtype)
            )
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise DTypeError("%s: cannot use an input of dtype %s" % (who, arr.dtype))
    return Tensor(_as_array(arr, dtype))


class Linear(Module):
    """``y = x @ weight.T + bias`` over the last axis of ``x`` (..., in_features).

    weight (out_features, in_features) and bias (out_features,) start as
    U(-1/sqrt(in_features), 1/sqrt(in_features)), as in PyTorch, drawn from
    ``generator`` (None: the global one; an int seed; a numpy Generator -- see
    ``nn.init``).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float64, generator=None):
        super().__init__()
        rng = init.resolve_generator(generator, "Linear")
        self.in_features = integer_at_least("Linear", "in_features", in_features, 1)
        self.out_features = integer_at_least("Linear", "out_features", out_features, 1)
        self.dtype = float_dtype("Linear", dtype)
        k = 1.0 / np.sqrt(self.in_features) if self.in_features else 0.0
        self.weight = Parameter(np.zeros((self.out_features, self.in_features), dtype=self.dtype), dtype=self.dtype)
        init.uniform_(self.weight, -k, k, generator=rng)
        if bias:
            self.bias = Parameter(np.zeros(self.out_features, dtype=self.dtype), dtype=self.dtype)
            init.uniform_(self.bias, -k, k, generator=rng)
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        x = as_input(x, self.dtype, "Linear(%d, %d)" % (self.in_features, self.out_features))
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ShapeError(
                "Linear(in_features=%d, out_features=%d): input must have shape (..., %d), got %s"
                % (self.in_features, self.out_features, self.in_features, describe(x.data))
            )
        return linear(x, self.weight, self.bias)  # x @ W^T + b in one node

    def extra_repr(self):
        return "in_features=%d, out_features=%d, bias=%s" % (self.in_features, self.out_features, self.bias is not None)


class Embedding(Module):
    """A lookup table: integer ids (any shape) -> rows of ``weight`` (num_embeddings, embedding_dim).

    ``weight`` starts as N(0, 1), as in PyTorch, drawn from ``generator`` (see
    ``nn.init``).  The forward pass is ``F.embedding(ids, weight)``: ids are
    integers (or floats holding whole numbers) in [0, num_embeddings).  The
    backward pass adds each row's gradient into the rows that were looked up
    (repeats accumulate).
    """

    def __init__(self, num_embeddings, embedding_dim, dtype=np.float64, generator=None):
        super().__init__()
        self.num_embeddings = integer_at_least("Embedding", "num_embeddings", num_embeddings, 1)
        self.embedding_dim = integer_at_least("Embedding", "embedding_dim", embedding_dim, 1)
        self.dtype = float_dtype("Embedding", dtype)
        self.weight = Parameter(np.zeros((self.num_embeddings, self.embedding_dim), dtype=self.dtype), dtype=self.dtype)
        init.normal_(self.weight, generator=init.resolve_generator(generator, "Embedding"))

    def forward(self, ids):
        # F.embedding, with errors naming this layer: "Embedding(83, 32): ids must lie in [0, 83), ..."
        return embedding_lookup(ids, self.weight, "Embedding(%d, %d)" % (self.num_embeddings, self.embedding_dim))

    def extra_repr(self):
        return "%d, %d" % (self.num_embeddings, self.embedding_dim)

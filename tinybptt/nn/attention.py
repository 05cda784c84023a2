"""Attention: the recurrence-free contrast to the RNN, built from ordinary ops.

A recurrent layer carries information from step ``s`` to step ``t`` through
``t - s`` multiplications by its recurrent Jacobian, so the gradient between
them can vanish.  Attention connects every query position to every key
position in one step: each output is a softmax-weighted average of projected
values, and the gradient reaches step ``s`` through one softmax and two matrix
products, whatever the distance.

``MultiheadAttention`` has PyTorch's constructor, call, parameter names and
shapes, so a ``torch.nn.MultiheadAttention`` state_dict loads into it::

    attn = MultiheadAttention(embed_dim=8, num_heads=2)
    attn.load_state_dict({k: v.detach().numpy() for k, v in torch_attn.state_dict().items()})
    out, weights = attn(x, x, x, attn_mask=causal_mask(T))   # x (T, N, 8)

It is composed of tinybptt ops (``linear``, batched ``@``, ``masked_fill``,
``softmax``), so its gradients come from their backward passes and can be
inspected node by node.  Attention has no notion of order by itself; add
``SinusoidalPositionalEncoding`` or ``LearnedPositionalEncoding`` to the
inputs.  ``AttentionClassifier`` puts the pieces together into a tiny sequence
classifier for the tasks in ``tinybptt.tasks``.
"""
import math

import numpy as np

from ..autograd import Tensor, float_dtype
from ..errors import DTypeError, ShapeError, describe, integer_at_least, is_index
from ..ops import linear
from ..ops.masking import masked_fill
from ..ops.softmax import softmax
from . import init
from .layers import Embedding, Linear, as_input
from .module import Module, Parameter


def causal_mask(L, S=None):
    """The boolean mask (L, S) that stops position ``i`` attending to any key after ``i``: True = masked.

    ``S`` defaults to ``L``.  PyTorch's ``nn.Transformer.generate_square_subsequent_mask``
    gives the same mask as floats (``-inf`` where this is True).
    """
    L = integer_at_least("causal_mask", "L", L, 0)
    S = L if S is None else integer_at_least("causal_mask", "S", S, 0)
    return np.triu(np.ones((L, S), dtype=bool), k=1)


class MultiheadAttention(Module):
    """Multi-head scaled dot-product attention, as ``torch.nn.MultiheadAttention``.

    ``attn(query, key, value)`` with query (L, N, E), key and value (S, N, E)
    ((N, L, E) and (N, S, E) with ``batch_first=True``; (L, E) and (S, E) for one
    unbatched sequence) computes, for each of the ``num_heads`` heads of size
    D = E / num_heads::

        Q = query W_q^T + b_q,  K = key W_k^T + b_k,  V = value W_v^T + b_v   (split into heads)
        weights = softmax(Q K^T / sqrt(D) + mask)                              (N, H, L, S)
        out = concat_heads(weights V) W_o^T + b_o                              like query

    Parameters (PyTorch's names and shapes): ``in_proj_weight`` (3E, E), the rows
    of W_q, W_k, W_v stacked; ``in_proj_bias`` (3E,); ``out_proj.weight`` (E, E)
    and ``out_proj.bias`` (E,).  ``bias=False`` drops both biases.  Initialised as
    PyTorch does: Xavier-uniform ``in_proj_weight``, zero biases, ``out_proj.weight``
    U(-1/sqrt(E), 1/sqrt(E)); drawn from ``generator`` (see ``nn.init``).  ``dropout``
    exists for PyTorch's argument order; only 0 is supported.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False, dtype=np.float64,
                 generator=None):
        super().__init__()
        who = "MultiheadAttention"
        rng = init.resolve_generator(generator, who)
        self.embed_dim = integer_at_least(who, "embed_dim", embed_dim, 1)
        self.num_heads = integer_at_least(who, "num_heads", num_heads, 1)
        if self.embed_dim % self.num_heads:
            raise ValueError("%s: embed_dim (%d) must be divisible by num_heads (%d)"
                             % (who, self.embed_dim, self.num_heads))
        if dropout != 0:
            raise ValueError("%s: dropout is not supported (got %r); use dropout=0.0" % (who, dropout))
        self.head_dim = self.embed_dim // self.num_heads
        self.batch_first = bool(batch_first)
        self.dtype = float_dtype(who, dtype)
        E = self.embed_dim
        self.in_proj_weight = Parameter(np.zeros((3 * E, E), self.dtype), dtype=self.dtype)
        init.xavier_uniform_(self.in_proj_weight, generator=rng)
        if bias:
            self.in_proj_bias = Parameter(np.zeros(3 * E, self.dtype), dtype=self.dtype)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(E, E, bias=bias, dtype=self.dtype, generator=rng)
        if bias:
            init.zeros_(self.out_proj.bias)

    def _name(self):
        return "MultiheadAttention(embed_dim=%d, num_heads=%d)" % (self.embed_dim, self.num_heads)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        """``(out, weights)``: out shaped like ``query``; weights (N, L, S) averaged over heads,
        (N, num_heads, L, S) with ``average_attn_weights=False``, None with ``need_weights=False``.

        Masks (True or ``-inf`` = may not attend; a float mask is added to the scores):
        ``attn_mask`` (L, S) or (N * num_heads, L, S); ``key_padding_mask`` (N, S).
        ``is_causal=True`` without an ``attn_mask`` applies ``causal_mask(L, S)``; with one,
        the given mask is used (in PyTorch ``is_causal`` is only a hint and needs the mask
        too).  A query whose every key is masked gets NaN weights and output, as in PyTorch.
        """
        (q, k, v), unbatched = self._inputs(query, key, value)
        N, L, S = q.shape[0], q.shape[1], k.shape[1]
        if is_causal and attn_mask is None:
            attn_mask = causal_mask(L, S)
        qh = self._heads(self._project(q, 0), (0, 2, 1, 3))  # (N, H, L, D)
        kt = self._heads(self._project(k, 1), (0, 2, 3, 1))  # (N, H, D, S): K^T per head
        vh = self._heads(self._project(v, 2), (0, 2, 1, 3))  # (N, H, S, D)
        scores = (qh * math.sqrt(1.0 / self.head_dim)) @ kt  # (N, H, L, S)
        if attn_mask is not None:
            scores = _apply_mask(scores, self._attn_mask(attn_mask, unbatched, N, L, S))
        if key_padding_mask is not None:
            scores = _apply_mask(scores, self._padding_mask(key_padding_mask, unbatched, N, S))
        weights = softmax(scores, -1)
        heads = (weights @ vh).transpose((0, 2, 1, 3))  # (N, L, H, D)
        out = self.out_proj(heads.reshape(N, L, self.embed_dim))
        if unbatched:
            out = out.reshape(L, self.embed_dim)
        elif not self.batch_first:
            out = out.transpose((1, 0, 2))
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(axis=1)
        return out, (weights.reshape(weights.shape[1:]) if unbatched else weights)

    # ------------------------------------------------------------------ the steps of forward
    def _inputs(self, query, key, value):
        """query, key, value as batch-first 3-D Tensors (N, L|S, E), checked; and whether unbatched."""
        who = self._name()
        q, k, v = (as_input(t, self.dtype, who) for t in (query, key, value))
        E, nd = self.embed_dim, q.ndim
        if nd not in (2, 3) or k.ndim != nd or v.ndim != nd or any(t.shape[-1] != E for t in (q, k, v)):
            raise ShapeError(
                "%s: expected query (L, N, %d) and key, value (S, N, %d) (batch_first=%s: (N, L, %d), (N, S, %d); "
                "or 2-D for one sequence), got query, key, value %s"
                % (who, E, E, self.batch_first, E, E, describe(q.data, k.data, v.data)))
        batch = 0 if self.batch_first else 1
        if k.shape != v.shape or (nd == 3 and q.shape[batch] != k.shape[batch]):
            raise ShapeError("%s: key and value must have the same shape and the same batch size as query, "
                             "got query, key, value %s" % (who, describe(q.data, k.data, v.data)))
        if nd == 2:
            return tuple(t.reshape((1,) + t.shape) for t in (q, k, v)), True
        if not self.batch_first:
            q, k, v = (t.transpose((1, 0, 2)) for t in (q, k, v))
        return (q, k, v), False

    def _project(self, x, which):
        """x @ W^T + b with the ``which``-th (E, E) block of the input projection (0: q, 1: k, 2: v)."""
        E = self.embed_dim
        rows = slice(which * E, (which + 1) * E)
        b = None if self.in_proj_bias is None else self.in_proj_bias[rows]
        return linear(x, self.in_proj_weight[rows].T, b)

    def _heads(self, x, axes):
        """(N, T, E) -> (N, T, H, D), then its axes permuted by ``axes``."""
        N, T = x.shape[0], x.shape[1]
        return x.reshape(N, T, self.num_heads, self.head_dim).transpose(axes)

    def _attn_mask(self, mask, unbatched, N, L, S):
        """``attn_mask`` (L, S) or (N*H, L, S) as something that broadcasts against (N, H, L, S)."""
        m = _mask_value(self._name(), "attn_mask", mask, self.dtype)
        H = self.num_heads
        if m.shape == (L, S):
            return m
        if m.shape == (N * H, L, S):
            return m.reshape(N, H, L, S)
        raise ShapeError("%s: attn_mask must have shape (L, S) = (%d, %d) or (%s, L, S) = (%d, %d, %d), got %s"
                         % (self._name(), L, S, "num_heads" if unbatched else "N * num_heads", N * H, L, S,
                            describe(m)))

    def _padding_mask(self, mask, unbatched, N, S):
        """``key_padding_mask`` (N, S) (or (S,) unbatched) as (N, 1, 1, S): one row per sequence."""
        m = _mask_value(self._name(), "key_padding_mask", mask, self.dtype)
        if m.shape != ((S,) if unbatched else (N, S)):
            raise ShapeError("%s: key_padding_mask must have shape %s, got %s"
                             % (self._name(), "(S,) = (%d,)" % S if unbatched else "(N, S) = (%d, %d)" % (N, S),
                                describe(m)))
        return m.reshape(N, 1, 1, S)

    def extra_repr(self):
        return "embed_dim=%d, num_heads=%d, bias=%s, batch_first=%s" % (
            self.embed_dim, self.num_heads, self.in_proj_bias is not None, self.batch_first)


def _mask_value(who, name, mask, dtype):
    """A mask as a bool ndarray, or as a float ndarray/Tensor of ``dtype`` (added to the scores)."""
    if isinstance(mask, Tensor):
        if mask.dtype != dtype:
            raise DTypeError("%s: %s is %s but the layer is %s" % (who, name, describe(mask.data), dtype))
        return mask
    m = np.asarray(mask)
    if m.dtype == np.bool_:
        return m
    if m.dtype.kind != "f":
        raise DTypeError("%s: %s must be boolean (True = may not attend) or float (added to the scores), got %s"
                         % (who, name, describe(m)))
    return m.astype(dtype, copy=False)


def _apply_mask(scores, mask):
    """Boolean mask: masked scores become -inf (probability 0). Float mask: added to the scores."""
    if isinstance(mask, np.ndarray) and mask.dtype == np.bool_:
        return masked_fill(scores, mask, float("-inf"))
    return scores + mask


# --------------------------------------------------------------------------- positions


def sinusoidal_table(length, embed_dim, dtype=np.float64):
    """The (length, embed_dim) table of Vaswani et al. (2017): for position p and i = 0, 1, ...

    ``table[p, 2i] = sin(p / 10000^(2i / embed_dim))`` and ``table[p, 2i+1] = cos(...)`` of the
    same angle.  Each pair of columns turns at its own rate, so any fixed offset between
    two positions is the same rotation everywhere: attention can learn "k steps back".
    """
    length = integer_at_least("sinusoidal_table", "length", length, 0)
    embed_dim = integer_at_least("sinusoidal_table", "embed_dim", embed_dim, 1)
    dtype = float_dtype("sinusoidal_table", dtype)  # an integer dtype would round the table to -1, 0, 1
    pos = np.arange(length, dtype=np.float64)[:, None]
    rate = np.exp(-math.log(10000.0) * np.arange(0, embed_dim, 2, dtype=np.float64) / embed_dim)
    table = np.zeros((length, embed_dim))
    table[:, 0::2] = np.sin(pos * rate)
    table[:, 1::2] = np.cos(pos * rate[: embed_dim // 2])  # an odd embed_dim has one sine more than cosines
    return table.astype(dtype)


def _sequence_length(x, batch_first, who):
    if x.ndim != 3:
        raise ShapeError("%s: expected input (T, N, E) (batch_first: (N, T, E)), got %s" % (who, describe(x.data)))
    return x.shape[1] if batch_first else x.shape[0]


def _add_positions(x, table, batch_first):
    """x (T, N, E) or (N, T, E) plus the (T, E) table, broadcast over the batch."""
    return x + (table[None] if batch_first else table[:, None])


class SinusoidalPositionalEncoding(Module):
    """Adds the fixed sine/cosine position table (``sinusoidal_table``) to (T, N, E) inputs.

    No parameters; any sequence length works.  ``batch_first=True`` takes (N, T, E).
    """

    def __init__(self, embed_dim, batch_first=False, dtype=np.float64):
        super().__init__()
        self.embed_dim = integer_at_least("SinusoidalPositionalEncoding", "embed_dim", embed_dim, 1)
        self.batch_first = bool(batch_first)
        self.dtype = float_dtype("SinusoidalPositionalEncoding", dtype)

    def forward(self, x):
        who = "SinusoidalPositionalEncoding(%d)" % self.embed_dim
        x = as_input(x, self.dtype, who)
        T = _sequence_length(x, self.batch_first, who)
        if x.shape[-1] != self.embed_dim:
            raise ShapeError("%s: inputs must have %d features, got %s" % (who, self.embed_dim, describe(x.data)))
        return _add_positions(x, sinusoidal_table(T, self.embed_dim, self.dtype), self.batch_first)

    def extra_repr(self):
        return "%d, batch_first=%s" % (self.embed_dim, self.batch_first)


class LearnedPositionalEncoding(Module):
    """Adds a learned vector per position, ``embedding.weight[t]`` (an ``Embedding(max_len, embed_dim)``).

    Sequences longer than ``max_len`` are a ShapeError: there is no vector for them.
    """

    def __init__(self, max_len, embed_dim, batch_first=False, dtype=np.float64, generator=None):
        super().__init__()
        self.max_len = integer_at_least("LearnedPositionalEncoding", "max_len", max_len, 1)
        self.batch_first = bool(batch_first)
        self.embedding = Embedding(self.max_len, embed_dim, dtype=dtype, generator=generator)
        self.embed_dim, self.dtype = self.embedding.embedding_dim, self.embedding.dtype

    def forward(self, x):
        who = "LearnedPositionalEncoding(%d, %d)" % (self.max_len, self.embed_dim)
        x = as_input(x, self.dtype, who)
        T = _sequence_length(x, self.batch_first, who)
        if T > self.max_len or x.shape[-1] != self.embed_dim:
            raise ShapeError("%s: inputs must have at most %d steps of %d features, got %s"
                             % (who, self.max_len, self.embed_dim, describe(x.data)))
        return _add_positions(x, self.embedding(np.arange(T)), self.batch_first)

    def extra_repr(self):
        return "%d, %d, batch_first=%s" % (self.max_len, self.embed_dim, self.batch_first)


# --------------------------------------------------------------------------- a tiny classifier


class AttentionClassifier(Module):
    """Sequence -> class logits with one attention layer and no recurrence.

    ``x`` (T, N, input_size) (one-hot words or real features; (N, T, input_size) with
    ``batch_first=True``), or integer word ids (T, N) that stand for one-hot rows:

        h = embed(x) + positions          embed: Linear(input_size, embed_dim), on one-hot rows a word embedding
        z = h + attn(h, h, h)             one MultiheadAttention layer, causal if asked
        logits = head(z[readout])         head: Linear(embed_dim, num_classes)

    ``positional``: "sinusoidal" (no parameters) or "learned" (needs ``max_len``).
    ``readout``: the position whose output is classified (default -1, the last);
    ``forward(x, readout=...)`` overrides it for one call; ``forward_embedded(e)``
    starts from embedded inputs.  With ``causal=True`` position t sees only steps
    0..t, as a recurrent layer would.
    """

    def __init__(self, input_size, num_classes, embed_dim=32, num_heads=2, positional="sinusoidal", max_len=None,
                 causal=False, readout=-1, batch_first=False, dtype=np.float64, generator=None):
        super().__init__()
        who = "AttentionClassifier"
        rng = init.resolve_generator(generator, who)  # once: each part draws its own numbers from it
        self.input_size = integer_at_least(who, "input_size", input_size, 1)
        self.embed = Linear(self.input_size, embed_dim, dtype=dtype, generator=rng)
        if positional == "sinusoidal":
            self.positions = SinusoidalPositionalEncoding(embed_dim, batch_first=batch_first, dtype=dtype)
        elif positional == "learned":
            if max_len is None:
                raise ValueError("%s: positional='learned' needs max_len (the longest sequence)" % who)
            self.positions = LearnedPositionalEncoding(max_len, embed_dim, batch_first=batch_first, dtype=dtype,
                                                       generator=rng)
        else:
            raise ValueError("%s: positional must be 'sinusoidal' or 'learned', got %r" % (who, positional))
        self.attn = MultiheadAttention(embed_dim, num_heads, batch_first=batch_first, dtype=dtype, generator=rng)
        self.head = Linear(embed_dim, num_classes, dtype=dtype, generator=rng)
        self.causal, self.readout, self.batch_first = bool(causal), readout, bool(batch_first)
        self.dtype = self.embed.dtype

    def forward(self, x, readout=None):
        """Logits (N, num_classes) read out at position ``readout`` (default: the constructor's)."""
        return self.forward_embedded(self.embed(self._one_hot(x)), readout)

    def forward_embedded(self, e, readout=None):
        """The same from inputs already embedded, ``e`` (T, N, embed_dim): differentiate the logits
        with respect to ``e`` to see how strongly the decision depends on each step."""
        h = self.positions(e)
        T = h.shape[1] if self.batch_first else h.shape[0]
        t = self.readout if readout is None else readout
        if not is_index(t, T):
            raise ShapeError("AttentionClassifier: readout position %r is outside a sequence of %d steps" % (t, T))
        a, _ = self.attn(h, h, h, attn_mask=causal_mask(T) if self.causal else None, need_weights=False)
        z = h + a  # the residual keeps each step's own input beside what it gathered
        return self.head(z[:, t] if self.batch_first else z[t])

    def _one_hot(self, x):
        """Integer ids (T, N) as one-hot rows (T, N, input_size); anything else is passed on."""
        if isinstance(x, Tensor):
            return x
        ids = np.asarray(x)
        if ids.dtype.kind not in "iu":
            return x
        if ids.size and (ids.min() < 0 or ids.max() >= self.input_size):
            raise ShapeError("AttentionClassifier: word ids must lie in [0, %d), got values from %d to %d"
                             % (self.input_size, ids.min(), ids.max()))
        return np.eye(self.input_size, dtype=self.dtype)[ids]

    def extra_repr(self):
        return "causal=%s, readout=%d" % (self.causal, self.readout)

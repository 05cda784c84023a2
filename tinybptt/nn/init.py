"""Weight initialisers, each filling a Parameter (or array) in place and returning it.

Where the random numbers come from.  Every random initialiser, and every layer
constructor, takes ``generator=``:

* ``None`` (the default): one module-level generator shared by the whole
  process; ``manual_seed(n)`` reseeds it, so a program that builds its layers
  in a fixed order gets the same weights every run.  Layers built in several
  threads at once take turns on that one stream, so which thread gets which
  numbers depends on timing.
* an int seed: a fresh ``numpy.random.default_rng(seed)`` for that one call;
  the same seed always gives the same weights, whatever ran before and in
  whichever thread.  ``LSTM(3, 4, generator=7)`` gets exactly the weights that
  ``manual_seed(7)`` followed by ``LSTM(3, 4)`` gets.
* a ``numpy.random.Generator``: drawn from and advanced, so one generator
  passed to several layers (or initialisers) in turn gives each its own
  numbers -- a reproducible model per thread without touching the global one.

Recurrent weights have shape (G*H, ...) with G gate blocks stacked in PyTorch's
order (LSTM i, f, g, o; GRU r, z, n).  ``orthogonal_`` and ``identity_`` take
``gates=G`` to treat each (H, H) block of a recurrent weight separately.
"""
import numpy as np

from ..autograd import Tensor
from ..errors import DTypeError, ShapeError, integer_at_least
from ..kernels.cells import GATE_NAMES, GATES

_rng = np.random.default_rng()


def manual_seed(seed):
    """Reseed the generator used by layer constructors and the random initialisers."""
    global _rng
    _rng = np.random.default_rng() if seed is None else resolve_generator(seed, "manual_seed")


def get_rng():
    """The global generator: what the initialisers draw from without a ``generator``."""
    return _rng


def resolve_generator(generator=None, who="init"):
    """The ``numpy.random.Generator`` that ``generator`` names (see the module's docstring).

    None gives the global generator (as it is now, after any ``manual_seed``), an int
    seed a fresh generator seeded with it, a Generator itself; anything else is a
    TypeError naming ``who``.  Resolve once and pass the result on when one call
    draws several arrays: resolving an int twice would give two identical streams.
    """
    if generator is None:
        return _rng
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, (bool, np.bool_)):
        if generator < 0:
            raise ValueError("%s: a generator seed must be >= 0, got %d" % (who, generator))
        return np.random.default_rng(int(generator))
    raise TypeError("%s: generator must be None, an int seed or a numpy.random.Generator, got %r (%s)"
                    % (who, generator, type(generator).__name__))


def _arr(t):
    return t.data if isinstance(t, Tensor) else t


def _fill(t, values):
    a = _arr(t)
    a[...] = values
    return t


def _real(op, name, v):
    """``v`` checked to be real numbers (a number or an array), else DTypeError naming ``op``:
    a complex value would lose its imaginary part when written into a float weight."""
    if np.asarray(v).dtype.kind not in "biuf":
        raise DTypeError("%s: %s must be a real number, got %r" % (op, name, v))
    return v


def uniform_(t, a=0.0, b=1.0, generator=None):
    """Fill with U(a, b), drawn from ``generator`` (None: the global one; see the module's docstring)."""
    if np.any(np.asarray(_real("uniform_", "a", a)) > np.asarray(_real("uniform_", "b", b))):
        raise ValueError("uniform_: needs a <= b, got a=%r, b=%r" % (a, b))
    return _fill(t, resolve_generator(generator, "uniform_").uniform(a, b, size=_arr(t).shape))


def normal_(t, mean=0.0, std=1.0, generator=None):
    """Fill with N(mean, std^2), drawn from ``generator``."""
    _real("normal_", "mean", mean)
    if np.any(np.asarray(_real("normal_", "std", std)) < 0):
        raise ValueError("normal_: std must be >= 0, got %r" % (std,))
    return _fill(t, resolve_generator(generator, "normal_").normal(mean, std, size=_arr(t).shape))


def constant_(t, value):
    """Fill with ``value``."""
    return _fill(t, _real("constant_", "value", value))


def zeros_(t):
    """Fill with zeros."""
    return _fill(t, 0.0)


def ones_(t):
    """Fill with ones."""
    return _fill(t, 1.0)


def _fans(shape, op):
    if len(shape) < 2:
        raise ShapeError("%s: needs a weight with at least 2 dimensions, got shape %s" % (op, tuple(shape)))
    fan_out, fan_in = shape[0], int(np.prod(shape[1:]))
    return fan_in, fan_out


def xavier_uniform_(t, gain=1.0, generator=None):
    """Glorot/Xavier uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)); weight (out, in)."""
    fan_in, fan_out = _fans(_arr(t).shape, "xavier_uniform_")
    a = gain * np.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -a, a, generator=resolve_generator(generator, "xavier_uniform_"))


glorot_uniform_ = xavier_uniform_


def xavier_normal_(t, gain=1.0, generator=None):
    """Glorot/Xavier normal: N(0, gain^2 * 2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_arr(t).shape, "xavier_normal_")
    return normal_(t, 0.0, gain * np.sqrt(2.0 / (fan_in + fan_out)),
                   generator=resolve_generator(generator, "xavier_normal_"))


def _blocks(t, gates, op):
    a = _arr(t)
    if a.ndim != 2:
        raise ShapeError("%s: needs a 2-D weight, got shape %s" % (op, a.shape))
    if gates is None:
        return [a]
    gates = integer_at_least(op, "gates, if not None,", gates, 1)
    if a.shape[0] % gates:
        raise ShapeError("%s: weight of shape %s does not split into %d gate blocks" % (op, a.shape, gates))
    n = a.shape[0] // gates
    return [a[k * n:(k + 1) * n] for k in range(gates)]


def orthogonal_(t, gain=1.0, gates=None, generator=None):
    """Fill with a (semi-)orthogonal matrix times ``gain`` (QR of a Gaussian matrix, signs fixed).

    With ``gates=G`` each of the G row blocks of a (G*H, H) recurrent weight gets
    its own orthogonal (H, H) matrix -- the usual choice for LSTM/GRU ``weight_hh``.
    """
    rng = resolve_generator(generator, "orthogonal_")  # once: every block draws its own numbers
    for block in _blocks(t, gates, "orthogonal_"):
        rows, cols = block.shape
        m = rng.normal(size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(m)
        q = q * np.sign(np.diag(r))  # make the distribution uniform (Haar)
        if rows < cols:
            q = q.T
        block[...] = gain * q
    return t


def identity_(t, gain=1.0, gates=None):
    """Fill with ``gain`` times the identity (IRNN: Le, Jaitly & Hinton 2015, with ReLU and zero bias).

    With ``gates=G`` every (H, H) gate block of a (G*H, H) weight is an identity.
    """
    for block in _blocks(t, gates, "identity_"):
        block[...] = gain * np.eye(*block.shape)
    return t


def kaiming_uniform_(t, gain=np.sqrt(2.0), generator=None):
    """He uniform: U(-a, a) with a = gain * sqrt(3 / fan_in)."""
    fan_in, _ = _fans(_arr(t).shape, "kaiming_uniform_")
    a = gain * np.sqrt(3.0 / fan_in)
    return uniform_(t, -a, a, generator=resolve_generator(generator, "kaiming_uniform_"))


def lstm_forget_bias_(module, value=1.0):
    """Set an LSTM's (or LSTMCell's) forget-gate bias to ``value``; returns the module.

    The forget gate is the second of the four gate blocks (i, f, g, o).  Its
    pre-activation receives ``bias_ih + bias_hh``, so this sets the f block of
    every ``bias_ih*`` to ``value`` and of every ``bias_hh*`` to 0: the gate's
    total bias is exactly ``value`` and a checkpoint moved to PyTorch behaves
    the same.  Raises ValueError for a module without biases or LSTM gates.
    """
    found = False
    for m in module.modules():
        if getattr(m, "cell_type", None) != "lstm":
            continue
        for name, p in m._parameters.items():
            if p is None or not name.startswith(("bias_ih", "bias_hh")):
                continue
            H = p.shape[0] // GATES["lstm"]
            f = GATE_NAMES["lstm"].index("f")
            p.data[f * H:(f + 1) * H] = value if name.startswith("bias_ih") else 0.0
            found = True
    if not found:
        raise ValueError(
            "lstm_forget_bias_: %s contains no LSTM biases; it needs an LSTM or LSTMCell "
            "(or a model containing one) built with bias=True" % type(module).__name__
        )
    return module

"""Exceptions raised by tinybptt.

Every error names the op or layer, the shapes and dtypes involved, and what to
do about it.  They subclass the built-in exception a Python user would expect
(``ValueError`` for bad shapes, ``TypeError`` for bad dtypes, ``RuntimeError``
for misuse of the graph), so ``except ValueError`` keeps working.
"""
import numbers


class TinyBPTTError(Exception):
    """Base class of every error tinybptt raises on purpose."""


class ShapeError(TinyBPTTError, ValueError):
    """Arrays whose shapes (or number of dimensions) do not fit the op."""


class DTypeError(TinyBPTTError, TypeError):
    """Arrays whose dtypes are not supported or do not match each other."""


class GraphError(TinyBPTTError, RuntimeError):
    """Misuse of the autograd graph, e.g. backward through a freed graph."""


class BackendError(TinyBPTTError, RuntimeError):
    """A kernel backend was requested that is unknown or unavailable."""


def describe(*arrays):
    """``shape dtype`` of each array, for error messages: ``(3, 4) float64, (4,) float32``."""
    parts = []
    for a in arrays:
        if a is None:
            parts.append("None")
        else:
            parts.append("%s %s" % (tuple(getattr(a, "shape", ())), getattr(a, "dtype", type(a).__name__)))
    return ", ".join(parts)


def is_integer(v):
    """True for an int or a NumPy integer.  A bool is not one (``True`` would pass as 1), nor is
    a float such as 2.0: a size, a count or an index given as either is a mistake worth naming."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_integer_at_least(v, minimum):
    """True for an integer (``is_integer``) >= ``minimum``."""
    return is_integer(v) and v >= minimum


def is_index(v, n):
    """True for an integer (``is_integer``) that indexes an axis of length ``n``: -n <= v < n."""
    return is_integer(v) and -n <= v < n


def integer_at_least(who, name, v, minimum, error=ValueError):
    """``v`` as an int >= ``minimum`` (a bool or a float such as 2.0 is refused), or ``error``
    naming ``who`` and ``name``: the one check for sizes and counts given as arguments."""
    if not is_integer_at_least(v, minimum):
        raise error("%s: %s must be an integer >= %d, got %r" % (who, name, minimum, v))
    return int(v)

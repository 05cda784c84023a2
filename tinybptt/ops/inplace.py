"""In-place edits of a tensor's data: ``add_``, ``sub_``, ``mul_``, ``div_``, ``zero_``,
``fill_``, ``copy_`` and ``t[idx] = value`` (PyTorch's names).

They change the array the tensor already has (a view of it sees the change) and
count as one edit in the tensor's ``version``, so that a backward pass through a
node that saved the tensor refuses to use the changed values.  They are not
recorded in the graph: on a tensor that requires grad they are allowed only
inside ``no_grad()`` -- where optimiser updates and initialisations belong.
"""
import numpy as np

from ..autograd import Tensor, is_grad_enabled
from ..errors import DTypeError, GraphError, ShapeError, describe


def _edit(t, op, fn):
    """Run ``fn(t.data)`` (which writes into the array) as the in-place op ``op``."""
    if t.requires_grad and is_grad_enabled():
        raise GraphError(
            "%s: in-place edits are not recorded in the graph, and this tensor requires grad (shape %s); "
            "do it inside tinybptt.no_grad() (as an optimiser update does), or write it out of place "
            "(y = x + 1)" % (op, t.shape))
    if not t.data.flags.writeable:
        raise ValueError("%s: the tensor's array is read-only (shape %s); make a writable copy first "
                         "(t.data = t.data.copy())" % (op, t.shape))
    try:
        fn(t.data)
    except (ValueError, IndexError) as exc:
        raise ShapeError("%s: cannot write that into a tensor of shape %s (%s)" % (op, t.shape, exc)) from None
    t.bump_version()
    return t


def _value(op, t, other):
    """``other`` as an array for ``op`` on ``t``: a Tensor's data, or a real number / array.

    A Tensor that requires grad is refused (with grad enabled): the edit copies its values
    but is not recorded in the graph, so no gradient would ever reach it."""
    if isinstance(other, Tensor) and other.requires_grad and is_grad_enabled():
        raise GraphError("%s: the value requires grad (%s), but in-place edits are not recorded in the graph, so "
                         "no gradient would reach it; build the result out of place (concat, stack, where), or "
                         "pass value.detach() if no gradient should flow" % (op, describe(other.data)))
    arr = other.data if isinstance(other, Tensor) else np.asarray(other)
    if arr.dtype.kind not in "biuf":
        raise DTypeError("%s: cannot write a value of dtype %s into a %s tensor" % (op, arr.dtype, t.dtype))
    return arr


def _scaled(op, t, other, alpha):
    """``alpha * other`` as an array (``other``'s alone when alpha is 1); ``alpha`` must be a real
    number: a complex one would be cast away when written into ``t``."""
    v = _value(op, t, other)
    a = _value(op, t, alpha)
    if a.ndim:
        raise ShapeError("%s: alpha must be a number, got an array of shape %s" % (op, a.shape))
    return v if a == 1 else v * a


def add_(self, other, alpha=1):
    """``self += alpha * other`` in place."""
    v = _scaled("add_", self, other, alpha)
    return _edit(self, "add_", lambda a: np.add(a, v, out=a, casting="unsafe"))


def sub_(self, other, alpha=1):
    """``self -= alpha * other`` in place."""
    v = _scaled("sub_", self, other, alpha)
    return _edit(self, "sub_", lambda a: np.subtract(a, v, out=a, casting="unsafe"))


def mul_(self, other):
    """``self *= other`` in place."""
    v = _value("mul_", self, other)
    return _edit(self, "mul_", lambda a: np.multiply(a, v, out=a, casting="unsafe"))


def div_(self, other):
    """``self /= other`` in place."""
    v = _value("div_", self, other)
    return _edit(self, "div_", lambda a: np.divide(a, v, out=a, casting="unsafe"))


def fill_(self, value):
    """Every element set to ``value``."""
    v = _value("fill_", self, value)
    return _edit(self, "fill_", lambda a: a.__setitem__(Ellipsis, v))


def zero_(self):
    """Every element set to 0."""
    return _edit(self, "zero_", lambda a: a.fill(0))


def copy_(self, src):
    """The values of ``src`` (broadcast to this tensor's shape) copied in."""
    v = _value("copy_", self, src)
    return _edit(self, "copy_", lambda a: np.copyto(a, v, casting="unsafe"))


def setitem(self, idx, value):
    """``t[idx] = value`` in place (an edit: counted in ``t.version``)."""
    if isinstance(idx, Tensor):
        idx = idx.data
    v = _value("setitem", self, value)
    _edit(self, "setitem", lambda a: a.__setitem__(idx, v))


METHODS = {"add_": add_, "sub_": sub_, "mul_": mul_, "div_": div_, "fill_": fill_, "zero_": zero_,
           "copy_": copy_, "__setitem__": setitem}

"""Non-Tensor operands (numbers, lists, NumPy arrays) made into the float arrays the ops compute with.

One rule for every op that takes them (``ops.tanh(array)``, ``x + array``,
``mse_loss(x, target_list)``, ``where(cond, array, x)``): bool, integer and float16
data become float64 (or the dtype asked for), float32/float64 stay as they are.
Anything a float array cannot hold without changing its meaning is an error that
names the op: complex values (casting would drop the imaginary part), strings,
objects, and ragged nested lists.

Indices are the other kind of operand (the class targets of a loss, an
embedding's ids): ``integer_array`` keeps integers as they are and takes floats
only when they hold whole numbers.
"""
import numpy as np

from ..autograd import _as_array, array_of
from ..errors import DTypeError


def operand_array(op, value, dtype=None, what="operand"):
    """``value`` as a float NumPy array for the op ``op`` (of ``dtype`` if given), or DTypeError/ShapeError;
    the errors call the value ``what`` ("operand", or e.g. "grad")."""
    arr = array_of(op, value)  # (a ragged nested list: ShapeError)
    if arr.dtype.kind == "c":
        raise DTypeError("%s: a complex %s (%s, dtype %s) cannot be used with real tensors; "
                         "pass its .real part if that is what you mean" % (op, what, _shown(value, arr), arr.dtype))
    if arr.dtype.kind not in "biuf":
        raise DTypeError("%s: the %s must be numbers, got %s of dtype %s" % (op, what, _shown(value, arr), arr.dtype))
    return _as_array(arr, dtype)


def integer_array(op, value, what):
    """``value`` (an array or anything NumPy reads) as an integer array, for indices: integers as they
    are; floats only if every value is a whole number (a Tensor of indices holds floats), cast to
    int64; anything else a DTypeError that names ``op`` and calls the value ``what`` ("ids")."""
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):  # inf would cast to garbage
            raise DTypeError("%s: %s must be integers, got dtype %s with non-integral or non-finite values"
                             % (op, what, arr.dtype))
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":  # (bool is not: True would pass as index 1)
        raise DTypeError("%s: %s must be integers, got dtype %s" % (op, what, arr.dtype))
    return arr


def _shown(value, arr=None):
    if arr is not None and arr.ndim:
        return "an array of shape %s" % (arr.shape,)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

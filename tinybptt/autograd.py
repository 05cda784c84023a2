"""The autograd engine's graph: Tensor, Function, and the node each op call records.

How it works, in four sentences.  Every operation on Tensors is a small
``Function`` subclass with a ``forward`` that computes NumPy arrays and a
``backward`` that maps the gradient of its outputs to the gradients of its
inputs.  Calling an op creates a *node* (a ``Context``): it remembers the op's
name, its input tensors and whatever the forward saved for backward.  Each
output Tensor points at the node that made it, so the tensors and nodes form a
graph leading back to the leaves (tensors the user created).  ``loss.backward()``
walks that graph from the loss back to the leaves, calling each node's
``backward`` once and adding (``+=``) what it returns into its inputs' gradients.

This file records the graph; the walk itself -- the order of the nodes, how the
gradients of a node's outputs are gathered before its backward runs, what is
checked around that call -- is ``backprop.py``.
"""
import itertools

import numpy as np

from . import saved as saved_values
from .errors import DTypeError, ShapeError
from .modes import thread
# the modes, re-exported: ``from tinybptt.autograd import no_grad, node_scope`` keeps working
from .modes import backward_hook, enable_grad, forward_hook, is_grad_enabled, no_grad, node_scope  # noqa: F401

DEFAULT_DTYPE = np.float64
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

_node_counter = itertools.count()


# --------------------------------------------------------------------------- Tensor


def float_dtype(op, dtype):
    """``dtype`` as ``np.dtype``, checked to be float32 or float64 (else DTypeError naming ``op``)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:  # not a dtype at all, e.g. "float80"
        raise DTypeError("%s: dtype must be float32 or float64, got %r" % (op, dtype)) from None
    if dt not in _FLOATS:
        raise DTypeError("%s: dtype must be float32 or float64, got %s" % (op, dt))
    return dt


def array_of(op, data, dtype=None):
    """``np.asarray(data, dtype)``, or a ShapeError naming ``op`` for data no array can hold
    (ragged nested lists such as ``[[1, 2], [3]]``)."""
    try:
        return np.asarray(data, dtype=dtype)
    except ValueError as exc:
        raise ShapeError("%s: cannot make an array of this data (%s)" % (op, exc)) from None


def _as_array(data, dtype=None):
    """Coerce ``data`` to a float NumPy array (float64 unless it already is float32/64)."""
    if isinstance(data, Tensor):
        data = data.data
    arr = array_of("tensor", data, None if dtype is None else float_dtype("tensor", dtype))
    if arr.dtype in _FLOATS:
        return arr
    if arr.dtype.kind in "biuf":  # bool, ints, float16: promote to the default float type
        return arr.astype(DEFAULT_DTYPE)
    raise DTypeError("tensor: cannot make a float tensor from data of dtype %s" % arr.dtype)


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    ``Tensor(data)`` uses a float32/float64 array as it is, without a copy (like
    ``from_numpy``); ``tinybptt.tensor(data)`` copies.

    Attributes
    ----------
    data : numpy.ndarray
        The value (float32 or float64).  Editing it in place between a forward
        pass and its backward is caught (see ``version``).
    grad : numpy.ndarray or None
        After ``backward()``, the gradient of the loss with respect to this tensor,
        for leaves that require grad (and non-leaves after ``retain_grad()``).
    requires_grad : bool
        Whether gradients flow to (and through) this tensor.
    """

    __slots__ = ("data", "_versions", "grad", "requires_grad", "_ctx", "_index", "_retain", "__weakref__")
    __array_priority__ = 1000  # make ndarray + Tensor call Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _as_array(data, dtype)
        self._versions = saved_values.VersionCounter()  # shared by the tensors that share the data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None  # the node that produced this tensor (None for leaves)
        self._index = 0  # which output of that node this tensor is
        self._retain = False

    # ---- the version of the data
    @property
    def version(self):
        """How many times the data was edited in place through the API (``add_``, ``mul_``,
        ``zero_``, ``copy_``, ``t[idx] = v``, ..., ``bump_version()``).

        A node that saved this tensor for backward remembers the version; backward
        raises ``GraphError`` if it changed.  (PyTorch calls it ``t._version``.)
        Assigning a new array, ``t.data = array``, is not an edit of the saved
        values (the node keeps the old array) and does not count.
        """
        return self._versions.value

    _version = version

    @property
    def version_counter(self):
        """The counter behind ``version``, one object shared by the tensors that share the data."""
        return self._versions

    def bump_version(self):
        """Count an in-place edit of ``data`` (the in-place methods call it; call it after
        editing the array yourself, e.g. ``t.data[0] = 1``, to have backward check it)."""
        self._versions.value += 1

    # ---- basic properties
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def __len__(self):
        return len(self.data)

    @property
    def is_leaf(self):
        """True for tensors created by the user rather than by an op."""
        return self._ctx is None

    @property
    def node(self):
        """The graph node (Context) that produced this tensor, or None for a leaf."""
        return self._ctx

    @property
    def op(self):
        """Name of the op that produced this tensor ("leaf" for leaves)."""
        return self._ctx.op if self._ctx is not None else "leaf"

    def numpy(self):
        """The underlying NumPy array (not a copy)."""
        return self.data

    def item(self):
        """The value of a one-element tensor as a Python float."""
        if self.data.size != 1:
            raise ShapeError("item: needs a one-element tensor, got shape %s (%s); reduce it first (.sum(), "
                             ".mean()) or index one element" % (tuple(self.data.shape), self.data.dtype))
        return self.data.item()

    def detach(self):
        """A new leaf tensor sharing this tensor's data (and its version), cut from the graph.

        Use it to carry a recurrent hidden state from one chunk of a sequence
        to the next without backpropagating into the previous chunk.
        """
        t = Tensor(self.data, requires_grad=False)
        t._versions = self._versions
        return t

    def clone(self):
        """A new leaf tensor with a copy of this tensor's data (not differentiable)."""
        return Tensor(self.data.copy(), requires_grad=False)

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep it)."""
        self._retain = True
        return self

    def zero_grad(self):
        """Forget the accumulated gradient."""
        self.grad = None

    def __repr__(self):
        extra = ""
        if self._ctx is not None:
            extra = ", op=%s" % self._ctx.op
        elif self.requires_grad:
            extra = ", requires_grad=True"
        body = np.array2string(self.data, precision=4, threshold=20, separator=", ")
        return "tensor(%s, dtype=%s%s)" % (body, self.data.dtype, extra)

    def __hash__(self):
        return id(self)

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError("the truth value of a Tensor with %d elements is ambiguous" % self.data.size)
        return bool(self.data)

    # ---- backward
    def backward(self, grad=None, retain_graph=False):
        """Backpropagate from this tensor, accumulating ``.grad`` on the leaves.

        Parameters
        ----------
        grad : array-like, optional
            Gradient of the final objective with respect to this tensor.  May be
            omitted only when this tensor holds a single element (a loss); it is then 1.
        retain_graph : bool
            Keep the saved intermediate values so that backward can run through this
            graph again.  Without it the graph is freed as it is used; a second
            backward through it raises ``GraphError``.
        """
        backward(self, grad, retain_graph=retain_graph)


def tensor(data, requires_grad=False, dtype=None):
    """Make a leaf Tensor from a copy of array-like ``data`` (like ``torch.tensor``).

    ``dtype`` defaults to the data's own float type (float32 or float64), or
    float64 for Python numbers, lists, and bool, integer and float16 arrays
    (promoted); complex data raises ``DTypeError``.  The tensor never shares
    memory with ``data``: editing the array afterwards does not change the
    tensor.  ``from_numpy`` shares instead.
    """
    src = data.data if isinstance(data, Tensor) else data
    arr = _as_array(src, dtype)
    if isinstance(src, np.ndarray) and np.may_share_memory(arr, src):
        arr = arr.copy()
    return Tensor(arr, requires_grad=requires_grad)


def from_numpy(array):
    """A leaf Tensor that SHARES memory with the NumPy ``array`` (like ``torch.from_numpy``).

    Editing the array edits the tensor and the other way round -- also between a
    forward and its backward, where such an edit changes the gradient (edits of
    the array itself bypass the tensor's version counter; see ``Tensor.version``).
    The array must be float32 or float64: a conversion would have to copy (use
    ``tinybptt.tensor`` for that).
    """
    if not isinstance(array, np.ndarray):
        raise TypeError("from_numpy: expected a numpy.ndarray, got %s" % type(array).__name__)
    if array.dtype not in _FLOATS:
        raise DTypeError("from_numpy: the array is %s; only float32 and float64 arrays can be shared "
                         "(tinybptt.tensor(array) makes a float64 copy)" % array.dtype)
    return Tensor(array)


# --------------------------------------------------------------------------- nodes and Functions


class Context:
    """A node of the graph: one application of a Function.

    ``forward`` and ``backward`` receive it as ``ctx``; use
    ``ctx.save_for_backward(*arrays)`` in forward and ``ctx.saved_tensors`` in
    backward.  ``ctx.needs_input_grad[k]`` says whether input ``k`` needs a
    gradient, so forward can skip saving what nobody will use.
    """

    # the engine's fields; whatever else a forward stores on ctx goes to the instance dict
    __slots__ = ("fn", "inputs", "needs_input_grad", "saved_tensors", "out_meta", "saved_versions",
                 "label", "step", "role", "id", "freed", "__dict__")

    def __init__(self, fn, inputs, needs_input_grad, modes=None):
        m = modes or thread.modes  # (Function.apply passes the thread's modes it already looked up)
        self.fn = fn
        self.inputs = inputs  # the Tensor arguments (None where the argument was not a Tensor)
        self.needs_input_grad = needs_input_grad
        self.saved_tensors = ()
        self.out_meta = ()  # (shape, dtype) of each output
        self.saved_versions = ()  # what backward checks for in-place edits (tinybptt.saved.record)
        self.label = m.label
        self.step = m.step
        self.role = m.role  # e.g. "f" for an LSTM's forget gate; None outside node_scope(role=...)
        self.id = next(_node_counter)
        self.freed = False

    @property
    def op(self):
        """The op's name, e.g. ``"matmul"`` or ``"lstm_sequence"``."""
        return self.fn.op_name()

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    def free(self):
        """Drop saved values and the input tensors: the node can no longer be backpropagated.

        Dropping ``inputs`` too lets the intermediate tensors of a graph (and their
        arrays) go as soon as backward has passed them, even while the caller still
        holds the loss -- in a training loop, the previous step's loss is usually
        alive until the next forward has finished.  A tensor that still points at
        this node (a hidden state carried into the next chunk) keeps the node, so a
        second backward into it still finds it freed and says so.
        """
        self.saved_tensors = None
        self.inputs = None
        self.saved_versions = ()
        self.freed = True
        self.__dict__.clear()

    def describe(self):
        """``sigmoid [lstm.l0, t=3, f] #42`` -- how errors and inspections name this node.

        The tags in brackets are the node's ``label``, ``step`` and ``role`` (each
        shown only when set); the number is its creation id.
        """
        tags = []
        if self.label is not None:
            tags.append(str(self.label))
        if self.step is not None:
            tags.append("t=%s" % self.step)
        if self.role is not None:
            tags.append(str(self.role))
        return "%s%s #%d" % (self.op, " [%s]" % ", ".join(tags) if tags else "", self.id)

    def __repr__(self):
        return "<node %s>" % self.describe()


class Function:
    """Base class of every differentiable op, built-in or user-defined.

    Subclass it and write two static methods::

        class Square(tinybptt.Function):
            @staticmethod
            def forward(ctx, x):            # x: numpy array
                ctx.save_for_backward(x)
                return x * x
            @staticmethod
            def backward(ctx, grad):        # grad: numpy array, d loss / d output
                (x,) = ctx.saved_tensors
                return 2 * x * grad         # one gradient per forward argument

        y = Square.apply(t)                 # t: Tensor -> y: Tensor

    ``forward`` receives the NumPy arrays of Tensor arguments (other arguments
    unchanged) and returns an array or a tuple of arrays.  ``backward`` receives
    one gradient per output and returns one gradient (or None) per positional
    argument of forward.  Keyword arguments are passed to forward only.
    """

    name = None  # the op name shown in the graph; defaults to the lower-cased class name
    #: True if ``backward`` accepts None for an output that received no gradient
    #: (instead of an array of zeros the engine would otherwise allocate for it).
    accepts_none_grads = False

    @classmethod
    def op_name(cls):
        return cls.name or cls.__name__.lower()

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run the op on Tensors (or arrays/numbers) and record it in the graph."""
        modes = thread.modes
        grad_on = modes.grad_enabled
        arrays, needs = [], []
        for a in args:
            if isinstance(a, Tensor):
                arrays.append(a.data)
                needs.append(grad_on and a.requires_grad)
            else:
                arrays.append(a)
                needs.append(False)
        requires_grad = True in needs
        ctx = Context(cls, args if requires_grad else None, tuple(needs), modes)
        raw = cls.forward(ctx, *arrays, **kwargs)
        if modes.forward_hooks:
            _run_forward_hooks(ctx, arrays, raw)
        node = ctx if requires_grad else None
        if isinstance(raw, tuple):
            outs = tuple([_output(o, k, node, args) for k, o in enumerate(raw)])
        else:
            outs = (_output(raw, 0, node, args),)
        if requires_grad:  # each output's shape and dtype: the engine makes zeros for an unused one
            ctx.out_meta = tuple([(None, None) if o is None else (o.data.shape, o.data.dtype) for o in outs])
            if ctx.saved_tensors:
                ctx.saved_versions = saved_values.record(ctx.saved_tensors, args, outs)
        return outs if isinstance(raw, tuple) else outs[0]


def _run_forward_hooks(ctx, arrays, raw):
    outs = raw if isinstance(raw, tuple) else (raw,)
    for hook in list(thread.modes.forward_hooks):
        hook(ctx, arrays, outs)


def _output(data, index, ctx, inputs):
    """Output ``index`` of the node ``ctx`` (None: no graph) as a new Tensor (None stays None).

    ``data`` is used as it is (no checks, no copy).  An output that is a view of
    an input's data (transpose, reshape, slicing) shares that input's version
    counter, so an edit of a weight ``w`` is seen by every node that saved ``w.T``.
    """
    if data is None:
        return None
    if type(data) is not np.ndarray:
        data = np.asarray(data)
    versions = None
    base = data.base
    if base is not None:
        for x in inputs:
            if isinstance(x, Tensor) and (base is x.data or base is x.data.base):
                versions = x._versions
                break
    t = Tensor.__new__(Tensor)
    t.data = data
    t._versions = saved_values.VersionCounter() if versions is None else versions
    t.grad = None
    t.requires_grad = ctx is not None
    t._ctx = ctx
    t._index = index
    t._retain = False
    return t


# The walk lives in backprop.py, which imports Tensor from here: importing it at the end, once Tensor
# exists, is what lets each module use the other.  ``backward`` is what Tensor.backward calls;
# ``topological_order`` is re-exported because ``tb.autograd.topological_order`` is how code outside
# the package has always reached it.
from .backprop import backward, topological_order  # noqa: E402,F401

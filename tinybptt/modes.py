"""Per-thread modes of the engine: whether ops build the graph, how new nodes are tagged, hooks.

``no_grad()`` / ``enable_grad()`` switch graph building off and on;
``node_scope(label=, step=, role=)`` tags the nodes created inside (so an
inspection of an unrolled graph can say "the forget gate of layer 0 at t=3");
``backward_hook`` / ``forward_hook`` let ``tinybptt.inspect`` watch every node.
All of them are per thread: two threads training two models do not disturb each
other.
"""
import contextlib
import threading

class Modes:
    """One thread's modes: a plain object with slots, so every op pays one thread-local
    lookup (``thread.modes``, about 70 ns) and then cheap slot reads, instead of a
    thread-local lookup per mode."""

    __slots__ = ("grad_enabled", "label", "step", "role", "backward_hooks", "forward_hooks")

    def __init__(self):
        self.grad_enabled = True
        self.label = None  # tags given to nodes created inside node_scope()
        self.step = None
        self.role = None
        self.backward_hooks = []  # callables (ctx, grads_out) run as each node is backpropagated
        self.forward_hooks = []  # callables (ctx, inputs, outputs) run after each op's forward (empty: no cost)


class _ThreadState(threading.local):
    """Per-thread modes, so two threads training two models do not disturb each other."""

    def __init__(self):
        self.modes = Modes()


#: ``thread.modes`` is the calling thread's Modes (the engine reads it once per op).
thread = _ThreadState()


class _Scope(contextlib.ContextDecorator):
    """Base of the small context managers below: a class, not a generator, because
    the "ops" mode of a recurrent layer enters one per time step (a generator-based
    context manager costs about four times as much).  Each entry pushes the state it
    replaces, so one instance may be nested or reused (also as a decorator)."""

    __slots__ = ("_saved",)

    def __exit__(self, *exc):
        self._restore(self._saved.pop())
        return False

    def _recreate_cm(self):  # ContextDecorator: reuse this instance for every call
        return self


class _GradMode(_Scope):
    """Sets whether ops build the graph (``_ENABLED``) for the duration of the block."""

    __slots__ = ()
    _ENABLED = None

    def __init__(self):
        self._saved = []

    def __enter__(self):
        st = thread.modes
        self._saved.append(st.grad_enabled)
        st.grad_enabled = self._ENABLED

    @staticmethod
    def _restore(prev):
        thread.modes.grad_enabled = prev


class no_grad(_GradMode):
    """Inside this block ops build no graph: results do not require grad.

    Use it for evaluation and for optimiser updates::

        with tinybptt.no_grad():
            pred = model(x)
    """

    __slots__ = ()
    _ENABLED = False


class enable_grad(_GradMode):
    """Inside this block ops build the graph again, even within an enclosing ``no_grad()``.

    ``tinybptt.gradcheck`` uses it so that a check run under ``no_grad()`` still
    has a graph to backpropagate through.
    """

    __slots__ = ()
    _ENABLED = True


def is_grad_enabled():
    """True unless inside ``no_grad()``."""
    return thread.modes.grad_enabled


class node_scope(_Scope):
    """Tag every node created inside with ``label``, time ``step`` and/or ``role``.

    The recurrent layers wrap each time step in ``node_scope(label="lstm.l0", step=t)``
    so that an inspection of the unrolled graph can say which step a node belongs to,
    and each gate or state in ``node_scope(role="f")`` (LSTM ``i f g o c h``, GRU
    ``r z n h``, ...) so that it can say which of three ``sigmoid`` nodes is the
    forget gate.  An argument left as None keeps the value of the enclosing scope, so
    scopes nest: ``with node_scope(label="lstm.l0", step=3): with node_scope(role="f"):``
    tags nodes ``[lstm.l0, t=3, f]``.
    """

    __slots__ = ("label", "step", "role")

    def __init__(self, label=None, step=None, role=None):
        self.label, self.step, self.role, self._saved = label, step, role, []

    def __enter__(self):
        st = thread.modes
        self._saved.append((st.label, st.step, st.role))
        if self.label is not None:
            st.label = self.label
        if self.step is not None:
            st.step = self.step
        if self.role is not None:
            st.role = self.role

    @staticmethod
    def _restore(prev):
        st = thread.modes
        st.label, st.step, st.role = prev


@contextlib.contextmanager
def _installed(hooks, fn):
    """``fn`` in the list ``hooks`` for the duration of the block."""
    hooks.append(fn)
    try:
        yield
    finally:
        hooks.remove(fn)


def backward_hook(fn):
    """Call ``fn(ctx, grads_out)`` for every node as the backward pass reaches it.

    ``grads_out`` is the tuple of gradients of the node's outputs (NumPy arrays).
    This is how ``tinybptt.inspect`` sees the gradient that reached each node.
    Hooks are per thread, like ``no_grad``: they see backward passes run by the
    thread that installed them.
    """
    return _installed(thread.modes.backward_hooks, fn)


def forward_hook(fn):
    """Call ``fn(ctx, inputs, outputs)`` after every op's forward inside this block.

    ``inputs`` are the forward's arguments (NumPy arrays where the argument was a
    Tensor), ``outputs`` the tuple of arrays it returned.  ``tinybptt.inspect``'s
    anomaly mode uses it to name the first node that produced NaN or Inf.  Hooks
    are per thread: they see the ops of the thread that installed them.
    """
    return _installed(thread.modes.forward_hooks, fn)

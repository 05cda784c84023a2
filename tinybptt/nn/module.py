"""``Module`` and ``Parameter``: the containers every layer is built from.

A Module owns Parameters (leaf tensors with ``requires_grad=True``) and other
Modules, registered simply by assigning them as attributes::

    class Tagger(Module):
        def __init__(self):
            super().__init__()
            self.rnn = LSTM(8, 16)        # a submodule: its parameters are named "rnn.weight_ih_l0", ...
            self.head = Linear(16, 3)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out)

Parameter names, ``state_dict()`` keys and shapes are PyTorch's, so weights can
be moved between the two with ``{k: v.detach().numpy() for k, v in
torch_model.state_dict().items()}``.
"""
import collections

import numpy as np

from ..autograd import Tensor, _as_array
from ..errors import DTypeError, ShapeError


class Parameter(Tensor):
    """A leaf Tensor that a Module trains: ``requires_grad`` is always True.

    ``Parameter(np.zeros((3, 4)))`` -- float64 unless the data is float32 or
    ``dtype=`` says otherwise.
    """

    __slots__ = ()

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)

    def __repr__(self):
        return "Parameter(shape=%s, dtype=%s)" % (tuple(self.shape), self.dtype)


class IncompatibleKeys(collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict(..., strict=False)`` could not match."""


class Module:
    """Base class of layers and models.

    Subclasses set Parameters and sub-Modules as attributes in ``__init__``
    (after calling ``super().__init__()``) and define ``forward``; calling the
    module calls ``forward``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", collections.OrderedDict())
        object.__setattr__(self, "_modules", collections.OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        d = self.__dict__
        if name in d and not isinstance(value, (Parameter, Module)):  # a plain attribute, set again
            object.__setattr__(self, name, value)
            return
        if "_parameters" not in d:
            raise AttributeError(
                "%s: call super().__init__() before assigning attributes in __init__" % type(self).__name__
            )
        params, modules = d["_parameters"], d["_modules"]
        was_param = name in params
        if (was_param and value is not None and not isinstance(value, Parameter)) or \
                (name in modules and value is not None and not isinstance(value, Module)):
            # a plain attribute would hide the parameter from parameters(), the optimiser and state_dict
            what = "parameter" if was_param else "sub-module"
            raise TypeError("%s: cannot assign a %s to the %s %r; assign a %s or None%s"
                            % (type(self).__name__, type(value).__name__, what, name,
                               "Parameter" if was_param else "Module",
                               " (to change its values, set .data)" if was_param else ""))
        params.pop(name, None)
        modules.pop(name, None)
        if isinstance(value, Parameter):
            self.__dict__.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            self.__dict__.pop(name, None)
            modules[name] = value
        elif value is None and was_param:
            params[name] = None  # e.g. bias=False keeps the slot but no parameter
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):  # only called when normal lookup fails
        d = self.__dict__
        if "_parameters" in d and name in d["_parameters"]:
            return d["_parameters"][name]
        if "_modules" in d and name in d["_modules"]:
            return d["_modules"][name]
        raise AttributeError("%r object has no attribute %r" % (type(self).__name__, name))

    def __delattr__(self, name):
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._modules:
            del self._modules[name]
        else:
            object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Register ``param`` (a Parameter, or None for an absent optional one) under ``name``."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError("register_parameter(%r): expected a Parameter or None, got %s" % (name, type(param).__name__))
        if not isinstance(name, str) or not name or "." in name:  # "." joins the names in state_dict keys
            raise KeyError("register_parameter(%r): the name must be a non-empty string without '.'" % (name,))
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    # ------------------------------------------------------------------ traversal
    def children(self):
        """The direct sub-Modules."""
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        """``(dotted_name, module)`` for this module and every descendant ("" for self)."""
        stack = [(prefix, self)]
        while stack:
            name, mod = stack.pop(0)
            yield name, mod
            for child_name, child in mod._modules.items():
                stack.append(((name + "." if name else "") + child_name, child))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix=""):
        """``(dotted_name, Parameter)`` pairs, e.g. ``("rnn.weight_ih_l0", p)``, in registration order."""
        seen = set()
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (mod_name + "." if mod_name else "") + name, p

    def parameters(self):
        """Every Parameter of this module and its descendants (each once)."""
        return [p for _, p in self.named_parameters()]

    def num_parameters(self):
        """Total number of scalar parameters."""
        return int(sum(p.size for p in self.parameters()))

    def zero_grad(self):
        """Forget the gradients accumulated on every parameter."""
        # A plain recursion over the submodules rather than ``self.modules()``: it runs once
        # per training step, and the generators cost more than the loop for a small model.
        # (A module reachable twice is cleared twice: harmless.)
        for p in self._parameters.values():
            if p is not None:
                p.grad = None
        for m in self._modules.values():
            m.zero_grad()

    # ------------------------------------------------------------------ modes
    def train(self, mode=True):
        """Set training mode (recursively); returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        """Set evaluation mode (recursively); returns self."""
        return self.train(False)

    def to(self, dtype):
        """Convert every parameter to ``dtype`` (float32 or float64) in place; returns self."""
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise DTypeError("%s.to: dtype must be float32 or float64, got %s" % (type(self).__name__, dtype))
        for m in self.modules():
            for name, p in m._parameters.items():
                if p is not None and p.dtype != dtype:
                    p.data = _as_array(p.data, dtype)
                    p.grad = None
            if hasattr(m, "dtype"):
                object.__setattr__(m, "dtype", dtype)
        return self

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError("%s does not define forward()" % type(self).__name__)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """``{dotted_name: numpy array copy}`` of every parameter (PyTorch's key names)."""
        return collections.OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy arrays, Tensors, or anything ``np.asarray`` takes) into the parameters.

        Values are cast to each parameter's dtype.  A shape mismatch is always a
        ``ShapeError``; with ``strict=True`` (the default) missing or unexpected
        keys are a ``KeyError`` listing them.  Returns ``(missing_keys, unexpected_keys)``.
        """
        own = collections.OrderedDict(self.named_parameters())
        given = {}
        for k, v in state_dict.items():
            if hasattr(v, "detach") and hasattr(v, "numpy") and not isinstance(v, Tensor):  # a torch tensor
                v = v.detach().cpu().numpy()
            given[k] = v.data if isinstance(v, Tensor) else v
        missing = [k for k in own if k not in given]
        unexpected = [k for k in given if k not in own]
        who = type(self).__name__
        if strict and (missing or unexpected):
            raise KeyError(
                "%s.load_state_dict: %s%s%s. Expected keys: %s (pass strict=False to load what matches)"
                % (who,
                   "missing keys %s" % missing if missing else "",
                   "; " if missing and unexpected else "",
                   "unexpected keys %s" % unexpected if unexpected else "",
                   list(own))
            )
        bad = []
        new_values = {}
        for k, p in own.items():
            if k not in given:
                continue
            arr = np.asarray(given[k])
            if arr.dtype.kind not in "biuf":
                raise DTypeError("%s.load_state_dict: %r has dtype %s; expected a numeric array" % (who, k, arr.dtype))
            if arr.shape != p.shape:
                bad.append("%r: checkpoint %s vs parameter %s" % (k, arr.shape, tuple(p.shape)))
                continue
            new_values[k] = np.array(arr, dtype=p.dtype, copy=True)
        if bad:
            raise ShapeError("%s.load_state_dict: shape mismatch for %s" % (who, "; ".join(bad)))
        for k, v in new_values.items():
            own[k].data = v
            own[k].grad = None
        return IncompatibleKeys(missing, unexpected)

    def save(self, path):
        """Write ``state_dict()`` to a NumPy ``.npz`` file (see ``tinybptt.nn.save``)."""
        save(self, path)

    def load(self, path, strict=True):
        """Load parameters from a ``.npz`` file written by ``save`` (or ``np.savez`` of a torch state_dict)."""
        return load(self, path, strict=strict)

    # ------------------------------------------------------------------ display
    def extra_repr(self):
        """The text inside the parentheses of this module's repr."""
        return ""

    def __repr__(self):
        lines = []
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append("  (%s): %s" % (name, child_repr))
        head = "%s(%s" % (type(self).__name__, self.extra_repr())
        if not lines:
            return head + ")"
        return head + "\n" + "\n".join(lines) + "\n)"


def save(module, path):
    """Save ``module.state_dict()`` to ``path`` (a ``.npz`` file; keys are the parameter names)."""
    np.savez(path, **module.state_dict())


def load(module, path, strict=True):
    """Load a ``.npz`` file written by ``save`` into ``module``; returns (missing, unexpected) keys."""
    with np.load(path) as f:
        d = {k: f[k] for k in f.files}
    return module.load_state_dict(d, strict=strict)

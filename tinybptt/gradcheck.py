"""Gradient checking: compare a backward pass with finite differences.

``gradcheck(fn, inputs)`` answers one question: does the gradient that
``backward()`` computes agree with the slope of the function itself?

How it works.  ``fn(*inputs)`` returns one or more Tensors ``out_k``.  They are
reduced to one scalar with fixed random weights ``R_k`` (seeded)::

    S = sum_k sum(R_k * out_k)

Projecting onto random weights checks every output element at once while
needing a single backward pass (no Jacobian is ever formed).  The analytic
gradient of ``S`` comes from one ``backward()``; the numeric gradient from
central differences of the same ``S``, one input element at a time::

    dS/dx_i  ~  (S(x + h e_i) - S(x - h e_i)) / (2 h)

An element fails when ``|analytic - numeric| > atol + rtol * |numeric|``.
The result is a :class:`GradcheckReport` that names the worst element (input
name, index, time step, analytic and numeric values, errors, tolerance) rather
than dumping Jacobians.

Default step and tolerances, by the dtype of each checked input:

=========  =======  =======  =======
dtype      eps      atol     rtol
=========  =======  =======  =======
float64    1e-6     1e-5     1e-3
float32    1e-3     1e-2     1e-2
=========  =======  =======  =======

float32 is checked too, but only coarsely; ``gradcheck`` warns
(:class:`GradcheckWarning`) for every checked input that is not float64.

Kinks.  At a point where the function is not differentiable (``relu`` at 0,
``abs`` at 0, ``max`` at a tie) the central difference is the average of two
different one-sided slopes and cannot match any analytic choice.  For each
element that fails, the one-sided differences ``(S(x+h) - S(x)) / h`` and
``(S(x) - S(x-h)) / h`` are compared: if they disagree substantially
(by more than ``max(2 * tol, 0.1 * max(|fwd|, |bwd|))``) and the analytic
value lies between them (within ``tol``; it is a valid one-sided derivative),
the element is reported as a *kink*, listed in the report and not counted as
a failure.

Time steps.  Name an input ``"x[T,B,I]"`` (letters for its axes, one per
dimension) or pass ``time_axis=`` and the report gives the time step of the
worst element as well as its index -- in backpropagation through time, "wrong
at step 0 only" and "wrong everywhere" point at different bugs.
"""
import contextlib
import math
import re
import warnings

import numpy as np

from . import autograd
from .autograd import Function, Tensor, no_grad, topological_order
from .errors import TinyBPTTError

__all__ = ["gradcheck", "GradcheckError", "GradcheckWarning", "GradcheckReport", "InputReport", "Kink",
           "DEFAULT_TOLERANCES"]

#: Default ``eps`` (finite-difference step), ``atol`` and ``rtol`` per input dtype.
DEFAULT_TOLERANCES = {
    np.dtype(np.float64): {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3},
    np.dtype(np.float32): {"eps": 1e-3, "atol": 1e-2, "rtol": 1e-2},
}

_N_PROJECTIONS = 2  # random directions per input in fast mode


class GradcheckError(TinyBPTTError, AssertionError):
    """The analytic gradient disagrees with finite differences.

    ``err.report`` is the full :class:`GradcheckReport`.  It subclasses
    ``AssertionError`` so that a failing check inside a test reads as a test
    failure.
    """

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


class GradcheckWarning(UserWarning):
    """A gradient check that can only be coarse (an input that is not float64)."""


# --------------------------------------------------------------------------- report objects


class Kink:
    """An element where the function is not differentiable (one-sided slopes disagree)."""

    __slots__ = ("index", "timestep", "analytic", "numeric", "forward", "backward")

    def __init__(self, index, timestep, analytic, numeric, forward, backward):
        self.index = index
        self.timestep = timestep
        self.analytic = analytic
        self.numeric = numeric  # the central difference
        self.forward = forward  # (S(x+h) - S(x)) / h
        self.backward = backward  # (S(x) - S(x-h)) / h

    def __repr__(self):
        t = "" if self.timestep is None else " t=%d" % self.timestep
        return "<kink at %s%s: one-sided slopes %s / %s, analytic %s>" % (
            self.index, t, _fmt(self.forward), _fmt(self.backward), _fmt(self.analytic))


class InputReport:
    """The result of checking one input.

    Attributes
    ----------
    name, position : str, int
        The input's name (``names=`` or ``"input <position>"``) and its position in ``inputs``.
    shape, dtype, size :
        Of the input.
    mode : str
        ``"full"`` (every element), ``"fast"`` (random projections only) or
        ``"fast+full"`` (projections failed, so every element was then checked).
    eps, atol, rtol : float
        The step and tolerances used for this input.
    n_failed : int
        Elements (or, in ``"fast"`` mode, projections) outside tolerance, kinks excluded.
    kinks : list of Kink
        Non-differentiable points, not counted as failures.
    max_abs_err, max_rel_err : float
        Largest ``|analytic - numeric|`` and ``|analytic - numeric| / max(|numeric|, atol)``
        over the compared elements (kinks excluded).
    worst_index, worst_timestep : tuple or None, int or None
        The element whose error is largest relative to its tolerance (``None`` in
        ``"fast"`` mode, where no single element was looked at).
    analytic, numeric, abs_err, rel_err, tolerance : float
        At that worst element (in ``"fast"`` mode: of the worst projection).
    """

    def __init__(self, name, position, shape, dtype, time_axis, eps, atol, rtol):
        self.name = name
        self.position = position
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.time_axis = time_axis
        self.eps, self.atol, self.rtol = eps, atol, rtol
        self.mode = "full"
        self.n_compared = self.size
        self.n_failed = 0
        self.kinks = []
        self.max_abs_err = 0.0
        self.max_rel_err = 0.0
        self.worst_index = None
        self.worst_timestep = None
        self.analytic = self.numeric = self.abs_err = self.rel_err = self.tolerance = None
        self.excess = 0.0  # abs_err / tolerance at the worst element (>1 means failed)

    @property
    def ok(self):
        return self.n_failed == 0

    def where(self):
        """``"x[T,B,I][2, 0, 1] (t=2)"`` -- the worst element, for messages."""
        if self.worst_index is None:
            return "%s (random projection)" % self.name
        s = "%s[%s]" % (self.name, ", ".join(str(i) for i in self.worst_index))
        if self.worst_timestep is not None:
            s += " (timestep t=%d)" % self.worst_timestep
        return s

    def __repr__(self):
        return "<InputReport %s %s %s: %s>" % (
            self.name, self.shape, self.mode, "ok" if self.ok else "%d failed" % self.n_failed)


class GradcheckReport:
    """What ``gradcheck`` found, input by input.

    ``report.ok`` is the verdict (``bool(report)`` too); ``report.inputs`` holds one
    :class:`InputReport` per checked input; ``str(report)`` is a readable table.
    The worst element over all inputs is available directly as ``report.worst``
    (its InputReport) and ``report.worst_input``, ``worst_index``,
    ``worst_timestep``, ``analytic``, ``numeric``, ``abs_err``, ``rel_err``,
    ``tolerance``.  When the check passed these describe the element that came
    closest to failing.
    """

    def __init__(self, inputs, fast, seed):
        self.inputs = inputs
        self.fast = fast
        self.seed = seed
        self.worst = None
        if inputs:
            failing = [r for r in inputs if not r.ok]
            pool = failing or [r for r in inputs if r.analytic is not None]
            if pool:
                self.worst = max(pool, key=lambda r: _nan_inf(r.excess))

    @property
    def ok(self):
        return all(r.ok for r in self.inputs)

    def __bool__(self):
        return self.ok

    @property
    def n_failed(self):
        return sum(r.n_failed for r in self.inputs)

    @property
    def kinks(self):
        """``[(input name, Kink), ...]`` over all inputs."""
        return [(r.name, k) for r in self.inputs for k in r.kinks]

    def __getitem__(self, key):
        """The InputReport of input ``key`` (its name or its position in ``inputs``)."""
        for r in self.inputs:
            if key == r.name or key == r.position:
                return r
        raise KeyError("gradcheck report: no checked input %r (have %s)" % (key, [r.name for r in self.inputs]))

    def _worst(self, attr):
        return None if self.worst is None else getattr(self.worst, attr)

    worst_input = property(lambda self: self._worst("name"))
    worst_index = property(lambda self: self._worst("worst_index"))
    worst_timestep = property(lambda self: self._worst("worst_timestep"))
    analytic = property(lambda self: self._worst("analytic"))
    numeric = property(lambda self: self._worst("numeric"))
    abs_err = property(lambda self: self._worst("abs_err"))
    rel_err = property(lambda self: self._worst("rel_err"))
    tolerance = property(lambda self: self._worst("tolerance"))

    # ---- text
    def message(self):
        """The GradcheckError message: the worst failing element, never a Jacobian."""
        w = self.worst
        if self.ok or w is None:
            return "gradcheck passed"
        lines = [
            "gradcheck failed for input '%s' (shape %s, %s): %d of %d elements failed."
            % (w.name, w.shape, w.dtype, w.n_failed, w.n_compared),
            "  worst element: %s, index %s%s" % (
                w.name, w.worst_index,
                "" if w.worst_timestep is None else ", timestep t=%d" % w.worst_timestep),
            "    analytic:  %s   (from backward)" % _fmt(w.analytic),
            "    numeric:   %s   (central difference, eps=%g)" % (_fmt(w.numeric), w.eps),
            "    abs error: %s" % _fmt(w.abs_err),
            "    rel error: %s   (abs error / max(|numeric|, atol))" % _fmt(w.rel_err),
            "    tolerance: %s   (atol %g + rtol %g * |numeric|)" % (_fmt(w.tolerance), w.atol, w.rtol),
        ]
        others = [r for r in self.inputs if not r.ok and r is not w]
        if others:
            lines.append("  also failed: " + "; ".join(
                "'%s' %d of %d (worst %s)" % (r.name, r.n_failed, r.n_compared, r.where()) for r in others))
        n_kinks = len(self.kinks)
        if n_kinks:
            lines.append("  %d kink(s) (non-differentiable points) were seen and not counted as failures." % n_kinks)
        if w.dtype != np.float64:
            lines.append("  note: this input is %s; finite differences are coarse there -- check in float64." % w.dtype)
        lines.append("  If the op is a Function you wrote, its backward is wrong for this input "
                     "(check the formula, transposes and un-broadcasting); str(err.report) has every input.")
        return "\n".join(lines)

    def __str__(self):
        total = sum(r.size for r in self.inputs)
        head = "gradcheck %s: %d input(s), %d element(s)%s, seed %d" % (
            "OK" if self.ok else "FAILED (%d failed)" % self.n_failed, len(self.inputs), total,
            ", fast mode" if self.fast else "", self.seed)
        rows = [("input", "shape", "dtype", "mode", "failed", "kinks", "max abs err", "max rel err", "worst")]
        for r in self.inputs:
            failed = "%d of %d%s" % (r.n_failed, r.n_compared, " projections" if r.mode == "fast" else "")
            rows.append((r.name, str(r.shape), str(r.dtype), r.mode, failed,
                         str(len(r.kinks)), "%.3g" % r.max_abs_err, "%.3g" % r.max_rel_err,
                         "-" if r.worst_index is None else r.where()[len(r.name):]))
        widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
        lines = [head] + ["  " + "  ".join(cell.ljust(wd) for cell, wd in zip(row, widths)).rstrip() for row in rows]
        if not self.ok:
            lines.append(self.message())
        for name, k in self.kinks:
            lines.append(
                "  kink in '%s' at %s%s: one-sided slopes %s (forward) and %s (backward) differ; analytic %s "
                "lies between them. The function is not differentiable there; not counted as a failure."
                % (name, k.index, "" if k.timestep is None else " (t=%d)" % k.timestep,
                   _fmt(k.forward), _fmt(k.backward), _fmt(k.analytic)))
        return "\n".join(lines)

    def __repr__(self):
        return "<GradcheckReport %s>" % ("ok" if self.ok else "failed: %d" % self.n_failed)


def _fmt(v):
    return "None" if v is None else "%.6g" % v


def _nan_inf(v):
    return math.inf if v is None or math.isnan(v) else v


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _grad_mode():
    """Enable graph building even if the caller is inside ``no_grad()``."""
    state = autograd._state.m
    prev = state.grad_enabled
    state.grad_enabled = True
    try:
        yield
    finally:
        state.grad_enabled = prev


class _Probe(Function):
    """S = sum_k sum(R_k * out_k) in float64; backward hands R_k to each output."""

    name = "gradcheck_probe"

    @staticmethod
    def forward(ctx, *outs, weights=()):
        ctx.weights = weights
        return np.asarray(math.fsum(float(np.sum(w.astype(np.float64) * o.astype(np.float64)))
                                    for w, o in zip(weights, outs)))

    @staticmethod
    def backward(ctx, g):
        return tuple(np.asarray(g * w) for w in ctx.weights)


def _outputs(res, what="fn"):
    """Normalise fn's result to a list of Tensors (None entries allowed)."""
    outs = list(res) if isinstance(res, (tuple, list)) else [res]
    for k, o in enumerate(outs):
        if o is not None and not isinstance(o, Tensor):
            raise TypeError("gradcheck: %s must return a Tensor or a tuple of Tensors; output %d is %s"
                            % (what, k, type(o).__name__))
    return outs


_NAME_AXES = re.compile(r"^\s*(.*?)\s*\[([^\]]*)\]\s*$")


def _axis_letters(name, ndim):
    """Letters of a name like ``"x[T,B,I]"`` (or ``"x[TBI]"``), or None."""
    m = _NAME_AXES.match(name)
    if not m:
        return None
    body = m.group(2).strip()
    letters = [p.strip() for p in body.split(",")] if "," in body else list(body.replace(" ", ""))
    if len(letters) != ndim:
        raise ValueError("gradcheck: input name %r gives %d axis letters but the input has %d dimensions"
                         % (name, len(letters), ndim))
    return letters


def _specs(inputs, names, time_axis):
    """(display name, time axis) per input."""
    n = len(inputs)
    if names is None:
        names = ["input %d" % k for k in range(n)]
    else:
        names = list(names)
        if len(names) != n:
            raise ValueError("gradcheck: got %d names for %d inputs" % (len(names), n))
        names = ["input %d" % k if nm is None else str(nm) for k, nm in enumerate(names)]
    if time_axis is None or isinstance(time_axis, (int, np.integer)):
        axes = [time_axis] * n
    else:
        axes = list(time_axis)
        if len(axes) != n:
            raise ValueError("gradcheck: got %d time_axis entries for %d inputs" % (len(axes), n))
    specs = []
    for k, (t, nm, ax) in enumerate(zip(inputs, names, axes)):
        letters = _axis_letters(nm, t.ndim)
        if ax is None and letters is not None and "T" in letters:
            ax = letters.index("T")
        if ax is not None:
            if not -t.ndim <= ax < t.ndim:
                if isinstance(time_axis, (int, np.integer)):
                    ax = None  # a global time_axis applies only to inputs that have that axis
                else:
                    raise ValueError("gradcheck: time_axis %d is out of range for input '%s' of shape %s"
                                     % (ax, nm, t.shape))
            else:
                ax = int(ax) % t.ndim
        specs.append((nm, ax))
    return specs


def _step(x_orig, eps):
    """A step no smaller than a few units in the last place of x (so x + h != x)."""
    return max(eps, 16.0 * float(np.abs(np.spacing(x_orig))))


# --------------------------------------------------------------------------- the check


def gradcheck(fn, inputs, *, eps=None, atol=None, rtol=None, fast=False, seed=0,
              raise_exception=True, names=None, time_axis=None):
    """Check the gradients ``backward()`` computes for ``fn`` against finite differences.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs)`` returns a Tensor or a tuple of Tensors.  It is called many
        times (``2 * size + 1`` per checked input in full mode) and must be
        deterministic.  It may use tensors other than ``inputs`` (e.g. a layer's
        parameters); only ``inputs`` are checked.  To check parameters, pass them in
        ``inputs`` too (``fn`` may ignore its extra arguments).
    inputs : list of Tensor
        Inputs with ``requires_grad=True`` are checked (they must be leaves); the
        others are passed through.  Use float64: other dtypes give a
        ``GradcheckWarning`` and a coarse check.
    eps, atol, rtol : float, optional
        Finite-difference step and tolerances; default by dtype (float64: 1e-6,
        1e-5, 1e-3; float32: 1e-3, 1e-2, 1e-2).  An element fails when
        ``|analytic - numeric| > atol + rtol * |numeric|``.
    fast : bool
        Compare random projections instead of every element: for each input and
        two random unit directions ``v``, ``<grad, v>`` against
        ``(S(x + eps v) - S(x - eps v)) / (2 eps)``.  Four calls of ``fn`` per input
        whatever its size.  If a projection fails, that input is re-checked in
        full, so the report still names the worst element.
    seed : int
        Seeds the output weights ``R_k`` and the fast-mode directions.
    raise_exception : bool
        Raise ``GradcheckError`` on failure (default), else just return the report.
    names : list of str, optional
        One name per input, used in messages (default ``"input 0"``, ...).  A name
        with axis letters, ``"x[T,B,I]"``, marks axis ``T`` as time.
    time_axis : int or list, optional
        The time axis of every input that has it (an int) or of each input (a
        list with None for inputs without one); overrides letters in names.

    Returns
    -------
    GradcheckReport
        Truthy when every checked input passed.  The inputs' data and ``.grad``
        are exactly as they were before the call.

    Example
    -------
    >>> x = tinybptt.tensor(np.random.randn(5, 2, 3), requires_grad=True)
    >>> W = tinybptt.tensor(np.random.randn(3, 4), requires_grad=True)
    >>> report = tinybptt.gradcheck(lambda x, W: (x @ W).tanh(), [x, W], names=["x[T,B,I]", "W"])
    >>> print(report)
    """
    if isinstance(inputs, Tensor):
        inputs = [inputs]
    inputs = list(inputs)
    for k, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError("gradcheck: inputs must be Tensors; input %d is %s (wrap it with tinybptt.tensor)"
                            % (k, type(t).__name__))
    specs = _specs(inputs, names, time_axis)
    checked = [k for k, t in enumerate(inputs) if t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check. "
                         "Create the inputs with tinybptt.tensor(..., requires_grad=True).")
    for k in checked:
        t = inputs[k]
        if not t.is_leaf:
            raise ValueError(
                "gradcheck: input '%s' is not a leaf (it was produced by op %s); pass leaf tensors, "
                "e.g. tinybptt.tensor(x.data, requires_grad=True)" % (specs[k][0], t.op))
        if t.dtype != np.float64:
            warnings.warn(
                "gradcheck: input '%s' is %s; finite differences in %s are coarse (eps=%g, atol=%g, rtol=%g). "
                "Check gradients in float64." % (specs[k][0], t.dtype, t.dtype,
                                                 *[_setting(v, t.dtype, key) for v, key in
                                                   ((eps, "eps"), (atol, "atol"), (rtol, "rtol"))]),
                GradcheckWarning, stacklevel=2)

    for k, t in enumerate(inputs):
        # finite differences through NaN or Inf are NaN: say so, instead of a report of
        # failures against a NaN tolerance
        if t.data.dtype.kind in "fc" and not np.all(np.isfinite(t.data)):
            bad = ~np.isfinite(t.data)
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                "gradcheck: input '%s' (shape %s, %s) holds %d non-finite value(s), the first %r at index %s; "
                "finite differences need finite inputs. Check the data (or the op that made it) first."
                % (specs[k][0], t.shape, t.dtype, int(bad.sum()), t.data[first].item(), first))

    rng = np.random.default_rng(seed)
    saved = {}  # id -> (tensor, data, grad): restored exactly at the end
    for t in inputs:
        if id(t) not in saved:
            saved[id(t)] = (t, t.data, t.grad)
    try:
        # Work on private copies: the caller's arrays are never written.
        for k in checked:
            t, data, _ = saved[id(inputs[k])]
            if t.data is data:
                t.data = np.array(data, dtype=data.dtype, order="C", copy=True)
        grads, weights = _analytic(fn, inputs, checked, rng)

        def S():
            with no_grad():
                outs = _outputs(fn(*inputs))
            if len(outs) != len(weights):
                raise ValueError("gradcheck: fn returned %d outputs, then %d" % (len(weights), len(outs)))
            total = []
            for o, w in zip(outs, weights):
                if o is None or w is None:
                    continue
                if o.shape != w.shape:
                    raise ValueError("gradcheck: an output of fn changed shape from %s to %s between calls"
                                     % (w.shape, o.shape))
                total.append(float(np.sum(w.astype(np.float64) * o.data.astype(np.float64))))
            return math.fsum(total)

        reports = []
        for k in checked:
            t = inputs[k]
            name, tax = specs[k]
            rep = InputReport(name, k, t.shape, t.dtype, tax, _setting(eps, t.dtype, "eps"),
                              _setting(atol, t.dtype, "atol"), _setting(rtol, t.dtype, "rtol"))
            g = grads[k]
            if fast and t.size > 0:
                _check_fast(rep, t, g, S, rng)
                if not rep.ok:
                    rep.mode = "fast+full"
                    _check_full(rep, t, g, S)
            else:
                _check_full(rep, t, g, S)
            reports.append(rep)
    finally:
        for t, data, grad in saved.values():
            t.data = data
            t.grad = grad

    report = GradcheckReport(reports, fast, seed)
    if raise_exception and not report.ok:
        raise GradcheckError(report.message(), report)
    return report


def _setting(value, dtype, key):
    if value is not None:
        return float(value)
    return DEFAULT_TOLERANCES.get(np.dtype(dtype), DEFAULT_TOLERANCES[np.dtype(np.float32)])[key]


def _analytic(fn, inputs, checked, rng):
    """One forward + one backward of S; returns ({k: grad as float64}, weights)."""
    with _grad_mode():
        outs = _outputs(fn(*inputs))
        weights = []
        live, live_w = [], []
        for o in outs:
            if o is None:
                weights.append(None)
                continue
            w = rng.standard_normal(o.shape)
            if o.dtype == np.float32:
                w = w.astype(np.float32)
            weights.append(w)
            if o.requires_grad:
                live.append(o)
                live_w.append(w)
        grads = {}
        if live:
            s = _Probe.apply(*live, weights=tuple(live_w))
            # Every leaf that backward will touch: keep the grads of leaves the caller did not pass.
            leaves = {}
            for node in topological_order(s):
                for t in node.inputs or ():
                    if isinstance(t, Tensor) and t._ctx is None and t.requires_grad:
                        leaves[id(t)] = t
            before = {i: t.grad for i, t in leaves.items()}
            for t in leaves.values():
                t.grad = None
            try:
                s.backward()
                for k in checked:
                    t = inputs[k]
                    grads[k] = None if t.grad is None else np.array(t.grad, dtype=np.float64)
            finally:
                for i, t in leaves.items():
                    t.grad = before[i]
    for k in checked:
        if grads.get(k) is None:  # the output does not depend on this input
            grads[k] = np.zeros(inputs[k].shape, dtype=np.float64)
    return grads, weights


def _check_full(rep, t, g, S):
    """Central differences for every element of t; fills rep."""
    x = t.data  # our private C-contiguous copy
    flat = x.reshape(-1)
    n = flat.size
    rep.n_compared = n
    rep.kinks = []
    if n == 0:
        rep.n_failed = 0
        rep.analytic = rep.numeric = rep.abs_err = rep.rel_err = rep.tolerance = None
        return
    num = np.empty(n)
    fwd = np.empty(n)
    bwd = np.empty(n)
    S0 = S()
    for i in range(n):
        orig = flat[i]
        h = _step(orig, rep.eps)
        flat[i] = orig + h
        hp = float(flat[i]) - float(orig)  # the step actually taken (rounding to dtype)
        sp = S()
        flat[i] = orig - h
        hm = float(orig) - float(flat[i])
        sm = S()
        flat[i] = orig
        num[i] = (sp - sm) / (hp + hm)
        fwd[i] = (sp - S0) / hp
        bwd[i] = (S0 - sm) / hm
    a = g.reshape(-1)
    with np.errstate(invalid="ignore", over="ignore"):
        abs_err = np.abs(a - num)
        tol = rep.atol + rep.rtol * np.abs(num)
        fail = ~(abs_err <= tol)  # NaN fails
        spread = np.abs(fwd - bwd)
        kinky = spread > np.maximum(2 * tol, 0.1 * np.maximum(np.abs(fwd), np.abs(bwd)))
        lo, hi = np.minimum(fwd, bwd), np.maximum(fwd, bwd)
        inside = (a >= lo - tol) & (a <= hi + tol)
        kink = fail & kinky & inside
        failed = fail & ~kink
        rel_err = abs_err / np.maximum(np.abs(num), rep.atol)
        ratio = np.where(np.isnan(abs_err), np.inf, abs_err / tol)
    rep.n_failed = int(failed.sum())
    for i in np.flatnonzero(kink):
        idx = _index(i, t.shape)
        rep.kinks.append(Kink(idx, _timestep(idx, rep.time_axis), float(a[i]), float(num[i]),
                              float(fwd[i]), float(bwd[i])))
    usable = ~kink
    if usable.any():
        rep.max_abs_err = float(np.max(abs_err[usable]))  # NaN if any is NaN
        rep.max_rel_err = float(np.max(rel_err[usable]))
        pool = failed if failed.any() else usable
        i = int(np.argmax(np.where(pool, ratio, -np.inf)))
        idx = _index(i, t.shape)
        rep.worst_index = idx
        rep.worst_timestep = _timestep(idx, rep.time_axis)
        rep.analytic, rep.numeric = float(a[i]), float(num[i])
        rep.abs_err, rep.rel_err, rep.tolerance = float(abs_err[i]), float(rel_err[i]), float(tol[i])
        rep.excess = float(ratio[i])
    else:
        rep.max_abs_err = rep.max_rel_err = 0.0
        rep.worst_index = rep.worst_timestep = None
        rep.analytic = rep.numeric = rep.abs_err = rep.rel_err = rep.tolerance = None
        rep.excess = 0.0


def _check_fast(rep, t, g, S, rng):
    """Directional derivatives along random unit vectors; fills rep (mode "fast")."""
    rep.mode = "fast"
    rep.n_compared = _N_PROJECTIONS
    x = t.data
    orig = x.copy()
    x64 = orig.astype(np.float64)
    a_flat = g.astype(np.float64)
    worst = None
    n_failed = 0
    max_abs = max_rel = 0.0
    for _ in range(_N_PROJECTIONS):
        v = rng.standard_normal(x.shape)
        v /= np.linalg.norm(v)
        h = max(rep.eps, 16.0 * float(np.max(np.abs(np.spacing(orig)))) if orig.size else rep.eps)
        x[...] = x64 + h * v
        dplus = x.astype(np.float64) - x64  # the steps actually taken
        sp = S()
        x[...] = x64 - h * v
        dminus = x64 - x.astype(np.float64)
        sm = S()
        x[...] = orig
        span = 2 * h
        numeric = (sp - sm) / span
        analytic = float(np.sum(a_flat * (dplus + dminus))) / span
        abs_err = abs(analytic - numeric)
        tol = rep.atol + rep.rtol * abs(numeric)
        rel = abs_err / max(abs(numeric), rep.atol)
        failed = not abs_err <= tol
        n_failed += failed
        max_abs, max_rel = max(max_abs, abs_err), max(max_rel, rel)
        ratio = math.inf if math.isnan(abs_err) else abs_err / tol
        if worst is None or ratio > worst[0]:
            worst = (ratio, analytic, numeric, abs_err, rel, tol)
    rep.n_failed = n_failed
    rep.max_abs_err, rep.max_rel_err = max_abs, max_rel
    rep.excess, rep.analytic, rep.numeric, rep.abs_err, rep.rel_err, rep.tolerance = worst
    rep.worst_index = rep.worst_timestep = None


def _index(flat_i, shape):
    return tuple(int(v) for v in np.unravel_index(int(flat_i), shape)) if shape else ()


def _timestep(idx, axis):
    return None if axis is None or idx is None else int(idx[axis])

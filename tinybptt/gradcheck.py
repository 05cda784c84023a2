"""Gradient checking: compare a backward pass with finite differences.

``gradcheck(fn, inputs)`` answers one question: does the gradient that
``backward()`` computes agree with the slope of the function itself?

How it works.  ``fn(*inputs)`` returns one or more Tensors ``y_k``.  Unless it
is a single one-element output (then ``S = y`` itself), they are reduced to one
scalar with fixed random weights ``v_k`` drawn from N(0, 1) with ``seed``::

    S = sum_k sum(v_k * y_k)

Projecting onto random weights checks every output element at once while
needing a single backward pass (no Jacobian is ever formed); the report then
says its numbers are derivatives of that projection, and ``per_output=True``
compares every ``dy[j]/dx[i]`` instead (one backward per output element).  The
analytic gradient of ``S`` comes from one ``backward()``; the numeric gradient
from central differences of the same ``S``, one input element at a time::

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
import math
import re
import warnings

import numpy as np

from .autograd import Function, Tensor, enable_grad, no_grad
from .backprop import topological_order
from .gradcheck_report import GradcheckError, GradcheckReport, InputReport, Kink

__all__ = ["gradcheck", "GradcheckError", "GradcheckWarning", "GradcheckReport", "InputReport", "Kink",
           "DEFAULT_TOLERANCES"]

#: Default ``eps`` (finite-difference step), ``atol`` and ``rtol`` per input dtype.
DEFAULT_TOLERANCES = {
    np.dtype(np.float64): {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3},
    np.dtype(np.float32): {"eps": 1e-3, "atol": 1e-2, "rtol": 1e-2},
}

_N_PROJECTIONS = 2  # random directions per input in fast mode


class GradcheckWarning(UserWarning):
    """A gradient check that can only be coarse (an input that is not float64)."""


# --------------------------------------------------------------------------- the check


def gradcheck(fn, inputs, *, eps=None, atol=None, rtol=None, fast=False, seed=0,
              raise_exception=True, names=None, time_axis=None, per_output=False):
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
        two random unit directions ``u``, ``<grad, u>`` against
        ``(S(x + eps u) - S(x - eps u)) / (2 eps)``.  Four calls of ``fn`` per input
        whatever its size.  If a projection fails, that input is re-checked in
        full, so the report still names the worst element.
    seed : int
        Seeds the output weights ``v_k`` and the fast-mode directions.
    raise_exception : bool
        Raise ``GradcheckError`` on failure (default), else just return the report.
    names : list of str, optional
        One name per input, used in messages (default ``"input 0"``, ...).  A name
        with axis letters, ``"x[T,B,I]"``, marks axis ``T`` as time.
    time_axis : int or list, optional
        The time axis of every input that has it (an int) or of each input (a
        list with None for inputs without one); overrides letters in names.
    per_output : bool
        Compare ``dy[j]/dx[i]`` for every output element ``j`` on its own instead of
        the derivatives of the random projection ``S``; the report then names the
        output element too.  Costs one backward pass per output element (not
        with ``fast``).

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
    inputs, specs, checked = _checked_arguments(inputs, names, time_axis, (eps, atol, rtol), per_output, fast)
    with _scratch_copies(inputs, checked):
        reports, compared = _compare(fn, inputs, specs, checked, (eps, atol, rtol), fast, seed, per_output)
    return _finished(GradcheckReport(reports, fast, seed, compared), raise_exception)


def _checked_arguments(inputs, names, time_axis, settings, per_output, fast):
    """gradcheck's arguments, checked: ``inputs`` as a list of Tensors, a (name, time axis) per input,
    and the positions of the inputs to check.  Raises on anything gradcheck cannot check."""
    inputs = _tensor_list(inputs)
    _check_settings(settings)
    if per_output and fast:
        raise ValueError("gradcheck: per_output=True compares every output element; it cannot be fast=True")
    specs = _specs(inputs, names, time_axis)
    return inputs, specs, _checked_positions(inputs, specs, settings)


def _check_settings(settings):
    """TypeError/ValueError unless each of eps, atol, rtol given is a finite number, eps above 0."""
    for name, v in zip(("eps", "atol", "rtol"), settings):
        if v is None:
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise TypeError("gradcheck: %s must be a number, got %r" % (name, v)) from None
        if not (math.isfinite(f) and (f > 0 if name == "eps" else f >= 0)):
            raise ValueError("gradcheck: %s must be a finite number %s, got %r"
                             % (name, "above 0" if name == "eps" else "of at least 0", v))


def _compare(fn, inputs, specs, checked, settings, fast, seed, per_output):
    """Analytic against numeric derivatives for each checked input.

    Returns one ``InputReport`` per checked input and what was compared: "per
    output" (every output element on its own), "output" (fn's one number) or
    "projection" (the random projection ``S``).
    """
    rng = np.random.default_rng(seed)
    with enable_grad():  # the first call builds the graph for the analytic gradients
        outs = _outputs(fn(*inputs))
    outputs = _Outputs(fn, inputs, outs)
    reports = []
    if per_output:
        jacobians = _analytic_jacobians(outs, outputs, inputs, checked)
        for k in checked:
            reports.append(_input_report(inputs[k], k, specs[k], *settings))
            _check_full(reports[-1], inputs[k], jacobians[k], outputs.values, outputs.element)
        return reports, "per output"
    weights = outputs.projection_weights(rng)
    grads = _analytic(outs, inputs, checked, weights)
    for k in checked:
        reports.append(_input_report(inputs[k], k, specs[k], *settings))
        _check_projection(reports[-1], inputs[k], grads[k], outputs.projection(weights), fast, rng)
    return reports, "output" if outputs.is_scalar else "projection"


def _finished(report, raise_exception):
    """``report``, or a ``GradcheckError`` carrying it when it failed and ``raise_exception`` is set."""
    if raise_exception and not report.ok:
        raise GradcheckError(report.message(), report)
    return report


def _check_projection(rep, t, g, S, fast, rng):
    """Check input ``t``'s gradient ``g`` of the scalar ``S()``; fast mode falls back to full on failure."""
    if fast and t.size > 0:
        _check_fast(rep, t, g, S, rng)
        if rep.ok:
            return
        rep.mode = "fast+full"
    _check_full(rep, t, g.reshape(1, -1), lambda: np.array([S()]))


# --------------------------------------------------------------------------- the inputs


def _tensor_list(inputs):
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    for k, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError("gradcheck: inputs must be Tensors; input %d is %s (wrap it with tinybptt.tensor)"
                            % (k, type(t).__name__))
    return inputs


def _checked_positions(inputs, specs, settings):
    """Positions of the inputs to check; raises on leaves missing or non-finite data, warns on float32."""
    checked = [k for k, t in enumerate(inputs) if t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check. "
                         "Create the inputs with tinybptt.tensor(..., requires_grad=True).")
    for k in checked:
        t, name = inputs[k], specs[k][0]
        if not t.is_leaf:
            raise ValueError(
                "gradcheck: input '%s' is not a leaf (it was produced by op %s); pass leaf tensors, "
                "e.g. tinybptt.tensor(x.data, requires_grad=True)" % (name, t.op))
        if t.dtype != np.float64:
            eps, atol, rtol = (_setting(v, t.dtype, key) for v, key in zip(settings, ("eps", "atol", "rtol")))
            warnings.warn("gradcheck: input '%s' is %s; finite differences in %s are coarse (eps=%g, atol=%g, "
                          "rtol=%g). Check gradients in float64." % (name, t.dtype, t.dtype, eps, atol, rtol),
                          GradcheckWarning, stacklevel=4)  # the caller of gradcheck
    for t, (name, _) in zip(inputs, specs):
        _require_finite(t, name)
    return checked


def _require_finite(t, name):
    """Finite differences through NaN or Inf are NaN: say so, instead of failing against a NaN tolerance."""
    if t.data.dtype.kind in "fc" and not np.all(np.isfinite(t.data)):
        bad = ~np.isfinite(t.data)
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            "gradcheck: input '%s' (shape %s, %s) holds %d non-finite value(s), the first %r at index %s; "
            "finite differences need finite inputs. Check the data (or the op that made it) first."
            % (name, t.shape, t.dtype, int(bad.sum()), t.data[first].item(), first))


class _scratch_copies:
    """Give the checked inputs private C-contiguous copies of their data; restore data and .grad on exit.

    The finite differences write into ``t.data``; the caller's arrays are never written.
    """

    def __init__(self, inputs, checked):
        self.saved = {id(t): (t, t.data, t.grad) for t in inputs}
        self.checked = [inputs[k] for k in checked]

    def __enter__(self):
        for t in self.checked:
            if t.data is self.saved[id(t)][1]:  # not yet copied (an input may be passed twice)
                t.data = np.array(t.data, dtype=t.data.dtype, order="C", copy=True)

    def __exit__(self, *exc):
        for t, data, grad in self.saved.values():
            t.data = data
            t.grad = grad
        return False


def _input_report(t, position, spec, eps, atol, rtol):
    name, time_axis = spec
    return InputReport(name, position, t.shape, t.dtype, time_axis, _setting(eps, t.dtype, "eps"),
                       _setting(atol, t.dtype, "atol"), _setting(rtol, t.dtype, "rtol"))


def _setting(value, dtype, key):
    if value is not None:
        return float(value)
    return DEFAULT_TOLERANCES.get(np.dtype(dtype), DEFAULT_TOLERANCES[np.dtype(np.float32)])[key]


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


# --------------------------------------------------------------------------- the outputs


def _outputs(res, what="fn"):
    """Normalise fn's result to a list of Tensors (None entries allowed)."""
    outs = list(res) if isinstance(res, (tuple, list)) else [res]
    for k, o in enumerate(outs):
        if o is not None and not isinstance(o, Tensor):
            raise TypeError("gradcheck: %s must return a Tensor or a tuple of Tensors; output %d is %s"
                            % (what, k, type(o).__name__))
    return outs


class _Outputs:
    """``fn``'s outputs: their shapes (from ``first``, fn's first result), and their values at the current inputs."""

    def __init__(self, fn, inputs, first):
        self.fn, self.inputs = fn, inputs
        self.shapes = [None if o is None else o.shape for o in first]
        self.dtypes = [None if o is None else o.dtype for o in first]
        self.is_scalar = len(first) == 1 and first[0] is not None and first[0].size == 1

    def values(self):
        """Every output element, concatenated, as one float64 vector (``fn`` run without a graph)."""
        with no_grad():
            outs = _outputs(self.fn(*self.inputs))
        if len(outs) != len(self.shapes):
            raise ValueError("gradcheck: fn returned %d outputs, then %d" % (len(self.shapes), len(outs)))
        parts = []
        for o, shape in zip(outs, self.shapes):
            if o is None or shape is None:
                continue
            if o.shape != shape:
                raise ValueError("gradcheck: an output of fn changed shape from %s to %s between calls"
                                 % (shape, o.shape))
            parts.append(o.data.astype(np.float64).reshape(-1))
        return np.concatenate(parts) if parts else np.zeros(0)

    def element(self, j):
        """``(k, index)``: which output, and where in it, element ``j`` of ``values()`` is."""
        for k, shape in enumerate(self.shapes):
            n = 0 if shape is None else int(np.prod(shape, dtype=np.int64))
            if j < n:
                return k, _index(j, shape)
            j -= n
        raise IndexError(j)

    def projection_weights(self, rng):
        """``v_k`` per output (None for a missing output): 1 for a single one-element output, else N(0, 1)."""
        if self.is_scalar:
            return [np.ones(self.shapes[0], self.dtypes[0])]
        return [None if s is None else rng.standard_normal(s).astype(dt) for s, dt in zip(self.shapes, self.dtypes)]

    def projection(self, weights):
        """The function ``S()`` = sum_k v_k . y_k at the current inputs (exactly summed)."""
        flat = np.concatenate([w.astype(np.float64).reshape(-1) for w in weights if w is not None] or [np.zeros(0)])
        return lambda: math.fsum(flat * self.values())


class _Probe(Function):
    """S = sum_k sum(v_k * y_k) in float64; backward hands v_k to each output."""

    name = "gradcheck_probe"

    @staticmethod
    def forward(ctx, *outs, weights=()):
        ctx.weights = weights
        return np.asarray(math.fsum(float(np.sum(w.astype(np.float64) * o.astype(np.float64)))
                                    for w, o in zip(weights, outs)))

    @staticmethod
    def backward(ctx, g):
        return tuple(np.asarray(g * w) for w in ctx.weights)


def _analytic(outs, inputs, checked, weights, retain_graph=False):
    """One backward of S = sum_k v_k . y_k from fn's outputs ``outs``; returns {k: dS/d input k as float64}.

    Leaves ``fn`` uses besides the inputs (a layer's weights) get their ``.grad``
    back as it was.
    """
    live = [(o, w) for o, w in zip(outs, weights) if o is not None and w is not None and o.requires_grad]
    grads = {}
    if live:
        with enable_grad():
            s = _Probe.apply(*[o for o, _ in live], weights=tuple(w for _, w in live))
        leaves = _leaves(s)
        before = [t.grad for t in leaves]
        for t in leaves:
            t.grad = None
        try:
            s.backward(retain_graph=retain_graph)
            grads = {k: None if inputs[k].grad is None else np.array(inputs[k].grad, dtype=np.float64)
                     for k in checked}
        finally:
            for t, g in zip(leaves, before):
                t.grad = g
    return {k: np.zeros(inputs[k].shape) if grads.get(k) is None else grads[k] for k in checked}


def _leaves(root):
    """Every leaf that requires grad in the graph of ``root`` (each once)."""
    leaves = {}
    for node in topological_order(root):
        for t in node.inputs or ():
            if isinstance(t, Tensor) and t.is_leaf and t.requires_grad:
                leaves[id(t)] = t
    return list(leaves.values())


def _analytic_jacobians(outs, outputs, inputs, checked):
    """{k: the (outputs' elements, input k's elements) Jacobian}: one backward per output element."""
    n_out = sum(0 if shape is None else int(np.prod(shape, dtype=np.int64)) for shape in outputs.shapes)
    jac = {k: np.zeros((n_out, inputs[k].size)) for k in checked}
    for j in range(n_out):
        k_out, idx = outputs.element(j)
        weights = [None] * len(outs)
        weights[k_out] = np.zeros(outputs.shapes[k_out], outputs.dtypes[k_out])
        weights[k_out][idx] = 1
        grads = _analytic(outs, inputs, checked, weights, retain_graph=True)
        for k in checked:
            jac[k][j] = grads[k].reshape(-1)
    return jac


# --------------------------------------------------------------------------- central differences


def _step(x_orig, eps):
    """A step no smaller than a few units in the last place of x (so x + h != x)."""
    return max(eps, 16.0 * float(np.abs(np.spacing(x_orig))))


def _differences(t, eps, values):
    """Central and one-sided differences of ``values()`` in each element of ``t``.

    Returns three arrays of shape (len(values()), t.size): the central difference
    and the forward and backward one-sided differences, column i for element i.
    """
    flat = t.data.reshape(-1)  # the private C-contiguous copy: a view
    v0 = values()
    central, fwd, bwd = (np.empty((v0.size, flat.size)) for _ in range(3))
    for i in range(flat.size):
        orig = flat[i]
        h = _step(orig, eps)
        flat[i] = orig + h
        hp = float(flat[i]) - float(orig)  # the step actually taken (rounding to dtype)
        vp = values()
        flat[i] = orig - h
        hm = float(orig) - float(flat[i])
        vm = values()
        flat[i] = orig
        central[:, i] = (vp - vm) / (hp + hm)
        fwd[:, i] = (vp - v0) / hp
        bwd[:, i] = (v0 - vm) / hm
    return central, fwd, bwd


def _check_full(rep, t, jac, values, output_of=None):
    """Compare every entry of ``jac`` (outputs' elements x input elements) with differences; fills rep.

    ``output_of(j)`` names row ``j`` as ``(output k, index)`` when the rows are output elements.
    """
    rep.n_compared = jac.size
    rep.kinks = []
    if jac.size == 0:
        rep.n_failed = 0
        return
    num, fwd, bwd = _differences(t, rep.eps, values)
    a = jac
    with np.errstate(invalid="ignore", over="ignore"):
        abs_err = np.abs(a - num)
        tol = rep.atol + rep.rtol * np.abs(num)
        fail = ~(abs_err <= tol)  # NaN fails
        spread = np.abs(fwd - bwd)
        kinky = spread > np.maximum(2 * tol, 0.1 * np.maximum(np.abs(fwd), np.abs(bwd)))
        inside = (a >= np.minimum(fwd, bwd) - tol) & (a <= np.maximum(fwd, bwd) + tol)
        kink = fail & kinky & inside
        failed = fail & ~kink
        rel_err = abs_err / np.maximum(np.abs(num), rep.atol)
        ratio = np.where(np.isnan(abs_err), np.inf, abs_err / tol)
    rep.n_failed = int(failed.sum())
    for j, i in np.argwhere(kink):
        idx = _index(i, t.shape)
        rep.kinks.append(Kink(idx, _timestep(idx, rep.time_axis), float(a[j, i]), float(num[j, i]),
                              float(fwd[j, i]), float(bwd[j, i])))
    usable = ~kink
    if not usable.any():
        return
    rep.max_abs_err = float(np.max(abs_err[usable]))  # NaN if any is NaN
    rep.max_rel_err = float(np.max(rel_err[usable]))
    pool = failed if failed.any() else usable
    j, i = np.unravel_index(int(np.argmax(np.where(pool, ratio, -np.inf))), a.shape)
    rep.worst_index = _index(i, t.shape)
    rep.worst_timestep = _timestep(rep.worst_index, rep.time_axis)
    rep.analytic, rep.numeric = float(a[j, i]), float(num[j, i])
    rep.abs_err, rep.rel_err, rep.tolerance = float(abs_err[j, i]), float(rel_err[j, i]), float(tol[j, i])
    rep.excess = float(ratio[j, i])
    rep.worst_output = None if output_of is None else output_of(j)


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

"""What ``tinybptt.gradcheck`` found: the report objects and their text.

A :class:`GradcheckReport` holds one :class:`InputReport` per checked input and
names the worst element rather than dumping Jacobians.  Unless the check ran
with ``per_output=True``, the numbers compare the derivatives of one scalar,
the random projection ``S = sum_k v_k . y_k`` of the outputs ``y_k`` (``v_k``
drawn from N(0, 1) with the check's seed), and the text says so.
"""
import math

import numpy as np

from .errors import TinyBPTTError


class GradcheckError(TinyBPTTError, AssertionError):
    """The analytic gradient disagrees with finite differences.

    ``err.report`` is the full :class:`GradcheckReport`.  It subclasses
    ``AssertionError`` so that a failing check inside a test reads as a test
    failure.
    """

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


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
    worst_output : tuple or None
        With ``per_output=True``: ``(k, index)``, the element of output ``k`` whose
        derivative is the worst one; None otherwise.
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
        self.worst_output = None
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
        if self.worst_output is not None:
            s += " of output %d%s" % (self.worst_output[0], list(self.worst_output[1]))
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

    ``report.compared`` says what the numbers are derivatives of: ``"output"``
    (the one output had one element), ``"projection"`` (the random projection
    ``S = sum_k v_k . y_k`` of the outputs, ``v_k`` drawn with ``report.seed``), or
    ``"per output"`` (each output element on its own, ``per_output=True``).
    """

    def __init__(self, inputs, fast, seed, compared="projection"):
        self.inputs = inputs
        self.fast = fast
        self.seed = seed
        self.compared = compared
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
    def what(self):
        """One line: the quantity whose derivatives were compared."""
        if self.compared == "output":
            return "derivatives of the output (one element)"
        if self.compared == "per output":
            return "derivatives of each output element on its own (per_output=True)"
        return ("derivatives of S = sum_k v_k . y_k, a random projection of the outputs y_k "
                "(v_k ~ N(0, 1), seed %d); pass per_output=True for dy[j]/dx[i] per output element" % self.seed)

    def message(self):
        """The GradcheckError message: the worst failing element, never a Jacobian."""
        w = self.worst
        if self.ok or w is None:
            return "gradcheck passed"
        lines = [
            "gradcheck failed for input '%s' (shape %s, %s): %d of %d elements failed."
            % (w.name, w.shape, w.dtype, w.n_failed, w.n_compared),
            "  worst element: %s, index %s%s%s" % (
                w.name, w.worst_index,
                "" if w.worst_timestep is None else ", timestep t=%d" % w.worst_timestep,
                "" if w.worst_output is None else ", of output %d at %s" % w.worst_output),
            "    analytic:  %s   (from backward)" % _fmt(w.analytic),
            "    numeric:   %s   (central difference, eps=%g)" % (_fmt(w.numeric), w.eps),
            "    abs error: %s" % _fmt(w.abs_err),
            "    rel error: %s   (abs error / max(|numeric|, atol))" % _fmt(w.rel_err),
            "    tolerance: %s   (atol %g + rtol %g * |numeric|)" % (_fmt(w.tolerance), w.atol, w.rtol),
            "  compared: %s" % self.what(),
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
        lines = [head] if not self.ok else [head, "  compared: " + self.what()]  # (a failure's message says it)
        lines += ["  " + "  ".join(cell.ljust(wd) for cell, wd in zip(row, widths)).rstrip() for row in rows]
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

    def _repr_html_(self):
        """What a notebook shows for a report: the text above, its first line in the verdict's colour."""
        from html import escape

        head, _, rest = str(self).partition("\n")
        colour = "#1a7f37" if self.ok else "#cf222e"
        return '<pre><b style="color:%s">%s</b>\n%s</pre>' % (colour, escape(head), escape(rest))


def _fmt(v):
    return "None" if v is None else "%.6g" % v


def _nan_inf(v):
    return math.inf if v is None or math.isnan(v) else v

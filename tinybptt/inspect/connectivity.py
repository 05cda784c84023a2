"""Connectivity: how strongly one decision depends on each input step, ‖∂y/∂x_t‖ for t = 0..T-1.

Madsen ("Visualizing memorization in RNNs", Distill 2019) calls this the
*connectivity* of an output to the inputs: backpropagate a single number ``y`` --
one logit of the model's decision, or its loss -- to the input sequence and take
the norm of the gradient at each step.  A vanilla RNN's decision at the end of a
long sentence has a connectivity that falls by orders of magnitude towards the
start; gated cells can keep it up; attention reaches every step directly.

``connectivity(model, inputs, ...)``  one call, one ``Connectivity`` result:
                                      ``.norms``, ``.log10``, ``.to_dict()``/``.to_json()``,
                                      ``.render()`` (terminal text) and ``.plot()`` (matplotlib)
``render_rows(results, labels)``      several results over the same words on one shared scale
``plot_rows(results, labels)``        the same as a figure (one row per result)

With token inputs the gradient is taken with respect to the *embedded* input
(the vectors the recurrent layer reads), since ids are not differentiable.
"""
import json
import math
from dataclasses import dataclass, field

import numpy as np

from .. import display
from ..autograd import Tensor, no_grad
from ..errors import ShapeError
from .numerics import log10_norm

OUTPUTS = ("logit", "loss")
# dark blue (weak) to yellow (strong): the 256-colour ramp the terminal rendering shades with
RAMP = [17, 18, 19, 20, 25, 31, 37, 43, 49, 113, 149, 185, 221, 226]


@dataclass
class Connectivity:
    """‖∂y/∂x_t‖ of one decision ``y`` with respect to every input step of one sequence.

    ``norms`` (T,) float64 (may underflow to 0: use ``log10``, which is exact and
    -inf only for an exactly zero gradient); ``words`` the label of each step (or
    None); ``output`` what ``y`` is ("logit" of class ``cls``, or "loss" against
    ``target``); ``value`` its value; ``logits`` the model's output at the decision.
    """

    norms: np.ndarray
    log10: np.ndarray
    output: str
    value: float
    cls: object = None
    target: object = None
    logits: list = field(default_factory=list)
    words: list = None

    @property
    def T(self):
        return len(self.norms)

    def labels(self):
        """The word of each step, or "t=0", "t=1", ... without words."""
        return list(self.words) if self.words is not None else ["t=%d" % t for t in range(self.T)]

    def to_dict(self):
        """Every number, JSON-ready (log10 of an exactly zero gradient is None)."""
        return {"output": self.output, "value": self.value, "cls": self.cls, "target": self.target,
                "logits": list(self.logits), "words": self.labels(),
                "norms": [float(v) for v in self.norms],
                "log10": [float(v) if math.isfinite(v) else None for v in self.log10]}

    def to_json(self, path=None, indent=1):
        """The ``to_dict()`` as JSON text; written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            with open(path, "w") as f:
                f.write(text + "\n")
        return text

    def render(self, color=None, unicode=None, label="", tail=None):
        """Terminal text: each word shaded by log10 ‖∂y/∂x_t‖ (see ``render_rows``)."""
        return render_rows([self], [label], color=color, unicode=unicode, tail=tail)

    def plot(self, path=None, title=None):
        """A matplotlib figure of log10 ‖∂y/∂x_t‖ per word; saved to ``path`` when given."""
        return plot_rows([self], [title or ""], path=path)

    def _repr_png_(self):
        from .plot import png_of

        return png_of(self.plot)


def _select(out, batch_index, who):
    """The model output of the one sequence: (C,) from (B, C), (C,) from (T, B, C) at the last step."""
    if isinstance(out, tuple):
        out = out[0]
    if not isinstance(out, Tensor):
        raise ShapeError("%s: the model must return a Tensor (or a tuple starting with one), got %s"
                         % (who, type(out).__name__))
    if out.ndim == 3:
        out = out[-1]
    if out.ndim != 2:
        raise ShapeError("%s: the model output must be (B, C) or (T, B, C), got shape %s" % (who, tuple(out.shape)))
    return out[batch_index]


def _decision(row, output, cls, target, who):
    """The scalar y: one logit, or the loss (cross-entropy for an int target, squared error for a float one)."""
    from ..nn import functional as F

    if output == "logit":
        k = int(np.argmax(row.data)) if cls is None else int(cls)
        if not 0 <= k < row.shape[0]:
            raise ShapeError("%s: class %d out of range for %d outputs" % (who, k, row.shape[0]))
        return row[k], k
    if target is None:
        raise ValueError("%s: output='loss' needs a target" % who)
    t = np.asarray(target)
    if t.dtype.kind in "iu":
        return F.cross_entropy(row.reshape(1, row.shape[0]), t.reshape(1)), None
    return F.mse_loss(row, Tensor(np.broadcast_to(t, row.shape).astype(row.dtype))), None


def connectivity(model, inputs, output="logit", cls=None, target=None, words=None, batch_index=0):
    """‖∂y/∂x_t‖ for t = 0..T-1 of one sequence of ``inputs`` (time first): a ``Connectivity``.

    ``model`` is either

    - a model with ``embed(ids)`` and ``forward_embedded(x)`` (as the agreement
      classifiers of ``tinybptt.apps.agreement``): ``inputs`` are token ids (T, B), and
      x_t is the embedding the model reads at step t; or
    - any callable taking a float Tensor (T, B, I) (e.g. a recurrent layer and head in a
      lambda): ``inputs`` are that array and x_t = inputs[t].

    The model's output is (B, C), or (T, B, C) of which the last step is used; only
    sequence ``batch_index`` is run.  ``output="logit"``: y is the logit of class ``cls``
    (default: the predicted class); ``output="loss"``: y is the loss against ``target``
    (a class index: cross-entropy; a float: squared error).
    """
    who = "connectivity"
    if output not in OUTPUTS:
        raise ValueError("%s: output must be one of %s, got %r" % (who, OUTPUTS, output))
    arr = np.asarray(inputs.data if isinstance(inputs, Tensor) else inputs)
    if arr.ndim < 2 or not 0 <= batch_index < arr.shape[1]:
        raise ShapeError("%s: inputs must be time first, (T, B, ...), with batch_index < B; got shape %s and "
                         "batch_index %r" % (who, arr.shape, batch_index))
    one = arr[:, batch_index:batch_index + 1]
    embedded = hasattr(model, "embed") and hasattr(model, "forward_embedded")
    if embedded:
        with no_grad():
            e = model.embed(one).data
        x = Tensor(np.array(e), requires_grad=True)
        out = model.forward_embedded(x)
    else:
        if one.dtype.kind != "f":
            raise ShapeError("%s: a model without embed()/forward_embedded() needs float inputs, got %s"
                             % (who, one.dtype))
        x = Tensor(np.array(one), requires_grad=True)
        out = model(x)
    row = _select(out, 0, who)
    y, k = _decision(row, output, cls, target, who)
    y.backward()
    g = x.grad if x.grad is not None else np.zeros(x.shape)
    g = np.asarray(g, dtype=np.float64).reshape(g.shape[0], -1)
    log10 = np.array([log10_norm(g[t]) for t in range(g.shape[0])])
    norms = np.sqrt(np.sum(g * g, axis=1))
    if words is not None and len(words) != len(norms):
        raise ShapeError("%s: %d words for %d input steps" % (who, len(words), len(norms)))
    return Connectivity(norms, log10, output, float(y.item()), cls=k,
                        target=None if target is None else np.asarray(target).tolist(),
                        logits=[float(v) for v in row.data], words=None if words is None else list(words))


# --------------------------------------------------------------------------- terminal


def _row_labels(who, results, labels):
    """The label of each row (blank by default); an empty ``results`` is an error naming ``who``."""
    if not len(results):
        raise ShapeError("%s: needs at least one connectivity result, got none" % who)
    return list(labels) if labels is not None else [""] * len(results)


def _scale(results, lo, hi):
    vals = [v for r in results for v in r.log10 if math.isfinite(v)]
    if not vals:
        vals = [0.0]
    return (min(vals) if lo is None else lo), (max(vals) if hi is None else hi)


def _fraction(v, lo, hi):
    return 1.0 if hi <= lo else (min(max(v, lo), hi) - lo) / (hi - lo)


def _cell(v, width, lo, hi, color, shades, missing):
    if not math.isfinite(v):
        return missing * width
    f = _fraction(v, lo, hi)
    if color:
        return "\x1b[48;5;%dm%s\x1b[0m" % (RAMP[int(round(f * (len(RAMP) - 1)))], " " * width)
    return shades[max(1, int(round(f * (len(shades) - 1))))] * width


def render_rows(results, labels=None, lo=None, hi=None, color=None, unicode=None, tail=None):
    """Several connectivities over the same words, one row each, on one shared log10 scale.

    The first line holds the words (of the first result); under each word, each row
    shades a bar the word's width: darker/bluer is weaker, full/yellow is stronger
    (256-colour backgrounds where the terminal shows colour -- ``display.use_color`` --
    shade characters otherwise).  ``tail`` (words after the inputs, e.g. the verb being
    decided and the rest of the sentence) is printed unshaded after the words.
    """
    color = display.use_color() if color is None else color
    unicode = display.supports_unicode() if unicode is None else unicode
    shades = display.SHADE_UNICODE if unicode else display.SHADE_ASCII
    missing = display.MISSING if unicode else " "
    labels = _row_labels("render_rows", results, labels)
    words = results[0].labels()
    if any(r.T != len(words) for r in results):
        raise ShapeError("render_rows: every result must cover the same %d steps" % len(words))
    lo, hi = _scale(results, lo, hi)
    widths = [max(len(w), 1) for w in words]
    lw = max([len(l) for l in labels] + [0])
    lines = [" " * lw + "  " + " ".join(w.ljust(n) for w, n in zip(words, widths)) +
             ("  " + " ".join(tail) if tail else "")]
    for lab, r in zip(labels, results):
        cells = [_cell(v, n, lo, hi, color, shades, missing) for v, n in zip(r.log10, widths)]
        lines.append(lab.rjust(lw) + "  " + " ".join(cells))
    lines.append(" " * lw + "  scale: log10 ||dy/dx_t|| from %s (%s) to %s (%s)"
                 % (_num(lo), shades[1] if not color else "dark blue", _num(hi), shades[-1] if not color else "yellow"))
    return "\n".join(lines)


def _num(v):
    return "%.1f" % v if math.isfinite(v) else str(v)


# --------------------------------------------------------------------------- figures


def plot_rows(results, labels=None, path=None, title=None, lo=None, hi=None, tail=None):
    """A heat map: one row per result, one column per word, colour = log10 ‖∂y/∂x_t‖ (shared scale).

    Returns the matplotlib figure (saved to ``path`` when given).  ``tail`` words are
    drawn after the inputs, unshaded.  matplotlib is imported here, only when plotting.
    """
    from matplotlib import colormaps

    from .plot import figure

    labels = _row_labels("plot_rows", results, labels)
    words = results[0].labels() + list(tail or [])
    T = results[0].T
    lo, hi = _scale(results, lo, hi)
    grid = np.full((len(results), len(words)), np.nan)
    for i, r in enumerate(results):
        grid[i, :T] = [v if math.isfinite(v) else np.nan for v in r.log10]
    fig, ax = figure(max(6.0, 0.42 * len(words) + 2), 0.55 * len(results) + 1.8, dpi=150)
    cmap = colormaps["viridis"].with_extremes(bad="#eeeeee")  # no gradient at all: light grey
    im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=lo, vmax=hi)
    ax.set_xticks(range(len(words)))
    ax.set_xticklabels(words, rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(len(results)))
    ax.set_yticklabels(labels, fontsize=9)
    for s in ax.spines.values():
        s.set_visible(False)
    fig.colorbar(im, ax=ax, pad=0.01, fraction=0.03).set_label(r"$\log_{10}\|\partial y/\partial x_t\|$")
    if title:
        ax.set_title(title, fontsize=10)
    if path is not None:
        fig.savefig(path)
    return fig

"""Objects with a picture show it when a notebook evaluates them (_repr_html_ / _repr_png_)."""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt.inspect.connectivity import connectivity


class _WrongTanh(tb.Function):
    @staticmethod
    def forward(ctx, x):
        y = np.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 + y * y)  # wrong sign: the derivative is 1 - y*y


def test_gradcheck_report_html_says_the_verdict():
    x = tb.tensor(np.random.default_rng(0).normal(size=(3,)), requires_grad=True)
    ok = tb.gradcheck(lambda t: t.tanh(), [x])
    html = ok._repr_html_()
    assert html.startswith("<pre>") and "gradcheck OK" in html and "#1a7f37" in html
    with pytest.raises(tb.GradcheckError) as info:
        tb.gradcheck(lambda t: _WrongTanh.apply(t), [x])
    bad = info.value.report._repr_html_()
    assert "FAILED" in bad and "#cf222e" in bad and "worst element" in bad


def test_connectivity_shows_a_png():
    pytest.importorskip("matplotlib")
    w = tb.tensor(np.random.default_rng(1).normal(size=(2, 3)))
    model = lambda x: (x @ w).sum(axis=0)  # (T, B, 2) -> (B, 3) logits
    res = connectivity(model, np.random.default_rng(2).normal(size=(4, 1, 2)), cls=0)
    png = res._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

"""Connectivity ||dy/dx_t||: against central finite differences, on float inputs and on embeddings."""
import json
import math

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn
from tinybptt.errors import ShapeError
from tinybptt.inspect.connectivity import Connectivity, connectivity, render_rows


class Tiny(nn.Module):
    """A float64 GRU and a 3-class head on the last step: a model taking (T, B, I) floats."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][-1])


def numeric_norms(f, x, eps=1e-6):
    """||d f / d x[t]|| for every t by central differences (x: (T, 1, ...) float64)."""
    T = x.shape[0]
    out = np.zeros(T)
    for t in range(T):
        g = np.zeros(x[t].size)
        for k in range(x[t].size):
            xp, xm = x.copy(), x.copy()
            xp[t].flat[k] += eps
            xm[t].flat[k] -= eps
            g[k] = (f(xp) - f(xm)) / (2 * eps)
        out[t] = np.linalg.norm(g)
    return out


@pytest.fixture
def tiny():
    nn.manual_seed(3)
    return Tiny()


def test_logit_connectivity_matches_finite_differences(tiny):
    x = np.random.default_rng(0).standard_normal((7, 2, 3))
    c = connectivity(tiny, x, cls=1, batch_index=1)

    def logit(xx):
        return float(tiny(tb.tensor(xx)).data[0, 1])

    expected = numeric_norms(logit, x[:, 1:2])
    np.testing.assert_allclose(c.norms, expected, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(c.log10, np.log10(expected), rtol=1e-6)
    assert c.cls == 1 and c.T == 7 and c.output == "logit"
    assert c.value == pytest.approx(logit(x[:, 1:2]))


def test_default_class_is_the_prediction_and_loss_output(tiny):
    from tinybptt.nn import functional as F

    x = np.random.default_rng(1).standard_normal((5, 1, 3))
    c = connectivity(tiny, x)
    assert c.cls == int(np.argmax(c.logits))
    loss = connectivity(tiny, x, output="loss", target=2)

    def ce(xx):
        return float(F.cross_entropy(tiny(tb.tensor(xx)), np.array([2])).item())

    np.testing.assert_allclose(loss.norms, numeric_norms(ce, x), rtol=1e-6, atol=1e-10)
    assert loss.value == pytest.approx(ce(x))


def test_embedded_inputs_match_finite_differences():
    from tinybptt.apps.agreement import AgreementRNN

    nn.manual_seed(0)
    model = AgreementRNN("lstm", 10, embed_dim=4, hidden_size=6, dtype=np.float64)
    ids = np.array([[1], [4], [2], [9], [3], [3]])
    c = connectivity(model, ids, cls=0, words=list("abcdef"))
    e = np.asarray(model.embed(ids).data)

    def logit(ee):
        return float(model.forward_embedded(tb.tensor(ee)).data[0, 0])

    np.testing.assert_allclose(c.norms, numeric_norms(logit, e), rtol=1e-6, atol=1e-10)
    assert c.labels() == list("abcdef")


def test_exact_zero_for_steps_the_output_does_not_read():
    nn.manual_seed(1)
    head = nn.Linear(3, 2)
    x = np.random.default_rng(2).standard_normal((6, 1, 3))
    c = connectivity(lambda t: head(t[4] + t[5]), x)
    assert list(c.norms[:4]) == [0.0] * 4 and all(v == -math.inf for v in c.log10[:4])
    assert np.all(c.norms[4:] > 0)
    d = json.loads(c.to_json())
    assert d["log10"][:4] == [None] * 4 and d["words"][0] == "t=0" and len(d["norms"]) == 6


def test_rendering_plain_and_colour(tiny):
    x = np.random.default_rng(3).standard_normal((4, 1, 3))
    words = ["the", "cat", "sat", "down"]
    c = connectivity(tiny, x, words=words)
    plain = c.render(color=False, unicode=False, label="gru", tail=["[sits]"])
    lines = plain.splitlines()
    assert lines[0].split() == words + ["[sits]"]
    row = lines[1].split()
    assert row[0] == "gru" and [len(cell) for cell in row[1:]] == [len(w) for w in words]
    strongest = int(np.argmax(c.log10))
    assert set(row[1 + strongest]) == {"#"}  # the top of the scale
    assert "\x1b[" not in plain
    coloured = c.render(color=True, unicode=True)
    assert coloured.count("\x1b[48;5;") == 4
    two = render_rows([c, c], ["a", "b"], color=False, unicode=False)
    assert len(two.splitlines()) == 4


def test_plot_returns_a_figure(tmp_path, tiny):
    pytest.importorskip("matplotlib")
    x = np.random.default_rng(4).standard_normal((5, 1, 3))
    c = connectivity(tiny, x)
    path = tmp_path / "c.png"
    fig = c.plot(path=str(path))
    assert hasattr(fig, "savefig") and path.stat().st_size > 1000


def test_bad_arguments(tiny):
    x = np.zeros((4, 1, 3))
    with pytest.raises(ValueError, match="output"):
        connectivity(tiny, x, output="grad")
    with pytest.raises(ValueError, match="target"):
        connectivity(tiny, x, output="loss")
    with pytest.raises(ShapeError, match="words"):
        connectivity(tiny, x, words=["a"])
    with pytest.raises(ShapeError, match="batch_index"):
        connectivity(tiny, x, batch_index=3)
    with pytest.raises(ShapeError, match="float inputs"):
        connectivity(tiny, np.zeros((4, 1), dtype=np.int64))
    with pytest.raises(ShapeError, match="class 7"):
        connectivity(tiny, x, cls=7)
    assert isinstance(connectivity(tiny, x), Connectivity)

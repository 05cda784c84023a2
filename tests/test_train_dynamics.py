"""tinybptt train's probe record: ||dL/dh_t|| on a fixed batch while the network learns."""
import json
import math

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import tasks
from tinybptt.apps import cli, train as train_app
from tinybptt.nn import functional as F

SMALL = dict(task="adding", T=8, H=5, batch=4, test_size=16, eval_every=7, seed=2, dtype="float64", progress=False,
             log=None)


def _direct_log10(model, cell):
    """log10 ||dL/dh_t|| for t = -1..T-1 on the probe batch, read off the layer's grad_trace by hand."""
    x, y = tasks.make_batch("adding", SMALL["T"], SMALL["test_size"], np.random.default_rng(SMALL["seed"] + 10_000),
                            dtype=np.float64)
    x, y = x[:, :SMALL["batch"]], y[:SMALL["batch"]]
    B, H = SMALL["batch"], SMALL["H"]
    h0 = tb.Tensor(np.zeros((1, B, H)), requires_grad=True)
    state = (h0, tb.Tensor(np.zeros((1, B, H)))) if cell == "lstm" else h0
    out = model.rnn(tb.Tensor(x), state)[0]
    loss = F.mse_loss(model.head(out[-1]), tb.Tensor(y))
    loss.backward()
    h = model.rnn.grad_trace.h[0]
    norms = [np.linalg.norm(h0.grad)] + [np.linalg.norm(h[t]) for t in range(SMALL["T"])]
    model.zero_grad()
    return [math.log10(v) for v in norms]


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_probe_record_equals_a_direct_grad_trace_at_each_step(cell):
    res = train_app.train(cell=cell, steps=7, probe_every=3, **SMALL)
    pr = res["probe"]
    assert pr["every"] == 3 and pr["steps"] == [0, 3, 6, 7] and pr["time_steps"] == list(range(-1, 8))
    assert all(len(row) == 9 for row in pr["log10"])
    assert res["grad_log10_before"] == pr["log10"][0] and res["grad_log10_after"] == pr["log10"][-1]
    for k, row in zip(pr["steps"], pr["log10"]):
        model = train_app.train(cell=cell, steps=k, record_gradients=False, **SMALL)["model"]  # the model at step k
        np.testing.assert_allclose(row, _direct_log10(model, cell), rtol=0, atol=1e-10)
    assert pr["log10"][0] != pr["log10"][-1]  # training changed the weights


def test_probe_every_default_and_zero():
    assert train_app.default_probe_every(3000) == 100 and train_app.default_probe_every(10) == 1
    res = train_app.train(cell="gru", steps=4, probe_every=0, **SMALL)
    assert res["probe"]["steps"] == [0, 4]
    res = train_app.train(cell="gru", steps=4, record_gradients=False, **SMALL)
    assert "probe" not in res


def test_cli_probe_json_heatmap_and_plot(tmp_path, capsys):
    j, png = tmp_path / "t.json", tmp_path / "t.png"
    argv = ["train", "--cell", "rnn,gru", "--T", "6", "--H", "4", "--steps", "6", "--probe-every", "2",
            "--eval-every", "3", "--test-size", "8", "--batch", "4", "--json", str(j), "--quiet"]
    try:
        import matplotlib  # noqa: F401
        argv += ["--plot", str(png)]
    except ImportError:
        png = None
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    data = json.loads(j.read_text())
    for d in data:
        assert d["probe"]["steps"] == [0, 2, 4, 6] and len(d["probe"]["log10"]) == 4
        assert d["probe"]["time_steps"] == list(range(-1, 6))
    assert "on the probe batch while training" in out and "step 6 |" in out and "t = -1 .. 5" in out
    if png is not None:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

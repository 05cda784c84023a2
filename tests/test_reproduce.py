"""``tinybptt reproduce``: each experiment runs on tiny settings and reports what it measured."""
import json
import math

import pytest

from tinybptt.apps import reproduce as R

NAMES = ["adding", "irnn", "copy", "cliff", "agreement"]


def test_list(capsys):
    assert R.main(["--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == NAMES


def test_unknown_and_inapplicable_options(capsys):
    assert R.main(["pixelmnist"]) == 2
    assert R.main(["cliff", "--H", "8"]) == 2
    assert "do not apply" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["adding", "irnn", "copy"])
def test_trained_experiments_small(name, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = R.main([name, "--steps", "4", "--T", "6", "--H", "4", "--batch", "4", "--quiet", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "configuration:" in text and "this run gives:" in text and "seed=0" in text
    data = json.loads(out.read_text())
    assert data["config"]["steps"] == 4 and data["config"]["T"] == 6
    if name == "copy":
        assert data["baseline_ce"] == pytest.approx(10 * math.log(8) / (6 + 20))
        assert set(data["models"]) == {"rnn", "lstm", "gru"}
    else:
        assert data["baseline_mse"] == pytest.approx(1 / 6)
        assert set(data["models"]) == ({"irnn", "rnn", "lstm"} if name == "irnn" else {"rnn", "lstm", "gru"})
    for m in data["models"].values():
        assert m["curve"][-1][0] == 4


def test_irnn_starts_from_the_identity():
    import numpy as np

    m = R.irnn_model(5, seed=0)
    np.testing.assert_array_equal(m.rnn.weight_hh_l0.data, np.eye(5, dtype=np.float32))
    assert not m.rnn.bias_hh_l0.data.any() and not m.rnn.bias_ih_l0.data.any()
    assert m.rnn.nonlinearity == "relu"


def test_cliff_clipping_bounds_every_step(tmp_path):
    r = R.run("cliff", steps=60, grid=31)
    plain, clipped = r["sgd"], r["sgd_clipped"]
    lr, clip = r["config"]["lr"], r["config"]["clip"]
    assert clipped["max_step"] <= lr * clip * (1 + 1e-9)
    # without clipping, the step that meets the wall is far longer than any clipped step
    assert plain["max_step"] > 10 * clipped["max_step"]
    assert plain["max_grad_norm"] > clip
    assert len(r["surface"]["loss"]) == 31 and math.isfinite(r["surface"]["max_abs_dL_db_on_grid"])
    pytest.importorskip("matplotlib")
    assert R.plot(r, str(tmp_path / "cliff.png"))
    assert (tmp_path / "cliff.png").stat().st_size > 1000


def test_cliff_loss_matches_a_plain_recurrence():
    import numpy as np
    from tinybptt.autograd import Tensor

    w, b = 1.3, -0.2
    x = 0.5
    for _ in range(10):
        x = w * np.tanh(x) + b
    got = R.cliff_loss(Tensor(np.array([w])), Tensor(np.array([b])), T=10).data[0]
    assert got == pytest.approx((x - 0.7) ** 2, rel=1e-12)


def test_agreement_small(capsys):
    rc = R.main(["agreement", "--steps", "3", "--pool", "100", "--per-cell", "1", "--hidden", "4", "--seeds", "2",
                 "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "mean error by attractors" in text and "seed 1:" in text and "trend:" in text


def test_agreement_mean_is_the_mean_of_the_seeds():
    r = R.run("agreement", steps=2, pool=60, per_cell=1, hidden=4, seeds=2, progress=False, models=["rnn"])
    m = r["models"]["rnn"]
    for a, mean in m["error_by_attractors"].items():
        assert mean == pytest.approx(sum(e[a] for e in m["error_by_attractors_per_seed"]) / 2)
    assert r["config"]["seeds"] == [0, 1]

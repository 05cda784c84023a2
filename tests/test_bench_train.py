"""The training-loop section of the bench: every library trains the same model on the same batches.

No speed is asserted: what is tested is that the loops agree (so their times compare the
same work), that the section's bookkeeping is right, and that it runs end to end.
"""
import importlib.util

import numpy as np
import pytest

from tinybptt.bench import main
from tinybptt.bench.train import TRAIN_TARGET, _round_plan, train_ratios, train_tables
from tinybptt.bench.train_loops import initial_weights, make_loop
from tinybptt.bench.train_profile import subnormal_count
from tinybptt.tasks import adding_problem

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_JAX = importlib.util.find_spec("jax") is not None
H = 16


def _losses(contender, cell, steps=4, T=12):
    loop = make_loop(contender, cell, H, 1e-2, 1.0, "float64")
    rng = np.random.default_rng(0)
    return [loop.step(*adding_problem(T, 5, rng, "float64")) for _ in range(steps)]


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_tinybptt_and_torch_loops_train_identically(cell):
    """Same weights, batches, loss, clip and Adam: the losses of four steps agree to float64 rounding."""
    np.testing.assert_allclose(_losses("tinybptt", cell), _losses("torch", cell), rtol=1e-9)


@pytest.mark.skipif(not (HAVE_TORCH and HAVE_JAX), reason="torch and jax needed")
@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_jax_loop_trains_like_torch(cell):
    np.testing.assert_allclose(_losses("jax", cell), _losses("torch", cell), rtol=1e-5)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
def test_clip_is_active_and_matches_torch():
    """A large learning rate and a small clip: the clipped update is what makes the losses agree."""
    def run(contender):
        loop = make_loop(contender, "rnn", H, 0.5, 0.01, "float64")
        rng = np.random.default_rng(1)
        return [loop.step(*adding_problem(8, 3, rng, "float64")) for _ in range(3)]
    np.testing.assert_allclose(run("tinybptt"), run("torch"), rtol=1e-9)


def test_initial_weights_are_torch_shaped_and_bounded():
    w = initial_weights("gru", 8, "float32", seed=3)
    assert w["weight_ih_l0"].shape == (24, 2) and w["weight_hh_l0"].shape == (24, 8)
    assert w["head.weight"].shape == (1, 8) and w["head.bias"].shape == (1,)
    assert all(v.dtype == np.float32 and np.all(np.abs(v) <= 1 / np.sqrt(8)) for v in w.values())


def test_round_plan_splits_steps():
    assert _round_plan(10, 4) == [3, 3, 2, 2]
    assert _round_plan(3, 5) == [1, 1, 1]
    assert sum(_round_plan(400, 4)) == 400


def test_subnormal_count():
    a = np.array([0.0, 1e-40, -1e-39, 1e-30, 1.0], dtype=np.float32)
    assert subnormal_count(a, "float32") == 2
    assert subnormal_count(a.astype(np.float64), "float64") == 0


def _row(cell, contender, cpu, wall=None):
    return {"cell": cell, "contender": contender, "ok": True, "cpu_s": cpu, "wall_s": wall or cpu, "steps": 10,
            "test_mse": 0.1}


def test_ratios_take_the_faster_peer_and_cpu_time():
    rows = [_row("rnn", "tinybptt", 2.0, 9.0), _row("rnn", "torch", 8.0), _row("rnn", "jax", 5.0, 6.0),
            _row("rnn", "tinybptt-ftz", 1.0)]
    assert train_ratios(rows)["rnn"] == (0.4, "jax", 0.2)
    assert train_ratios(rows, "wall_s")["rnn"] == (1.5, "jax", 1.0 / 6.0)
    text = train_tables({"rows": rows, "notes": []})
    assert "0.40x (jax)" in text and "PASS" in text and "<=%.1fx" % TRAIN_TARGET in text


def test_products_floor_is_a_share_of_the_faster_peers_step():
    rows = [_row("lstm", "tinybptt", 2.0), _row("lstm", "torch", 4.0), _row("lstm", "jax", 5.0)]
    profile = [{"cell": "lstm", "ftz": False, "floor_ms": 100.0, "floor_gflops": 98.0},
               {"cell": "lstm", "ftz": True, "floor_ms": 999.0, "floor_gflops": 1.0}]
    text = train_tables({"rows": rows, "notes": []} | {"profile": profile})
    # torch's step is 400 ms of CPU time: the floor of the default-settings profile is a quarter of it
    assert "0.25x" in text and "LSTM 98 GFLOP/s" in text
    assert "GFLOP/s" not in train_tables({"rows": rows, "notes": []})  # no profile, no floor


def test_without_peers_no_ratio_and_an_install_hint():
    text = train_tables({"rows": [_row("lstm", "tinybptt", 2.0)], "notes": []})
    assert "PASS" not in text and "FAIL" not in text
    assert "No peer to compare with" in text and 'pip install "tinybptt[bench]"' in text


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
def test_train_section_runs_end_to_end(tmp_path, capsys):
    import json
    js = tmp_path / "train.json"
    code = main(["--section", "train", "--cells", "rnn", "--peers", "torch", "--train-steps", "4",
                 "--train-rounds", "2", "--train-warmup", "1", "--profile-steps", "2", "--profile-warmup", "1",
                 "--quiet", "--json", str(js)])
    assert code == 0
    data = json.loads(js.read_text())["train"]
    by = {r["contender"]: r for r in data["rows"]}
    assert set(by) == {"tinybptt", "torch", "tinybptt-ftz"}
    assert all(r["ok"] and r["steps"] == 4 and r["rounds"] == 2 for r in by.values())
    assert by["tinybptt"]["first_loss"] == pytest.approx(by["torch"]["first_loss"], rel=1e-5)
    assert len(set(tuple(r["cpus"]) for r in by.values())) == 1 and len(by["torch"]["cpus"]) == 1
    assert [p["ftz"] for p in data["profile"]] == [False, True]
    # after a warm-up step the RNN's output and its gradient trace, both (T, B, H), come back from the
    # workspace at every step
    assert all(p["workspace"] == {"reused": 2, "made": 0} for p in data["profile"])
    out = capsys.readouterr().out
    assert "workspace arrays: reused / made" in out
    assert "Training loop, adding problem" in out and "Where a tinybptt training step's time goes" in out

"""The training-loop section of the bench: every library trains the same model on the same batches.

No speed is asserted: what is tested is that the loops agree (so their times compare the
same work), that the section's bookkeeping is right, and that it runs end to end.
"""
import importlib.util

import numpy as np
import pytest

from tinybptt.bench import main
from tinybptt.bench.train import TRAIN_TARGET, _round_plan, kernel_ratios, train_ratios, train_tables
from tinybptt.bench.train_loops import AgreementTask, initial_weights, make_loop
from tinybptt.bench.train_profile import subnormal_count
from tinybptt.tasks import adding_problem

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_JAX = importlib.util.find_spec("jax") is not None
H = 16


def _losses(contender, cell, steps=4, T=12):
    loop = make_loop(contender, cell, "adding", 0, {"H": H, "dtype": "float64"})
    rng = np.random.default_rng(0)
    return [loop.step(*adding_problem(T, 5, rng, "float64")) for _ in range(steps)]


#: A small agreement task in float64: batches of 6 from a pool of 60 sentences.
SMALL_AGREEMENT = {"B": 6, "E": 5, "H": H, "dtype": "float64", "pool_size": 60, "test_size": 20}


def _agreement(contender, cell, steps=4):
    """Losses of ``steps`` agreement steps and the test loss after them."""
    task = AgreementTask(0, SMALL_AGREEMENT)
    loop = make_loop(contender, cell, task)
    rng = np.random.default_rng(0)
    losses = [loop.step(*task.batch(rng)) for _ in range(steps)]
    return losses, loop.evaluate(*task.test_set())


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
        loop = make_loop(contender, "rnn", "adding", 0, {"H": H, "lr": 0.5, "clip": 0.01, "dtype": "float64"})
        rng = np.random.default_rng(1)
        return [loop.step(*adding_problem(8, 3, rng, "float64")) for _ in range(3)]
    np.testing.assert_allclose(run("tinybptt"), run("torch"), rtol=1e-9)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_agreement_loops_of_tinybptt_and_torch_train_identically(cell):
    """Embedding, layer, read-out at each sentence's decision step, cross-entropy, clip, Adam:
    four steps' losses and the test loss after them agree to float64 rounding."""
    (tiny, test_tiny), (ref, test_ref) = _agreement("tinybptt", cell), _agreement("torch", cell)
    np.testing.assert_allclose(tiny + [test_tiny], ref + [test_ref], rtol=1e-9)
    assert tiny[-1] != tiny[0]  # it trained


@pytest.mark.skipif(not (HAVE_TORCH and HAVE_JAX), reason="torch and jax needed")
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_agreement_loop_of_jax_trains_like_torch(cell):
    (got, test), (ref, test_ref) = _agreement("jax", cell), _agreement("torch", cell)
    np.testing.assert_allclose(got + [test], ref + [test_ref], rtol=1e-5)


def test_agreement_batches_are_padded_to_one_length_and_drawn_from_the_pool():
    task = AgreementTask(0, SMALL_AGREEMENT)
    rng = np.random.default_rng(3)
    ids, positions, labels = task.batch(rng)
    pool_ids, pool_pos, pool_labels = task.pool
    assert ids.shape == (pool_ids.shape[0], 6) and ids.dtype == np.int64
    assert task.test_set()[0].shape[0] == pool_ids.shape[0]
    assert pool_ids.shape[0] == max(pool_pos.max(), task.test_set()[1].max()) + 1  # the longest prefix of either
    for b in range(6):  # each column is a pool sentence: its prefix, then padding after the decision step
        k = next(j for j in range(pool_ids.shape[1]) if np.array_equal(pool_ids[:, j], ids[:, b]))
        assert positions[b] == pool_pos[k] and labels[b] == pool_labels[k]
        assert np.all(ids[positions[b] + 1:, b] == 0) and np.all(ids[:positions[b] + 1, b] > 0)


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


def _row(cell, contender, cpu, wall=None, task="adding"):
    return {"task": task, "cell": cell, "contender": contender, "ok": True, "cpu_s": cpu, "wall_s": wall or cpu,
            "steps": 10, "test_metric": 0.1}


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


def test_recurrent_kernels_alone_are_a_share_of_the_faster_peers_step():
    tiny = dict(_row("gru", "tinybptt", 2.0, task="agreement"), kernel_cpu_s=0.3, kernel_steps=5, cpus=[1])
    rows = [_row("gru", "tinybptt", 2.0), _row("gru", "torch", 8.0),
            tiny, _row("gru", "torch", 4.0, task="agreement"), _row("gru", "jax", 3.0, task="agreement")]
    # 60 ms per step in the kernels against jax's 300 ms per step (its 10 steps took 3 s)
    assert kernel_ratios(rows, "agreement") == {"gru": pytest.approx(0.2)}
    assert kernel_ratios(rows) == {}  # the adding problem's tinybptt row has no kernel steps
    assert kernel_ratios([dict(tiny, cpus=[0, 1])] + rows[3:], "agreement") == {}  # two threads: CPU time adds up
    text = train_tables({"rows": rows, "notes": []})
    agreement = text.split("Training loop, subject-verb agreement")[1]
    assert "0.20x" in agreement.split("\n\n")[0] and "over 5 training steps taken after the timed ones" in text


def test_each_task_has_its_own_table_and_ratios():
    rows = [_row("gru", "tinybptt", 2.0), _row("gru", "torch", 8.0),
            _row("gru", "tinybptt", 3.0, task="agreement"), _row("gru", "torch", 4.0, task="agreement")]
    assert train_ratios(rows)["gru"][0] == 0.25
    assert train_ratios(rows, task="agreement")["gru"][0] == 0.75
    profile = [{"cell": "gru", "ftz": False, "floor_ms": 120.0, "floor_gflops": 98.0}]
    text = train_tables({"rows": rows, "notes": [], "profile": profile})
    adding, agreement = text.split("Training loop, subject-verb agreement")
    assert "Training loop, adding problem" in adding and "0.25x (torch)" in adding and "PASS" in adding
    assert "0.75x (torch)" in agreement.split("\n\n")[0] and "FAIL" in agreement
    assert "test MSE" in adding and "test cross-entropy" in agreement
    # the products' floor comes from the adding problem's profile: 120 ms of torch's 800 ms step there
    assert "0.15x" in adding.split("\n\n")[0] and "0.15x" not in agreement.split("\n\n")[0]


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
                 "--train-kernel-steps", "3", "--quiet", "--json", str(js)])
    assert code == 0
    data = json.loads(js.read_text())["train"]
    by = {(r["task"], r["contender"]): r for r in data["rows"]}
    assert set(by) == {(t, c) for t in ("adding", "agreement") for c in ("tinybptt", "torch", "tinybptt-ftz")}
    assert all(r["ok"] and r["steps"] == 4 and r["rounds"] == 2 for r in by.values())
    for task in ("adding", "agreement"):
        assert by[task, "tinybptt"]["first_loss"] == pytest.approx(by[task, "torch"]["first_loss"], rel=1e-5)
    assert by["agreement", "torch"]["test_metric"] == pytest.approx(by["agreement", "tinybptt"]["test_metric"],
                                                                   rel=1e-3)  # the test cross-entropy
    assert len(set(tuple(r["cpus"]) for r in by.values())) == 1 and len(by["agreement", "torch"]["cpus"]) == 1
    for task in ("adding", "agreement"):  # the recurrent kernels timed after the timed steps: a part of each step
        tiny = by[task, "tinybptt"]
        assert tiny["kernel_steps"] == 3 and 0 < tiny["kernel_cpu_s"] / 3 < tiny["cpu_s"] / tiny["steps"]
        assert "kernel_steps" not in by[task, "torch"] and "kernel_steps" not in by[task, "tinybptt-ftz"]
    assert [p["ftz"] for p in data["profile"]] == [False, True]
    # after a warm-up step the RNN's output and its gradient trace, both (T, B, H), come back from the
    # workspace at every step
    assert all(p["workspace"] == {"reused": 2, "made": 0} for p in data["profile"])
    out = capsys.readouterr().out
    assert "workspace arrays: reused / made" in out
    assert "Training loop, adding problem" in out and "Where a tinybptt training step's time goes" in out
    assert "Training loop, subject-verb agreement (T=" in out and "test cross-entropy (tinybptt/torch/jax)" in out

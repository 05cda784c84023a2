"""Smoke and correctness tests of the benchmark suite (the tinybptt.bench package).

No speed is asserted here, ever: timings are the benchmark's business.  What
is tested is that every contender computes the same thing (the NumPy baseline,
which calls the reference kernels, against finite differences and against
PyTorch's autograd; the JAX,
PyTorch-op-loop and tinybptt contenders against PyTorch), that the bookkeeping
(agreement check, ratios, targets, FLOP count, repeat planning, kernel timer)
is right, and that the command line runs end to end on a tiny config.
"""
import importlib.util
import json

import numpy as np
import pytest

from tinybptt import bench

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_JAX = importlib.util.find_spec("jax") is not None
SHAPE = (6, 3, 5, 4)  # T, B, I, H: small enough for finite differences


def _nn_available():
    try:
        import tinybptt.nn as tnn
        return all(hasattr(tnn, c.upper()) for c in bench.CELLS)
    except ImportError:
        return False


def _loss_and_grads(contender, cell, shape=SHAPE, dtype="float64", seed=3):
    x, params = bench.make_problem(cell, *shape, dtype=dtype, seed=seed)
    r = bench.make_runner(contender, cell, x, params)
    h = r.forward()
    r.backward(h)
    return r.loss_value(h), {n: np.array(g, dtype=np.float64) for n, g in r.grads().items()}


def _torch_reference(cell, shape=SHAPE, dtype="float64", seed=3):
    """Loss and gradients straight from torch.nn (written here, not through bench's runner)."""
    import torch
    x, params = bench.make_problem(cell, *shape, dtype=dtype, seed=seed)
    T, B, I, H = shape
    mod = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](I, H, dtype=getattr(torch, dtype))
    with torch.no_grad():
        for name, p in mod.named_parameters():
            p.copy_(torch.from_numpy(params[name]))
    out = mod(torch.from_numpy(x))[0]
    loss = (out ** 2).sum()
    loss.backward()
    return loss.item(), {n: p.grad.numpy().astype(np.float64) for n, p in mod.named_parameters()}


def _assert_same(got, want, rtol):
    loss, grads = got
    wloss, wgrads = want
    assert loss == pytest.approx(wloss, rel=rtol)
    for n in bench.PARAM_NAMES:
        scale = np.max(np.abs(wgrads[n]))
        assert scale > 0, n
        np.testing.assert_allclose(grads[n], wgrads[n], rtol=0, atol=rtol * scale, err_msg=n)


# --------------------------------------------------------------------------- the peers compute the workload


def _numpy_loss(cell, x, params):
    r = bench.NumpyRunner(cell, x, params)
    return r.forward()


@pytest.mark.parametrize("cell", bench.CELLS)
def test_numpy_baseline_matches_finite_differences(cell):
    x, params = bench.make_problem(cell, *SHAPE, dtype="float64", seed=1)
    runner = bench.NumpyRunner(cell, x, params)
    loss = runner.forward()
    assert loss > 0
    runner.backward(loss)
    grads = runner.grads()
    rng = np.random.default_rng(0)
    eps = 1e-6
    for name in bench.PARAM_NAMES:
        p = params[name]
        assert grads[name].shape == p.shape
        for _ in range(4):
            idx = tuple(int(rng.integers(0, s)) for s in p.shape)
            old = p[idx]
            p[idx] = old + eps
            up = _numpy_loss(cell, x, params)
            p[idx] = old - eps
            down = _numpy_loss(cell, x, params)
            p[idx] = old
            numeric = (up - down) / (2 * eps)
            assert grads[name][idx] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (name, idx)


def test_numpy_baseline_calls_the_reference_kernels(monkeypatch):
    """The baseline has no cell formulas of its own: it runs kernels.numpy.seq_forward/seq_backward."""
    from tinybptt.kernels import numpy as ref
    calls = []
    for fn in ("seq_forward", "seq_backward"):
        orig = getattr(ref, fn)
        monkeypatch.setattr(ref, fn, lambda *a, _f=orig, _n=fn, **k: (calls.append((_n, a[0])), _f(*a, **k))[1])
    x, params = bench.make_problem("rnn", *SHAPE, dtype="float64")
    r = bench.NumpyRunner("rnn", x, params)
    r.backward(r.forward())
    assert calls == [("seq_forward", "rnn_tanh"), ("seq_backward", "rnn_tanh")]


def test_make_problem_is_deterministic_and_torch_shaped():
    x1, p1 = bench.make_problem("gru", 4, 2, 3, 5, dtype="float32", seed=7)
    x2, p2 = bench.make_problem("gru", 4, 2, 3, 5, dtype="float32", seed=7)
    assert x1.dtype == np.float32 and x1.shape == (4, 2, 3)
    np.testing.assert_array_equal(x1, x2)
    assert p1["weight_ih_l0"].shape == (15, 3) and p1["weight_hh_l0"].shape == (15, 5)
    assert p1["bias_ih_l0"].shape == (15,)
    for n in bench.PARAM_NAMES:
        np.testing.assert_array_equal(p1[n], p2[n])
        assert np.all(np.abs(p1[n]) <= 1 / np.sqrt(5))


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
@pytest.mark.parametrize("cell", bench.CELLS)
@pytest.mark.parametrize("contender", ["numpy", "torch", "torch-ops"])
def test_numpy_and_torch_contenders_match_torch_autograd(cell, contender):
    _assert_same(_loss_and_grads(contender, cell), _torch_reference(cell), rtol=1e-10)


@pytest.mark.skipif(not (HAVE_TORCH and HAVE_JAX), reason="torch and jax needed")
@pytest.mark.parametrize("cell", bench.CELLS)
def test_jax_contender_matches_torch(cell):
    _assert_same(_loss_and_grads("jax", cell), _torch_reference(cell), rtol=1e-10)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
@pytest.mark.parametrize("cell", bench.CELLS)
def test_float32_contenders_agree_with_float64_reference(cell):
    want = _torch_reference(cell)
    _assert_same(_loss_and_grads("numpy", cell, dtype="float32"), want, rtol=1e-4)


@pytest.mark.skipif(not (_nn_available() and HAVE_TORCH), reason="tinybptt.nn layers or torch missing")
@pytest.mark.parametrize("cell", bench.CELLS)
@pytest.mark.parametrize("contender", ["tinybptt:sequence", "tinybptt:cell", "tinybptt:ops", "tinybptt:numpy"])
def test_tinybptt_contenders_match_torch(cell, contender):
    import tinybptt
    prev = tinybptt.get_backend()
    try:
        _assert_same(_loss_and_grads(contender, cell), _torch_reference(cell), rtol=1e-10)
    finally:
        tinybptt.set_backend(prev)


# --------------------------------------------------------------------------- bookkeeping


def test_workload_flops_by_hand():
    # medium LSTM: forward 2*T*B*G*H*(I+H) = 2*100*32*1024*512; backward 2*100*32*1024*(256+512)
    assert bench.workload_flops("lstm", 100, 32, 256, 256) == 3355443200 + 5033164800
    # RNN, G = 1: 2*10*2*3*(4+3) + 2*10*2*3*(4+6)
    assert bench.workload_flops("rnn", 10, 2, 4, 3) == 840 + 1200


def test_parse_config():
    assert bench.parse_config("small") == ("small", (100, 16, 64, 64))
    assert bench.parse_config("20x3x5x7") == ("20x3x5x7", (20, 3, 5, 7))
    for bad in ("huge", "1x2x3", "0x1x1x1", "axbxcxd"):
        with pytest.raises(ValueError, match="unknown config"):
            bench.parse_config(bad)


def test_plan_reps():
    assert bench.plan_reps(0.001, repeat=20, budget=2.0) == 20  # capped by repeat
    assert bench.plan_reps(0.5, repeat=20, budget=2.0, min_repeat=3) == 4  # capped by the budget
    assert bench.plan_reps(1.5, repeat=20, budget=2.0, min_repeat=3) == 3  # at least min_repeat
    assert bench.plan_reps(30.0, repeat=20, budget=2.0, max_iter_s=20.0) == 0  # too slow: warm-up only


def test_add_medians():
    res = {"fwd_samples": [1.0, 9.0, 2.0], "bwd_samples": [3.0, 3.0, 30.0], "total_samples": [4.0, 12.0, 32.0]}
    bench.add_medians(res)
    assert (res["fwd_ms"], res["bwd_ms"], res["total_ms"], res["reps"]) == (2.0, 3.0, 12.0, 3)
    bench.add_medians(res, stat="min")
    assert (res["fwd_ms"], res["total_ms"], res["total_median_ms"]) == (1.0, 4.0, 12.0)


def _rec(contender, total, loss=1.0, config="small", norms=1.0):
    return {"cell": "lstm", "config": config, "shape": list(bench.CONFIGS[config]), "dtype": "float32",
            "threads": 1, "contender": contender, "status": "ok", "total_ms": total, "loss": loss,
            "grad_norms": {n: norms for n in bench.PARAM_NAMES}, "reps": 5}


def test_agreement_check_excludes_a_peer_computing_something_else():
    results = [_rec("tinybptt:sequence", 4.0), _rec("tinybptt:ops", 30.0), _rec("torch", 10.0),
               _rec("jax", 1.0, loss=1.5),  # fastest, but a different loss: must not be the best peer
               _rec("torch-ops", 20.0), _rec("numpy", 8.0, norms=1.2)]  # gradients differ
    bench.agree_check(results)
    by = {r["contender"]: r for r in results}
    assert by["jax"]["agree"] is False and by["numpy"]["agree"] is False
    assert by["torch"]["agree"] is True and by["tinybptt:sequence"]["agree"] is True
    (row,) = bench.summarize(results)
    assert row["best_peer"] == "torch"
    assert row["seq_ratio"] == pytest.approx(0.4)
    assert row["seq_pass"] is True  # 0.4 <= 0.8
    assert row["ops_ratio"] == pytest.approx(1.5)  # 30 / 20 (torch-ops)
    assert row["ops_pass"] is False
    notes = bench.notes_text(results, [])
    assert "jax" in notes and "excluded from best peer" in notes


def test_large_config_target_is_looser():
    results = [_rec("tinybptt:sequence", 10.5, config="large"), _rec("torch", 10.0, config="large")]
    bench.agree_check(results)
    (row,) = bench.summarize(results)
    assert row["seq_target"] == 1.1 and row["seq_pass"] is True
    results = [_rec("tinybptt:sequence", 10.5), _rec("torch", 10.0)]
    bench.agree_check(results)
    (row,) = bench.summarize(results)
    assert row["seq_target"] == 0.8 and row["seq_pass"] is False


def test_tables_render_text_and_markdown():
    results = [_rec("tinybptt:sequence", 4.0), _rec("torch", 10.0)]
    bench.agree_check(results)
    text, _ = bench.grid_tables(results)
    assert "0.40x" in text and "PASS" in text
    md, _ = bench.grid_tables(results, md=True)
    tables = [[ln for ln in block.splitlines() if ln.startswith("|")] for block in md.split("\n\n")]
    tables = [t for t in tables if t]
    assert len(tables) == 2  # times, then ratios and targets
    for lines in tables:
        assert len(lines) == 3 and all(ln.count("|") == lines[0].count("|") for ln in lines)


def test_thread_env_pins_every_library():
    env = bench.thread_env(1)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert env[k] == "1"
    assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]
    assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"]
    assert bench.thread_env(2)["OMP_NUM_THREADS"] == "2"


def test_memory_profile_scales_with_T():
    """The NumPy baseline keeps at least its LSTM gate activations (T*B*4H floats), linear in T."""
    got = []
    for T in (20, 40):
        x, params = bench.make_problem("lstm", T, 4, 8, 16, dtype="float64")
        m = bench.memory_profile(bench.NumpyRunner("lstm", x, params))
        assert m["saved_bytes"] >= T * 4 * 4 * 16 * 8
        assert m["peak_bytes"] >= m["saved_bytes"]
        got.append(m["saved_bytes"])
    assert 1.7 < got[1] / got[0] < 2.3


@pytest.mark.skipif(not _nn_available(), reason="tinybptt.nn layers missing")
def test_kernel_timer_counts_calls_and_restores():
    import tinybptt
    from tinybptt import kernels
    if "c" not in tinybptt.available_backends():
        pytest.skip("C backend not built")
    prev = tinybptt.get_backend()
    try:
        x, params = bench.make_problem("rnn", 5, 2, 3, 4, dtype="float32")
        r = bench.make_runner("tinybptt:sequence", "rnn", x, params)
        original = kernels.c_backend.seq_forward
        with bench.KernelTimer(kernels.c_backend) as kt:
            assert kernels.c_backend.seq_forward is not original
            kt.phase = "fwd"
            h = r.forward()
            kt.phase = "bwd"
            r.backward(h)
        assert kernels.c_backend.seq_forward is original
        assert kt.calls == {"fwd": 1, "bwd": 1}  # one seq_forward, one seq_backward
        assert kt.seconds["fwd"] > 0 and kt.seconds["bwd"] > 0
        r = bench.make_runner("tinybptt:cell", "rnn", x, params)
        with bench.KernelTimer(kernels.c_backend) as kt:
            h = r.forward()
            kt.phase = "bwd"
            r.backward(h)
        assert kt.calls == {"fwd": 5, "bwd": 5}  # one step kernel per time step each way
    finally:
        tinybptt.set_backend(prev)


# --------------------------------------------------------------------------- end to end


def test_cli_runs_a_tiny_grid(tmp_path):
    js, md = tmp_path / "out.json", tmp_path / "out.md"
    modes = ["--modes", "sequence", "--backends", "c"] if _nn_available() else ["--backends", ""]
    code = bench.main(["--cells", "rnn", "--configs", "tiny", "--peers", "numpy", "--repeat", "1", "--rounds", "1",
                       "--quiet", "--json", str(js), "--markdown", str(md)] + modes)
    assert code == 0
    data = json.loads(js.read_text())
    assert data["command"].startswith("tinybptt bench")
    assert "cpu" in data["machine"] or "cores" in data["machine"]
    recs = {r["contender"]: r for r in data["results"]}
    assert recs["numpy"]["status"] == "ok" and recs["numpy"]["reps"] == 1
    assert recs["numpy"]["total_ms"] > 0
    assert "PASS" not in md.read_text()  # the NumPy baseline is never the peer a target is judged against
    if _nn_available():
        assert recs["tinybptt:sequence"]["status"] == "ok"
        assert recs["tinybptt:sequence"]["agree"] is True
        assert recs["tinybptt:sequence"]["kernel_calls"] == 2
    text = md.read_text()
    assert "RNN, float32, 1 thread" in text and "| tiny |" in text


@pytest.mark.skipif(not _nn_available(), reason="tinybptt.nn layers missing")
def test_cli_check_passes_on_agreeing_contenders(tmp_path, capsys):
    js = tmp_path / "check.json"
    code = bench.main(["--check", "--cells", "gru", "--peers", "numpy", "--modes", "sequence", "--backends", "c",
                       "--quiet", "--json", str(js)])
    assert code == 0
    rows = json.loads(js.read_text())["check"]
    compared = [r for r in rows if r["status"] == "ok"]
    assert compared and all(r["passed"] for r in compared)
    assert {r["ref"] for r in compared} == {"numpy"}
    printed = capsys.readouterr().out
    assert "e-1" in printed and " ok" in printed and "FAIL" not in printed


def test_gc_protocol_pauses_the_collector_and_restores_it():
    """timeit's convention: no collection on entry or inside the batch, state restored."""
    import gc

    starts = []

    def count(phase, info):
        if phase == "start" and info["generation"] == 2:
            starts.append(1)

    gc.callbacks.append(count)
    try:
        assert gc.isenabled()
        with bench.gc_protocol() as gcp:
            n_after_enter = len(starts)
            assert not gc.isenabled()
            for _ in range(3):
                gcp.before_run()
            assert len(starts) == n_after_enter  # no collection per run
        assert gc.isenabled()
        assert n_after_enter == 0  # a full collection would leave the batch's first runs cold

        starts.clear()
        with bench.gc_protocol(each_run=True) as gcp:
            for _ in range(3):
                gcp.before_run()
        assert len(starts) == 3  # the oldest protocol: one per run

        gc.disable()  # a caller who had it off keeps it off
        try:
            with bench.gc_protocol():
                pass
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        gc.callbacks.remove(count)


def test_timed_runs_warm_up_inside_the_batch_untimed():
    """``warm`` runs come first, with the collector already off, and are not among the samples."""
    import gc

    from tinybptt.bench import timing

    class Counting:
        def __init__(self):
            self.gc_on = []

        def step(self):
            self.gc_on.append(gc.isenabled())
            k = len(self.gc_on)
            return 0.001 * k, 0.002 * k, 0.003 * k, None

    r = Counting()
    res = timing.timed_runs(r, 3, warm=2)
    assert r.gc_on == [False] * 5
    assert res["total_samples"] == pytest.approx([9.0, 12.0, 15.0])  # runs 3-5, in ms
    assert res["fwd_samples"] == pytest.approx([3.0, 4.0, 5.0])
    assert gc.isenabled()


def test_measure_row_interleaves_rounds_and_settles_only_when_asked(monkeypatch):
    """Each round visits every contender in order; with settle_s a pause precedes each batch."""
    calls, sleeps = [], []

    class Pool:  # stands in for WorkerPool: answers like a worker would
        def request(self, family, req, timeout=None):
            calls.append((req["contender"], req.get("reps")))
            n = req.get("reps") or 2
            return {"ok": True, "warmup_s": 0.01, "fwd_samples": [1.0] * n, "bwd_samples": [1.0] * n,
                    "total_samples": [2.0] * n}

        def broadcast(self, req):
            pass

    monkeypatch.setattr(bench.timing.time, "sleep", lambda s: sleeps.append(s))
    base = {"op": "measure", "cell": "rnn", "shape": [2, 1, 2, 2], "dtype": "float32"}
    out = bench.measure_row(Pool(), ["tinybptt:sequence", "torch"], base, rounds=3, timeout=1)
    assert [c for c, _ in calls] == ["tinybptt:sequence", "torch"] * 3
    assert [r for _, r in calls] == [None, None, 2, 2, 2, 2]  # later rounds repeat round 1's count
    assert sleeps == [] and out["torch"]["reps"] == 6
    calls.clear()
    bench.measure_row(Pool(), ["tinybptt:sequence", "torch"], base, rounds=2, timeout=1, settle_s=0.2)
    assert sleeps == [0.2] * 4


def test_without_peers_the_bench_says_so_and_judges_nothing(tmp_path, monkeypatch, capsys):
    """No torch and no JAX (simulated): a message saying how to install them, no PASS/FAIL, no ratio."""
    from tinybptt.bench import grid
    monkeypatch.setattr(grid, "peer_available", lambda peer: peer == "numpy")
    md = tmp_path / "out.md"
    modes = ["--modes", "sequence", "--backends", "c"] if _nn_available() else ["--backends", ""]
    code = bench.main(["--cells", "rnn", "--configs", "tiny", "--repeat", "1", "--rounds", "1", "--quiet",
                       "--no-split", "--markdown", str(md)] + modes)
    assert code == 0
    captured = capsys.readouterr()
    for text in (captured.out, md.read_text()):
        assert "No peer to compare with: neither torch nor jax is installed" in text
        assert 'pip install "tinybptt[bench]"' in text and "torch==2.13.0" in text
        assert "PASS" not in text and "FAIL" not in text
    assert "No peer" in captured.err  # said at the start too, before the timings
    assert "peer torch skipped: torch is not installed" in captured.out


def test_no_peer_message_only_without_an_external_peer():
    assert bench.no_peer_message(["torch", "numpy"]) is None
    assert bench.no_peer_message(["torch-ops"]) is None
    assert "No peer" in bench.no_peer_message(["numpy"])


def test_bench_text_names_no_outside_document():
    """What the suite prints and ships speaks for itself: every document it names (README.md,
    RESULTS.md, ...) is in the repository, and it cites no issue numbers."""
    import pathlib
    import re
    root = pathlib.Path(bench.__file__).parent
    repo = root.parent.parent
    files = list(root.glob("*.py"))
    bench_dir = repo / "benchmarks"
    if bench_dir.is_dir():
        files += [f for f in bench_dir.iterdir() if f.suffix in (".py", ".md", ".sh")]
    known = {p.name for p in repo.rglob("*.md")}
    problems = []
    for f in files:
        text = f.read_text()
        problems += ["%s names %s" % (f.name, m) for m in set(re.findall(r"\b[A-Z][A-Z_-]+\.md\b", text))
                     if m.split("/")[-1] not in known]
        problems += ["%s: %r" % (f.name, m) for m in re.findall(r"\bissues?[- ]?#?\d+", text, re.IGNORECASE)]
        problems += ["%s: a path outside the repository" % f.name for _ in re.findall(r"\.\./shared|/work/", text)]
    assert problems == []


def test_progress_writes_lines_when_no_bar_can_be_shown():
    import io

    from tinybptt.display import Progress
    out = io.StringIO()  # not a terminal: no live bar
    with Progress(2, stream=out, lines=True) as p:
        p.update(desc="rnn tiny")
        p.update(desc="rnn small")
    assert out.getvalue() == "[1/2] rnn tiny\n[2/2] rnn small\n"
    quiet = io.StringIO()
    with Progress(2, stream=quiet) as p:
        p.update(desc="x")
    assert quiet.getvalue() == "" and p.n == 1


def test_parse_cpus():
    from tinybptt.bench.workers import parse_cpus
    assert parse_cpus("1") == [1]
    assert parse_cpus("0-2,5") == [0, 1, 2, 5]
    with pytest.raises(ValueError):
        parse_cpus(",")

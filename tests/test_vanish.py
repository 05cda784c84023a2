"""tinybptt vanish: end to end on small sizes; printed numbers == JSON numbers == independent computation."""
import json
import math
import re

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn
from tinybptt.apps import vanish


def _small(**kw):
    args = dict(cells=["rnn", "lstm", "gru"], T=12, H=6, I=3, seed=0)
    args.update(kw)
    return vanish.run(progress=False, **args)


def test_run_measures_all_cells_against_independent_backprop():
    res = _small()
    assert set(res["cells"]) == {"rnn", "lstm", "gru"}
    T = 12
    for kind, e in res["cells"].items():
        p = e["measured"]
        f = p["log10_grad_norm"]
        assert p["steps"] == list(range(-1, T)) and e["wrt"] == "hidden" and e["quantity"] == "||dL/dh_t||"
        assert len(f) == T + 1 and f[T] == pytest.approx(0.0, abs=1e-12)  # |dL/dh_{T-1}| = |u| = 1
        # independent: rebuild the same layer and input, push u back with plain NumPy
        layer = vanish.build_cell(kind, 3, 6, np.float64, seed=0)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((T, 1, 3))
        u = rng.standard_normal((1, 6))
        u /= np.linalg.norm(u)
        spec = tb.inspect.cell_from_layer(layer)
        tr = tb.inspect.run_cell(spec, x)
        v = np.zeros(spec.state_dim)
        v[:6] = u[0]
        for t in range(T - 1, -1, -1):  # J_t of time step t takes dL/dh_t back to dL/dh_{t-1}: entry t
            v = tb.inspect.step_jacobian(tr, t, 0).T @ v
            assert f[t] == pytest.approx(math.log10(np.linalg.norm(v[:6])), abs=1e-9)
        s = p["summary"]
        assert s["log10_ratio"] == pytest.approx(f[0] - f[T], abs=1e-12)
        assert s["decay_per_step"] == pytest.approx(10 ** ((f[0] - f[T]) / T))
        assert s["source"] == "float" and s["underflow_steps"] == []
    assert res["cells"]["rnn"]["measured"]["jacobian"]["log10_bound"] is not None
    assert res["cells"]["lstm"]["measured"]["log10_c_grad_norm"] is not None


def test_default_cells_vanish_and_scaled_relu_explodes():
    res = _small(cells=["rnn"], T=40, H=16)
    assert res["cells"]["rnn"]["measured"]["summary"]["log10_ratio"] < -5
    res = _small(cells=["rnn"], T=30, H=16, init="scaled", radius=1.5, nonlinearity="relu")
    assert res["cells"]["rnn"]["measured"]["summary"]["log10_ratio"] > 1


def test_scaled_init_sets_spectral_radius_of_every_gate_block():
    nn.manual_seed(0)
    layer = vanish.build_cell("gru", 3, 8, np.float64, init="scaled", radius=1.7)
    W = layer.weight_hh_l0.data
    for g in range(3):
        assert tb.inspect.spectral_radius(W[g * 8:(g + 1) * 8]) == pytest.approx(1.7)
    layer = vanish.build_cell("lstm", 3, 5, np.float64, init="orthogonal")
    blk = layer.weight_hh_l0.data[5:10]
    np.testing.assert_allclose(blk @ blk.T, np.eye(5), atol=1e-12)


def test_clip_reports_norm_before_and_after():
    res = _small(cells=["rnn"], T=20, H=8, init="scaled", radius=1.5, clip=0.25)
    c = res["cells"]["rnn"]["measured"]["clip"]
    assert c["norm_before"] == pytest.approx(res["cells"]["rnn"]["measured"]["param_grad_norm"], rel=1e-9)
    assert c["norm_before"] > 0.25 and c["norm_after"] == pytest.approx(0.25, rel=1e-4)


def test_float32_underflow_falls_back_to_log_space():
    res = _small(cells=["rnn"], T=300, H=8, dtype="float32")
    p = res["cells"]["rnn"]["measured"]
    assert p["log10_grad_norm"][0] is None  # exactly zero in float32
    assert p["log10_grad_norm_logspace"][0] is not None and p["log10_grad_norm_logspace"][0] < -45
    s = p["summary"]
    assert s["source"] == "log-space" and s["underflow_steps"]
    assert s["log10_ratio"] == pytest.approx(p["log10_grad_norm_logspace"][0] - p["log10_grad_norm_logspace"][300])
    text = vanish.render(res, unicode=False, color=False)
    assert "log-space" in text and "exactly 0" in text


def _table_rows(text):
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^(rnn \(tanh\)|lstm|gru|attention)\s+(\|\|dL/d[hx]_t\|\|)\s+(\S.*)$", line)
        if m and re.search(r"\de[+-]\d", line):
            rows[m.group(1)] = [m.group(2)] + m.group(3).split()
    return rows


def test_cli_prints_table_and_json_with_the_same_numbers(tmp_path, capsys):
    jpath = tmp_path / "v.json"
    rc = vanish.main(["--T", "16", "--H", "5", "--I", "3", "--json", str(jpath), "--quiet", "--no-color"])
    assert rc == 0
    out = capsys.readouterr().out
    data = json.loads(jpath.read_text())
    assert data["config"]["T"] == 16 and data["config"]["H"] == 5 and data["config"]["cells"] == ["rnn", "lstm", "gru"]
    rows = _table_rows(out)
    assert set(rows) == {"rnn (tanh)", "lstm", "gru"}
    steps = vanish.shown_steps(16)
    assert steps == [15, 14, 12, 8, 4, 0, -1]
    assert "t = 0..15 (out[t] is h_t); t = -1 is the initial state" in out
    assert re.search(r"cell\s+quantity\s+t=15\s+t=14\s+t=12\s+t=8\s+t=4\s+t=0\s+t=-1\s", out)
    for kind, name in (("rnn", "rnn (tanh)"), ("lstm", "lstm"), ("gru", "gru")):
        p = data["cells"][kind]["measured"]
        quantity, vals = rows[name][0], rows[name][1:]
        assert quantity == "||dL/dh_t||" == data["cells"][kind]["quantity"]
        for k, t in enumerate(steps):
            assert float(vals[k]) == pytest.approx(10 ** p["log10_grad_norm"][t + 1], rel=6e-3)
        assert float(vals[len(steps)]) == pytest.approx(p["summary"]["ratio"], rel=6e-3)
        assert float(vals[len(steps) + 1]) == pytest.approx(p["summary"]["decay_per_step"], abs=1e-4)
    assert "text" in data and "gru" in data["text"]


def test_cli_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "v.png"
    assert vanish.main(["--T", "10", "--H", "4", "--cells", "rnn,gru", "--plot", str(png), "--quiet"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_trained_mode_measures_before_and_after(tmp_path):
    res = vanish.run(cells=["gru"], T=8, H=4, trained=True, train_steps=3, progress=False)
    e = res["cells"]["gru"]
    assert res["config"]["I"] == 2 and res["config"]["trained"]
    assert len(e["before"]["log10_grad_norm"]) == 9 and len(e["after"]["log10_grad_norm"]) == 9
    assert e["before"]["log10_grad_norm"] != e["after"]["log10_grad_norm"]  # the weights changed
    assert [h["step"] for h in e["training"]["history"]][-1] == 3
    text = vanish.render(res, unicode=False, color=False)
    assert "BEFORE" in text and "AFTER" in text and "test MSE" in text


def test_bad_arguments():
    with pytest.raises(ValueError):
        vanish.run(cells=["transformer"], T=5, H=3)
    assert vanish.main(["--cells", "rnn,nope", "--T", "5", "--quiet"]) == 2


# ------------------------------------------------------------------ the input view and attention


def _loss_of_input(model, kind, x, u):
    """L(x) = u . y_{T-1}(x) in float64, without building a graph (for finite differences)."""
    with tb.no_grad():
        out = model(tb.Tensor(x)) if kind == "attention" else model(tb.Tensor(x))[0]
        return float((out[-1] * tb.Tensor(u)).sum().item())


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "attention"])
def test_input_view_against_finite_differences(kind):
    T, H, I = 6, 4, 3
    res = vanish.run(cells=[kind], T=T, H=H, I=I, seed=3, wrt="input", progress=False)
    e = res["cells"][kind]
    p = e["measured"]
    assert e["wrt"] == p["wrt"] == "input" and e["quantity"] == "||dL/dx_t||"
    assert p["steps"] == list(range(-1, T)) and p["log10_grad_norm"][0] is None  # there is no x_{-1}
    model = vanish.build_cell(kind, I, H, np.float64, seed=3)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, 1, I))
    u = rng.standard_normal((1, H))
    u /= np.linalg.norm(u)
    eps = 1e-6
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        g[idx] = (_loss_of_input(model, kind, xp, u) - _loss_of_input(model, kind, xm, u)) / (2 * eps)
    for t in range(T):
        assert p["log10_grad_norm"][t + 1] == pytest.approx(math.log10(np.linalg.norm(g[t])), abs=1e-6)
        if kind != "attention":  # the float64 log-space recomputation agrees too
            assert p["log10_grad_norm_logspace"][t + 1] == pytest.approx(p["log10_grad_norm"][t + 1], abs=1e-9)
    assert (p["jacobian"] is None) == (kind == "attention")


def test_attention_matches_inspect_connectivity():
    T, H, I = 9, 6, 4
    res = vanish.run(cells=["attention"], T=T, H=H, I=I, seed=1, progress=False)  # wrt auto: input for attention
    p = res["cells"]["attention"]["measured"]
    model = vanish.build_cell("attention", I, H, np.float64, seed=1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, 1, I))
    u = rng.standard_normal((1, H))
    u /= np.linalg.norm(u)
    c = tb.inspect.connectivity(lambda xt: (model(xt)[-1] * tb.Tensor(u)).sum(axis=1, keepdims=True), x, cls=0)
    np.testing.assert_allclose(p["log10_grad_norm"][1:], c.log10, rtol=0, atol=1e-12)


def test_the_contrast_rnn_falls_attention_stays_flat():
    res = vanish.run(cells=["rnn", "gru", "attention"], T=60, H=16, I=4, wrt="input", progress=False)
    rnn = res["cells"]["rnn"]["measured"]["log10_grad_norm"][1:]
    att = res["cells"]["attention"]["measured"]["log10_grad_norm"][1:]
    assert rnn[-1] - rnn[0] > 8  # many orders of magnitude from the last step to the first
    assert max(att[:-1]) - min(att[:-1]) < 1.5  # flat over distance (t = T-1 also reads its own query)
    assert res["cells"]["gru"]["wrt"] == "input"
    mixed = vanish.run(cells=["rnn", "attention"], T=10, H=4, I=3, progress=False)
    assert mixed["cells"]["rnn"]["wrt"] == "hidden" and mixed["cells"]["attention"]["wrt"] == "input"


def test_cli_input_view_table_json_and_plot(tmp_path, capsys):
    jpath, png = tmp_path / "v.json", tmp_path / "v.png"
    argv = ["--cells", "rnn,lstm,gru,attention", "--wrt", "input", "--T", "12", "--H", "5", "--I", "3",
            "--json", str(jpath), "--quiet", "--no-color"]
    if _has_matplotlib():
        argv += ["--plot", str(png)]
    assert vanish.main(argv) == 0
    out = capsys.readouterr().out
    data = json.loads(jpath.read_text())
    rows = _table_rows(out)
    assert set(rows) == {"rnn (tanh)", "lstm", "gru", "attention"}
    steps = vanish.shown_steps(12, initial=False)
    assert steps == [11, 10, 9, 6, 3, 0] and "t=-1" not in out.split("first/last")[0]
    for kind, name in (("rnn", "rnn (tanh)"), ("lstm", "lstm"), ("gru", "gru"), ("attention", "attention")):
        e = data["cells"][kind]
        assert rows[name][0] == "||dL/dx_t||" == e["quantity"] and e["wrt"] == "input"
        for k, t in enumerate(steps):
            assert float(rows[name][1 + k]) == pytest.approx(10 ** e["measured"]["log10_grad_norm"][t + 1], rel=6e-3)
    assert "no hidden chain" in out and data["config"]["wrt"] == "input"
    if _has_matplotlib():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_cannot_be_trained_and_bad_wrt(capsys):
    assert vanish.main(["--cells", "attention", "--trained", "--T", "5", "--quiet"]) == 2
    assert "attention" in capsys.readouterr().err
    with pytest.raises(ValueError):
        vanish.run(cells=["rnn"], T=5, H=3, wrt="output")


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True

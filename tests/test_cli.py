"""The tinybptt command: --help texts, dispatch, graph and train sub-commands, python -m tinybptt."""
import json
import subprocess
import sys

import pytest

import tinybptt as tb
from tinybptt.apps import cli


@pytest.mark.parametrize("cmd, words", [
    (["--help"], ["vanish", "train", "graph", "agreement", "reproduce", "bench", "examples"]),
    (["vanish", "--help"], ["--cells", "--init", "--radius", "--forget-bias", "--clip", "--trained", "--plot", "--json"]),
    (["train", "--help"], ["--task", "--cell", "--steps", "--clip", "--lr", "--json", "--eval-every"]),
    (["graph", "--help"], ["--cell", "--out", "--table"]),
    (["agreement", "--help"], ["--models", "--steps", "--sentence", "--json", "--plot", "connectivity"]),
    (["reproduce", "--help"], ["--list", "--seed", "--json", "--plot", "adding", "cliff"]),
])
def test_help(cmd, words, capsys):
    try:
        rc = cli.main(cmd)
    except SystemExit as exc:  # argparse exits after printing help
        rc = exc.code
    assert rc == 0
    out = capsys.readouterr().out
    for w in words:
        assert w in out


def test_no_command_and_unknown_command(capsys):
    assert cli.main([]) == 2
    assert "vanish" in capsys.readouterr().out
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_graph_writes_dot(tmp_path, capsys):
    out = tmp_path / "g.dot"
    assert cli.main(["graph", "--cell", "gru", "--T", "3", "--H", "2", "--out", str(out), "--table"]) == 0
    src = out.read_text()
    assert src.startswith("digraph") and "gru.l0 t=2" in src and "no-path" in src
    assert "status" in capsys.readouterr().out  # the walk table


def test_graph_svg_without_graphviz_falls_back_to_dot(tmp_path, monkeypatch, capsys):
    from tinybptt.inspect import dot

    monkeypatch.setattr(dot.shutil, "which", lambda name: None)
    assert cli.main(["graph", "--T", "2", "--out", str(tmp_path / "g.svg")]) == 0
    assert (tmp_path / "g.dot").exists() and not (tmp_path / "g.svg").exists()
    assert "not installed" in capsys.readouterr().out


def test_train_small_run_with_json(tmp_path, capsys):
    j = tmp_path / "t.json"
    rc = cli.main(["train", "--task", "adding", "--cell", "rnn,gru", "--T", "8", "--H", "4", "--steps", "4",
                   "--eval-every", "2", "--test-size", "16", "--batch", "4", "--json", str(j), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "test MSE" in out and "rnn (tanh)" in out and "gru" in out
    data = json.loads(j.read_text())
    assert [d["config"]["cell"] for d in data] == ["rnn", "gru"]
    for d in data:
        assert [h["step"] for h in d["history"]] == [0, 2, 4]
        assert len(d["grad_log10_before"]) == 9 and len(d["grad_log10_after"]) == 9
        assert d["baseline"] == pytest.approx(1 / 6)
        line = [l for l in out.splitlines() if l.startswith(("rnn (tanh) ", "gru ")) and "s" in l.split()[-1]]
        assert any(("%.4f" % d["final"]["test_loss"]) in l for l in line)


def test_train_bad_cell(capsys):
    assert cli.main(["train", "--cell", "lstm,xyz", "--steps", "1", "--quiet"]) == 2
    assert "unknown cell" in capsys.readouterr().err


def test_train_threads_apply_during_training_and_are_restored(monkeypatch, capsys):
    from tinybptt.apps import train as train_app
    seen = []

    def spy(**kwargs):
        seen.append(tb.get_num_threads())
        raise RuntimeError("stop here")

    monkeypatch.setattr(train_app, "train", spy)
    before = tb.get_num_threads()
    with pytest.raises(RuntimeError, match="stop here"):
        cli.main(["train", "--threads", "2", "--cell", "rnn", "--steps", "1", "--quiet"])
    assert seen == [2] and tb.get_num_threads() == before  # restored after an error too


def test_train_bad_thread_count_is_a_usage_error(capsys):
    before = tb.get_num_threads()
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--threads", "0", "--steps", "1", "--quiet"])
    assert exc.value.code == 2 and "--threads: set_num_threads: n must be between 1 and" in capsys.readouterr().err
    assert tb.get_num_threads() == before


def test_bench_missing_module(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tinybptt.bench", None)  # makes "from . import bench" raise ImportError
    assert cli.main(["bench"]) == 2
    assert "not available" in capsys.readouterr().err


def test_bench_dispatch(monkeypatch):
    import types

    seen = {}
    fake = types.ModuleType("tinybptt.bench")
    fake.main = lambda argv: seen.setdefault("argv", argv) and 0
    monkeypatch.setitem(sys.modules, "tinybptt.bench", fake)
    import tinybptt

    monkeypatch.setattr(tinybptt, "bench", fake, raising=False)
    assert cli.main(["bench", "--quick", "x"]) == 0
    assert seen["argv"] == ["--quick", "x"]


def test_python_dash_m():
    res = subprocess.run([sys.executable, "-m", "tinybptt", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "vanish" in res.stdout


@pytest.mark.parametrize("name", ["vanish", "train", "graph", "agreement", "reproduce"])
def test_every_app_has_build_parser_and_main(name, capsys):
    import argparse
    import importlib

    module = importlib.import_module("tinybptt.apps." + name)
    own = module.build_parser()
    assert isinstance(own, argparse.ArgumentParser) and own.prog == "tinybptt " + name
    given = argparse.ArgumentParser(prog="x")
    assert module.build_parser(given) is given  # adds its options to the parser it is handed
    assert cli.APPS[name][0] is module
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0 and "--" in capsys.readouterr().out


def test_bench_forwards_its_argv_to_tinybptt_bench_main(monkeypatch):
    import tinybptt.bench

    seen = []
    monkeypatch.setattr(tinybptt.bench, "main", lambda argv: seen.append(argv) or 7)
    assert cli.main(["bench", "--cells", "lstm", "--configs", "tiny"]) == 7
    assert seen == [["--cells", "lstm", "--configs", "tiny"]]


def test_reproduce_list_through_the_command(capsys):
    from tinybptt.apps import reproduce

    assert cli.main(["reproduce", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert listed == list(reproduce.EXPERIMENTS) == ["adding", "irnn", "copy", "cliff", "agreement"]
    assert cli.main(["reproduce", "nope"]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_agreement_dispatches_to_its_app(monkeypatch, capsys):
    from tinybptt.apps import agreement

    seen = []
    monkeypatch.setattr(agreement, "main", lambda argv: seen.append(argv) or 5)
    assert cli.main(["agreement", "--steps", "3"]) == 5
    assert seen == [["--steps", "3"]]
    monkeypatch.undo()
    assert cli.main(["agreement", "--models", "rnn,transformer", "--quiet"]) == 2
    assert "transformer" in capsys.readouterr().err


def test_python_dash_m_agreement_help():
    res = subprocess.run([sys.executable, "-m", "tinybptt", "agreement", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "usage: tinybptt agreement" in res.stdout

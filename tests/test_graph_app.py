"""tinybptt graph: node by node, folded (--fold, --unfold T0:T1), the SVG grid (--grid), named leaves."""
import re

import pytest

from tinybptt.apps import cli, graph
from tinybptt.inspect.dot import RAMP
from tinybptt.inspect.fold import fold_keys


def _nodes(src):
    return len(re.findall(r"^\s*n\d+ \[", src, re.M)) or src.count("label=")


def test_leaves_are_named_by_parameter(tmp_path, capsys):
    out = tmp_path / "g.dot"
    assert cli.main(["graph", "--cell", "lstm", "--T", "2", "--out", str(out), "--table"]) == 0
    table = capsys.readouterr().out
    src = out.read_text()
    for name in ("lstm.weight_hh_l0", "lstm.weight_ih_l0", "lstm.bias_hh_l0", "head.weight", "head.bias"):
        assert name in table and name in src
    w = graph.unrolled_walk("lstm", T=2)
    leaves = {r.name for r in w.records if r.kind == "leaf"}
    assert {"lstm.weight_hh_l0", "head.weight"} <= leaves


def test_fold_does_not_grow_with_T(tmp_path):
    sizes = {}
    for T in (5, 40):
        out = tmp_path / ("f%d.dot" % T)
        assert cli.main(["graph", "--cell", "gru", "--T", str(T), "--fold", "--out", str(out)]) == 0
        src = out.read_text()
        assert src.startswith("digraph") and ("x %d steps (t = 0..%d)" % (T, T - 1)) in src
        assert "t-1 -> t" in src and "gru.weight_hh_l0" in src
        sizes[T] = src.count("label=")
    assert sizes[5] == sizes[40]
    plain = tmp_path / "p.dot"
    assert cli.main(["graph", "--cell", "gru", "--T", "5", "--out", str(plain)]) == 0
    assert plain.read_text().count("label=") > sizes[5]


def test_unfold_window_draws_those_steps_node_by_node(tmp_path):
    out = tmp_path / "u.dot"
    assert cli.main(["graph", "--cell", "gru", "--T", "6", "--unfold", "2:4", "--out", str(out)]) == 0
    src = out.read_text()
    assert "gru.l0, t=2," in src and "gru.l0, t=3," in src
    assert "gru.l0, t=1," not in src and "gru.l0, t=4," not in src
    assert "x 4 steps" in src  # t = 0, 1, 4, 5 stay folded
    # an unfolded node shows the same |g| as the node of the unrolled walk
    w = graph.unrolled_walk("gru", T=6, every_readout=False)
    r = next(r for r in w.records if r.kind == "node" and r.step == 2 and r.op == "tanh")
    assert "tanh\\ngru.l0, t=2, n\\n1x3\\n|g| = %.2e" % r.norm in src


@pytest.mark.parametrize("bad", ["3", "4:2", "0:9", "a:b"])
def test_unfold_bad_window(bad, capsys):
    assert cli.main(["graph", "--T", "6", "--unfold", bad]) == 2
    assert "--unfold" in capsys.readouterr().err


def test_grid_svg_one_cell_per_node_and_step(tmp_path, capsys):
    svg = tmp_path / "g.svg"
    T = 7
    assert cli.main(["graph", "--cell", "lstm", "--T", str(T), "--grid", str(svg)]) == 0
    assert "no Graphviz needed" in capsys.readouterr().out
    assert not (tmp_path / "graph.dot").exists()
    text = svg.read_text()
    assert text.startswith("<svg") and text.rstrip().endswith("</svg>")
    w = graph.unrolled_walk("lstm", T=T, every_readout=False)
    recs = [r for r in w.records if r.kind == "node" and r.step is not None]
    keys = fold_keys(recs)
    cells = {(keys[id(r)], r.step) for r in recs}  # a row per node of the cell, a column per step it occurs at
    assert len(set(keys.values())) * T > len(cells) > 10 * T  # (step 0 has no concat with h_{-1})
    assert text.count("<rect") == len(cells) + len(RAMP)
    assert "time step t = 0 .. %d" % (T - 1) in text

"""Execute every notebook in docs/notebooks top to bottom; any cell error fails the test.

Each notebook runs in a fresh kernel (working directory docs/notebooks, this checkout first
on PYTHONPATH, matplotlib's Agg backend) with a per-cell timeout, and must finish within
NOTEBOOK_BUDGET_S.  Skipped, with the reason, when nbclient, nbformat or ipykernel are not
installed (``pip install tinybptt[notebooks]``), and a notebook is skipped when it uses
matplotlib, hypothesis or a C compiler that this machine lacks; the check that no notebook
is committed with outputs always runs.
"""
import glob
import importlib.util
import json
import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NB_DIR = os.path.join(ROOT, "docs", "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NB_DIR, "*.ipynb")))
CELL_TIMEOUT_S = 180
NOTEBOOK_BUDGET_S = 240  # each takes well under a minute alone; generous for a busy CI machine


def _missing(names=("nbclient", "nbformat", "ipykernel")):
    """The modules of ``names`` that cannot be imported here."""
    out = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


_MISSING = _missing()
needs_jupyter = pytest.mark.skipif(bool(_MISSING), reason="executing the notebooks needs %s (pip install "
                                   "tinybptt[notebooks])" % ", ".join(_MISSING))


def _runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", os.path.join(NB_DIR, "run_notebooks.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_are_there():
    names = [os.path.basename(p) for p in NOTEBOOKS]
    assert len(names) >= 6, names
    assert names[0].startswith("01_"), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)  # plain JSON: this check needs no Jupyter package
    with_outputs = [k for k, c in enumerate(nb["cells"])
                    if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not with_outputs, ("%s has saved outputs in cells %s; clear them with "
                              "`python docs/notebooks/run_notebooks.py --clear`" % (os.path.basename(path), with_outputs))


def _unmet_needs(path):
    """What a notebook uses that this machine lacks: optional packages, a C compiler."""
    with open(path, encoding="utf-8") as f:
        source = "\n".join("".join(c["source"]) for c in json.load(f)["cells"] if c["cell_type"] == "code")
    unmet = _missing([m for m in ("matplotlib", "hypothesis") if "import %s" % m in source or "from %s" % m in source])
    if "ffi.compile(" in source and shutil.which(os.environ.get("CC", "cc")) is None:
        unmet.append("a C compiler (cc, or $CC)")
    return unmet


@needs_jupyter
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    from nbclient.exceptions import CellExecutionError

    unmet = _unmet_needs(path)
    if unmet:
        pytest.skip("%s needs %s" % (os.path.basename(path), ", ".join(unmet)))

    copy = tmp_path / os.path.basename(path)  # executed outputs go to the copy, never the repository
    shutil.copy(path, copy)
    runner = _runner()
    try:
        seconds = runner.execute(str(copy), timeout=CELL_TIMEOUT_S, write=True, headless=True)
    except CellExecutionError as e:
        pytest.fail("%s: a cell failed:\n%s" % (os.path.basename(path), e), pytrace=False)
    import nbformat

    nb = nbformat.read(str(copy), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "some code cells did not run"
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, errors
    assert seconds < NOTEBOOK_BUDGET_S, "%s took %.0f s" % (os.path.basename(path), seconds)

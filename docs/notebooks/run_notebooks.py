"""Execute the notebooks in this folder, top to bottom, and report the time each took.

    python docs/notebooks/run_notebooks.py                # run all, fail on the first cell error
    python docs/notebooks/run_notebooks.py --write        # also save the outputs into the .ipynb files
    python docs/notebooks/run_notebooks.py --clear        # remove saved outputs (how they are committed)
    python docs/notebooks/run_notebooks.py 03_*.ipynb     # only some of them

The notebooks are committed without outputs; ``--write`` regenerates them (much as
``jupyter nbconvert --execute --to notebook --inplace docs/notebooks/*.ipynb`` would, but
with the environment below).  Each
notebook runs in a fresh kernel whose working directory is this folder, with the
repository root first on ``PYTHONPATH`` so that it imports this checkout of tinybptt.
Needs ``nbclient``, ``nbformat`` and ``ipykernel`` (``pip install tinybptt[notebooks]``).
"""
import argparse
import glob
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TIMEOUT_S = 240  # per cell; a whole notebook should take well under a minute


def notebooks(patterns=None):
    """Paths of the notebooks in this folder (all, or those matching ``patterns``), in order."""
    found = set()
    for p in patterns or ["*.ipynb"]:
        found.update(glob.glob(os.path.join(HERE, os.path.basename(p))))
    return sorted(f for f in found if not os.path.basename(f).startswith("."))


def kernel_env(headless=True):
    """The environment a notebook kernel is started with: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if headless:
        env.setdefault("MPLBACKEND", "Agg")
    return env


def execute(path, timeout=TIMEOUT_S, write=False, headless=True):
    """Run one notebook in a fresh kernel; raise ``nbclient``'s CellExecutionError on a cell error.

    Returns the seconds it took.  With ``write`` the executed notebook (with outputs)
    replaces the file.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": HERE}})
    start = time.perf_counter()
    client.execute(env=kernel_env(headless))  # passed on to the kernel manager's start_kernel
    elapsed = time.perf_counter() - start
    if write:
        nbformat.write(nb, path)
    return elapsed


def clear(path):
    """Remove every output and execution count from a notebook file."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("patterns", nargs="*", help="notebook names or globs (default: all)")
    ap.add_argument("--write", action="store_true", help="save the outputs into the notebooks")
    ap.add_argument("--clear", action="store_true", help="only remove saved outputs")
    ap.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per cell")
    args = ap.parse_args(argv)
    paths = notebooks(args.patterns)
    if not paths:
        sys.exit("no notebooks matched %s" % (args.patterns or "*.ipynb"))
    for path in paths:
        name = os.path.basename(path)
        if args.clear:
            clear(path)
            print("cleared", name)
            continue
        seconds = execute(path, timeout=args.timeout, write=args.write, headless=not args.write)
        print("%-40s %6.1f s%s" % (name, seconds, "  (outputs saved)" if args.write else ""))


if __name__ == "__main__":
    main()

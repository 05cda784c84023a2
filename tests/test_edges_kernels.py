"""The kernel wrappers called directly with ndarray subclasses: ``np.matrix`` operands give the
NumPy reference the results of plain arrays, as the C backend does (before, the reference's ``*``
became a matrix product: wrong shapes errors, or other numbers than C's)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinybptt.kernels import cells
from tinybptt.kernels import numpy as N

from tinybptt import kernels

EDGES = settings(derandomize=True, database=None, deadline=None, max_examples=40)
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix is the point here
BACKENDS = [N] + ([kernels.c_backend] if kernels.c_backend is not None else [])
NAMES = ("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh")


def _args(cell, step, T=3, B=2, I=2, H=3):
    rng = np.random.default_rng(1)
    G = cells.GATES[cell]
    return [rng.standard_normal((B, I) if step else (T, B, I)), rng.standard_normal((B, H)),
            rng.standard_normal((B, H)) if cell == "lstm" else None,
            rng.standard_normal((G * H, I)), rng.standard_normal((G * H, H)),
            rng.standard_normal(G * H), rng.standard_normal(G * H)]


def _run(mod, cell, step, args):
    if step:
        h, c, saved = mod.step_forward(cell, *args)
        g = mod.step_backward(cell, saved, np.ones_like(h), None if c is None else np.ones_like(c))
        return [h, c] + [g[k] for k in ("dx", "dh", "dw_ih", "dw_hh", "db_ih", "db_hh")]
    out, c_out, saved = mod.seq_forward(cell, *args)
    g = mod.seq_backward(cell, saved, np.ones_like(out), np.ones_like(out[0]),
                         None if c_out is None else np.ones_like(out[0]))
    return [out, c_out] + [g[k] for k in ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh")]


@EDGES
@given(cell=st.sampled_from(sorted(cells.GATES)), step=st.booleans(), which=st.sampled_from([0, 1, 2, 3, 4]),
       backend=st.sampled_from(range(len(BACKENDS))))
def test_matrix_operands_compute_what_arrays_compute(cell, step, which, backend):
    args = _args(cell, step)
    if args[which] is None or args[which].ndim != 2:
        return  # c for a cell without one; x of a sequence (3-D) cannot be a matrix
    want = _run(N, cell, step, [None if a is None else a.copy() for a in args])
    args[which] = np.asmatrix(args[which])
    got = _run(BACKENDS[backend], cell, step, args)
    for name, g, w in zip(("out", "c_out", "dx", "dh", "dw_ih", "dw_hh", "db_ih", "db_hh"), got, want):
        if w is None:
            assert g is None
            continue
        assert type(g) is np.ndarray and g.shape == w.shape, name
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14,
                                   err_msg="%s with %s as np.matrix" % (name, NAMES[which]))


@pytest.mark.parametrize("op", ["tanh", "sigmoid"])  # relu is np.where: a plain array already
def test_activation_of_a_matrix_is_a_plain_array(op):
    m = np.asmatrix(np.linspace(-2, 2, 6).reshape(2, 3))
    for mod in BACKENDS:
        y = getattr(mod, op)(m)
        assert type(y) is np.ndarray
        np.testing.assert_allclose(y, getattr(N, op)(np.asarray(m)), rtol=1e-15)
        dy = np.asmatrix(np.arange(6.0).reshape(2, 3))  # backward: elementwise, not a matrix product
        dx = getattr(mod, op + "_backward")(np.asmatrix(y), dy)
        assert type(dx) is np.ndarray
        np.testing.assert_allclose(dx, getattr(N, op + "_backward")(y, np.asarray(dy)), rtol=1e-15)

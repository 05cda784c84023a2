"""What splitting the engine into readable pieces must not have changed.

The backward pass lives in ``tinybptt/backprop.py`` and imports ``Tensor`` from
``tinybptt/autograd.py``, which imports the walk back at its end.  ``gradcheck`` and
the C backend's ``seq_backward`` are split into named helpers; the paths those helpers
took over are checked here against independent answers.
"""
import subprocess
import sys
import warnings

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import autograd, backprop
from tinybptt.kernels import c_rnn, numpy_rnn


@pytest.mark.parametrize("module", ["tinybptt.backprop", "tinybptt.autograd", "tinybptt.gradcheck"])
def test_each_engine_module_imports_first_in_a_fresh_interpreter(module):
    """autograd and backprop import each other: asking for any engine module first gives a working engine."""
    code = "import %s, tinybptt; x = tinybptt.tensor([2.0], requires_grad=True); (x * x).sum().backward(); " \
           "print(x.grad[0])" % module
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "4.0"


def test_autograd_still_offers_the_walk_it_always_offered():
    """``tb.autograd.topological_order`` (README, notebooks) and Tensor.backward reach the walk."""
    assert autograd.topological_order is backprop.topological_order
    assert autograd.backward is backprop.backward
    x = tb.tensor([[1.0, 2.0]], requires_grad=True)
    w = tb.tensor([[0.5], [-0.3]], requires_grad=True)
    loss = ((x @ w).tanh() ** 2).sum()
    assert [n.op for n in tb.autograd.topological_order(loss)] == ["sum", "pow", "tanh", "matmul"]


def test_gradchecks_float32_warning_points_at_the_line_that_called_gradcheck():
    x = tb.tensor(np.ones(3, np.float32), requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        tb.gradcheck(lambda t: (t * t).sum(), [x])
    assert [(w.filename, w.lineno) for w in caught if issubclass(w.category, tb.GradcheckWarning)] == [(__file__, line)]


def test_gradcheck_refuses_per_output_with_fast_before_looking_at_fn():
    calls = []
    x = tb.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match="per_output=True .* cannot be fast=True"):
        tb.gradcheck(lambda t: calls.append(1) or t.sum(), [x], per_output=True, fast=True)
    assert calls == []


def _layer_arrays(cell, rng, T=5, B=2, I=3, H=4, bias=True):
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H))
    c0 = rng.standard_normal((B, H)) if cell == "lstm" else None
    w_ih, w_hh = rng.standard_normal((G * H, I)) * 0.5, rng.standard_normal((G * H, H)) * 0.5
    b_ih = rng.standard_normal(G * H) if bias else None
    b_hh = rng.standard_normal(G * H) if bias else None
    return x, h0, c0, w_ih, w_hh, b_ih, b_hh


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "gru", "lstm"])
def test_c_seq_backward_of_a_numpy_forward_matches_the_numpy_backward(cell, bias):
    """A saved forward the C backend did not make: its pointers are made in seq_backward."""
    rng = np.random.default_rng(7)
    args = _layer_arrays(cell, rng, bias=bias)
    out, _, saved = numpy_rnn.seq_forward(cell, *args)
    d_out = rng.standard_normal(out.shape)
    d_hn = rng.standard_normal(args[1].shape)
    d_cn = rng.standard_normal(args[1].shape) if cell == "lstm" else None
    want = numpy_rnn.seq_backward(cell, saved, d_out, d_hn, d_cn)
    got = c_rnn.seq_backward(cell, saved, d_out, d_hn, d_cn)
    assert set(got) == set(want)
    for name in want:
        if want[name] is None:
            assert got[name] is None, name
        else:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("cell", ["rnn_tanh", "gru", "lstm"])
def test_c_seq_backward_of_its_own_forward_matches_the_numpy_backward(cell):
    """This backend's own forward: the kept pointers are used, in the order each cell's kernel reads them."""
    rng = np.random.default_rng(8)
    args = _layer_arrays(cell, rng)
    out, _, saved_c = c_rnn.seq_forward(cell, *args)
    _, _, saved_n = numpy_rnn.seq_forward(cell, *args)
    d_out = rng.standard_normal(out.shape)
    got = c_rnn.seq_backward(cell, saved_c, d_out, need_trace=False, carry_exp=0)
    want = numpy_rnn.seq_backward(cell, saved_n, d_out, need_trace=False)
    assert not np.any(got["carry_exp"]) and got["trace_h"] is None and got["trace_exp"] is None
    for name in ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        if want[name] is None:
            assert got[name] is None, name
        else:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12, err_msg=name)

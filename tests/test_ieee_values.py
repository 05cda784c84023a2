"""IEEE edge values: tanh, sigmoid, log_softmax, cross_entropy at +-1000, +-inf and
NaN give the right values and gradients with warnings turned into errors and
``np.errstate(all="raise")``; the recurrent kernels saturate without warnings, and
NaN or inf in the input propagates forward in time only.

Expected values come from Python's ``math`` and closed forms, never from the code
under test.
"""
import math
import warnings

import numpy as np
import pytest

import tinybptt as tb
from tinybptt.kernels import numpy as KN
from tinybptt.nn import functional as F
from kernel_cases import KC, needs_c, KERNELS, CELLS, rnn_args, seq


EDGE = np.array([-1000.0, -50.0, -0.0, 0.0, 50.0, 1000.0, -np.inf, np.inf, np.nan])


def _math_or_nan(f, v):
    return float("nan") if math.isnan(v) else f(v)


def _ref_sigmoid(v):
    if math.isinf(v):
        return 1.0 if v > 0 else 0.0
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_sigmoid_at_extremes(backend, dtype, strict_fp):
    x = tb.tensor(EDGE.astype(dtype), requires_grad=True)
    for name, fn, ref, dref in (
            ("tanh", tb.tanh, math.tanh, lambda y: 1 - y * y),
            ("sigmoid", tb.sigmoid, _ref_sigmoid, lambda y: y * (1 - y))):
        x.grad = None
        y = fn(x)
        want = np.array([_math_or_nan(ref, v) for v in EDGE], dtype=np.float64)
        assert y.dtype == dtype
        np.testing.assert_allclose(y.data.astype(np.float64), want, rtol=2e-7, atol=1e-30, equal_nan=True,
                                   err_msg=name)
        y.sum().backward()
        dwant = np.array([float("nan") if math.isnan(w) else dref(w) for w in want])
        np.testing.assert_allclose(x.grad.astype(np.float64), dwant, rtol=2e-6, atol=1e-30, equal_nan=True,
                                   err_msg=name)
        assert np.all(x.grad[np.abs(EDGE) >= 1000] == 0)  # saturated: exactly zero, not NaN
        assert np.isnan(y.data[-1]) and np.isnan(x.grad[-1])  # NaN in, NaN out


def _ref_log_softmax(row):
    """log_softmax of one row with Python floats: NaN when undefined (a NaN, a +inf, or all -inf)."""
    if any(math.isnan(v) for v in row) or any(v == math.inf for v in row) or all(v == -math.inf for v in row):
        return [float("nan")] * len(row)
    m = max(row)
    lse = m + math.log(math.fsum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


ROWS = [[-1000.0, 1000.0, 0.0], [1000.0, 1000.0, 1000.0], [-1000.0, -1000.0, -999.0], [-np.inf, 0.0, 1.0],
        [-np.inf, -np.inf, 5.0], [-np.inf, -np.inf, -np.inf], [np.inf, 0.0, 1.0], [np.inf, np.inf, 0.0],
        [np.nan, 0.0, 1.0], [3.0, 1.0, 2.0]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_and_softmax_at_extremes(backend, dtype, strict_fp):
    x = tb.tensor(np.array(ROWS, dtype), requires_grad=True)
    g = np.array([[1.0, 2.0, 3.0]] * len(ROWS), dtype)
    want = np.array([_ref_log_softmax(r) for r in ROWS])
    y = F.log_softmax(x)
    (y * tb.tensor(g)).sum().backward()
    np.testing.assert_allclose(y.data, want, rtol=1e-6, equal_nan=True)
    with np.errstate(under="ignore"):  # (the test's own reference may underflow)
        p = np.exp(want)  # gradient of sum(g * log_softmax): g - softmax * sum(g)
    np.testing.assert_allclose(x.grad, g - p * g.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6, equal_nan=True)
    x.grad = None
    s = F.softmax(x)
    (s * tb.tensor(g)).sum().backward()
    np.testing.assert_allclose(s.data, p, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(x.grad, p * (g - (g * p).sum(axis=1, keepdims=True)), rtol=1e-5, atol=1e-6,
                               equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_at_extremes(backend, dtype, strict_fp):
    cases = [  # (logits, target, loss, d loss / d logits) -- worked out by hand
        ([-1000.0, 1000.0, 0.0], 1, 0.0, [0.0, 0.0, 0.0]),
        ([-1000.0, 1000.0, 0.0], 0, 2000.0, [-1.0, 1.0, 0.0]),
        ([1000.0, 1000.0, 1000.0], 2, math.log(3), [1 / 3, 1 / 3, -2 / 3]),
        ([-np.inf, 0.0, 0.0], 1, math.log(2), [0.0, -0.5, 0.5]),     # -inf masks a class
        ([-np.inf, 0.0, 0.0], 0, math.inf, [-1.0, 0.5, 0.5]),        # the target was masked
        ([np.nan, 0.0, 0.0], 1, math.nan, [math.nan] * 3),
        ([np.inf, 0.0, 0.0], 0, math.nan, [math.nan] * 3),
    ]
    for logits, target, loss, grad in cases:
        x = tb.tensor(np.array([logits], dtype), requires_grad=True)
        out = F.cross_entropy(x, [target])
        assert out.dtype == dtype
        out.backward()
        np.testing.assert_allclose(out.item(), loss, rtol=1e-6, equal_nan=True, err_msg=str(logits))
        np.testing.assert_allclose(x.grad[0], grad, rtol=1e-6, atol=1e-7, equal_nan=True, err_msg=str(logits))
    # a batch: one bad row makes only its own gradient NaN
    x = tb.tensor(np.array([[0.0, 1.0], [np.nan, 0.0], [1000.0, -1000.0]], dtype), requires_grad=True)
    F.cross_entropy(x, [0, 1, 0], reduction="sum").backward()
    assert np.all(np.isfinite(x.grad[[0, 2]])) and np.all(np.isnan(x.grad[1]))


@pytest.mark.parametrize("K", KERNELS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_recurrent_kernels_saturate_without_warnings(K, cell, dtype, strict_fp):
    """Pre-activations of +-1000 (weights scaled up): finite, saturated, no FP exception."""
    rng = np.random.default_rng(8)
    a = rnn_args(rng, cell, 5, 2, 3, 4, dtype=dtype)
    a["w_ih"] = (np.sign(a["w_ih"]) * 500).astype(dtype)
    a["x"] = (np.sign(a["x"]) * 2).astype(dtype)  # |pre-activation| up to 3000
    out, c_out, saved = seq(K, cell, a)
    g = K.seq_backward(cell, saved, np.ones_like(out))
    assert np.all(np.isfinite(out))
    for k, v in g.items():
        if v is not None:
            assert np.all(np.isfinite(v)), k
    if cell != "rnn_relu":
        assert np.all(np.abs(out) <= 1)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("K", [pytest.param(KC, id="c", marks=needs_c), pytest.param(KN, id="numpy")])
def test_recurrent_kernels_with_nonfinite_input(K, cell, special):
    rng = np.random.default_rng(9)
    a = rnn_args(rng, cell, 6, 3, 2, 4)
    a["x"][2, 1, 0] = special  # step 2, sample 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            out, c_out, saved = seq(K, cell, a)
            g = K.seq_backward(cell, saved, np.ones_like(out))
    # the other samples never see it; steps before 2 are untouched
    clean = dict(a, x=a["x"].copy())
    clean["x"][2, 1, 0] = 0.0
    ref_out, _, _ = seq(KN, cell, clean)
    np.testing.assert_allclose(out[:, [0, 2]], ref_out[:, [0, 2]], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(out[:2], ref_out[:2], rtol=1e-12, atol=1e-13)
    if np.isnan(special):
        assert np.all(np.isnan(out[2:, 1])), "NaN must propagate forward in time"
        assert np.all(np.isnan(g["dw_ih"][:, 0]))  # the weight that multiplied it
        assert np.all(np.isfinite(g["dh0"][[0, 2]])) and np.all(np.isfinite(g["dx"][:, [0, 2]]))
        if cell != "rnn_relu":  # (relu' at NaN is 0, as in PyTorch: relu stops a NaN going backward)
            assert np.all(np.isnan(g["dh0"][1])) and np.all(np.isnan(g["dx"][:, 1]))
    if K is KC:  # the C kernels put their NaNs where the reference does (with warnings silenced)
        with np.errstate(all="ignore"):
            r_out, _, r_saved = seq(KN, cell, a)
            r = KN.seq_backward(cell, r_saved, np.ones_like(r_out))
        np.testing.assert_allclose(out, r_out, rtol=1e-12, atol=1e-13, equal_nan=True)
        for k, v in r.items():
            if v is not None:
                np.testing.assert_allclose(g[k], v, rtol=1e-10, atol=1e-12, equal_nan=True, err_msg=k)

"""Accuracy of the C kernels' own tanh and sigmoid (csrc/vmath.h).

The C backend does not call libm for these: the activation kernels and the fused
recurrent gate loops share one branch-free exp, so that the loops vectorise.  Here
they are measured against a more precise reference over a dense sweep of inputs,
in ulps (units in the last place of the exact result), and at the values where
such code goes wrong: signed zeros, subnormal results, the underflow edge,
infinities and NaN.  The loader picks one compiled copy per CPU (with or without
fused multiply-add), so this checks the copy this machine runs.
"""
import numpy as np
import pytest

from tinybptt.kernels import c_ops

MAX_ULPS = 3.0


def _inputs(dtype):
    """Both signs of magnitudes log-spaced from the smallest subnormal to 1000, and dense in [0, 20]."""
    tiny = np.finfo(dtype).smallest_subnormal
    rng = np.random.default_rng(0)
    mag = np.concatenate([np.geomspace(float(tiny), 1e3, 200001), rng.uniform(0, 20, 200000)]).astype(dtype)
    return np.concatenate([mag, -mag])


def _exact(x, wide):
    """tanh and sigmoid of ``x`` computed in the wider type ``wide``."""
    xw = x.astype(wide)
    with np.errstate(over="ignore"):
        ex = np.exp(-np.abs(xw))
        sig = np.where(xw >= 0, 1 / (1 + ex), ex / (1 + ex))
    return np.tanh(xw), sig


def _ulps(got, exact, dtype, wide):
    """|got - exact| in units of the spacing of ``dtype`` at ``exact`` (the subnormal spacing at the bottom)."""
    spacing = np.spacing(np.abs(exact).astype(dtype)).astype(wide)
    return np.asarray(np.abs(got.astype(wide) - exact) / spacing, np.float64)


def _wide(dtype):
    if dtype == np.float32:
        return np.float64
    if np.finfo(np.longdouble).nmant <= np.finfo(np.float64).nmant:
        pytest.skip("no floating type wider than float64 on this platform")
    return np.longdouble


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_within_a_few_ulps(dtype):
    x = _inputs(dtype)
    wide = _wide(dtype)
    want_tanh, want_sig = _exact(x, wide)
    for name, got, want in (("tanh", c_ops.tanh(x), want_tanh), ("sigmoid", c_ops.sigmoid(x), want_sig)):
        assert got.dtype == dtype
        err = _ulps(got, want, dtype, wide)
        worst = int(np.argmax(err))
        assert err[worst] <= MAX_ULPS, "%s(%r): %.2f ulps" % (name, x[worst], err[worst])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype):
    inf, nan = np.inf, np.nan
    x = np.array([0.0, -0.0, inf, -inf, 1000.0, -1000.0, nan], dtype)
    t, s = c_ops.tanh(x), c_ops.sigmoid(x)
    np.testing.assert_array_equal(t[:6], [0.0, -0.0, 1.0, -1.0, 1.0, -1.0])
    assert not np.signbit(t[0]) and np.signbit(t[1])  # tanh keeps the sign of zero
    np.testing.assert_array_equal(s[:6], [0.5, 0.5, 1.0, 0.0, 1.0, 0.0])
    assert np.isnan(t[6]) and np.isnan(s[6])


def test_float32_subnormal_results_and_underflow():
    """sigmoid(x) = exp(x) / (1 + exp(x)) keeps going below float32's smallest normal
    number (1.2e-38 near x = -87.3) down to the smallest subnormal, 1.4e-45; below
    x = -103.97 the exact value is under half of that and rounds to 0."""
    x = np.array([-90.0, -100.0, -103.0, -103.5, -104.0, -110.0, -1e30], np.float32)
    got = c_ops.sigmoid(x).astype(np.float64)
    want = np.exp(x.astype(np.float64)).astype(np.float32).astype(np.float64)  # sigmoid(x) = exp(x) to float32 here
    assert np.all(got[:4] > 0) and np.all(got[:4] < np.finfo(np.float32).tiny)
    np.testing.assert_array_equal(got, want)
    t = c_ops.tanh(np.array([1e-45, -1e-40], np.float32))  # tanh(x) = x for subnormal x
    np.testing.assert_array_equal(t, np.array([1e-45, -1e-40], np.float32))

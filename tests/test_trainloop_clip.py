"""clip_grad_norm_ against torch and against an exact reference, including norms that float32 or a plain
sum of squares would get wrong."""
import math

import numpy as np
import pytest

from tinybptt import nn
from tinybptt.nn.utils import clip_grad_norm_

torch = pytest.importorskip("torch")

SHAPES = [(16, 3), (16, 4), (16,), (1, 4), (1,)]


def _params(grads, dtype):
    out = []
    for g in grads:
        p = nn.Parameter(np.zeros(g.shape, dtype=dtype), dtype=dtype)
        p.grad = g.astype(dtype)
        out.append(p)
    return out


def _torch_params(grads, dtype):
    out = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros(g.shape, dtype=getattr(torch, np.dtype(dtype).name)))
        p.grad = torch.from_numpy(g.astype(dtype))
        out.append(p)
    return out


def _exact_norm(grads, norm_type):
    """The p-norm of all the values, computed with Python floats (math.hypot scales, so nothing under- or
    overflows)."""
    values = [float(v) for g in grads for v in np.ravel(g).astype(np.float64)]
    if norm_type == 2.0:
        return math.hypot(*values)
    m = max(abs(v) for v in values)
    if norm_type == float("inf") or m == 0:
        return m
    return m * math.fsum((abs(v) / m) ** norm_type for v in values) ** (1 / norm_type)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_matches_torch(dtype, norm_type, max_norm):
    rng = np.random.default_rng(7 if norm_type == float("inf") else int(norm_type))
    grads = [rng.standard_normal(s) for s in SHAPES]
    ours, theirs = _params(grads, dtype), _torch_params(grads, dtype)
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    assert total == pytest.approx(float(ttotal), rel=tol, abs=0)
    assert total == pytest.approx(_exact_norm(grads if dtype == np.float64 else [g.astype(dtype) for g in grads],
                                              norm_type), rel=1e-12, abs=0)
    for p, tp in zip(ours, theirs):
        assert p.grad.dtype == np.dtype(dtype)
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=tol, atol=tol * 1e-3)


@pytest.mark.parametrize("scale,dtype", [(1e200, np.float64), (1e-200, np.float64), (1e-160, np.float64),
                                         (1e-30, np.float32), (1e-44, np.float32), (1e30, np.float32)],
                         ids=["f64-huge", "f64-tiny", "f64-small", "f32-tiny", "f32-subnormal", "f32-huge"])
def test_clip_norm_is_exact_where_squares_underflow_or_overflow(scale, dtype):
    """Squaring 1e200 overflows float64 and squaring 1e-200 underflows it; squaring float32's 1e-30 underflows
    float32: the total norm is still the exact one, and the gradients are scaled by max_norm / total."""
    rng = np.random.default_rng(1)
    grads = [(rng.standard_normal(s) * scale).astype(dtype) for s in SHAPES]
    ours = _params(grads, dtype)
    want = _exact_norm(grads, 2.0)
    assert want > 0 and math.isfinite(want)
    max_norm = want / 4 if scale > 1 else 1.0
    total = clip_grad_norm_(ours, max_norm)
    assert total == pytest.approx(want, rel=1e-12, abs=0)
    if scale > 1:  # clipped: every gradient times max_norm / (total + 1e-6)
        for p, g in zip(ours, grads):
            np.testing.assert_allclose(p.grad, g * (max_norm / (want + 1e-6)), rtol=1e-6 if dtype == np.float32
                                       else 1e-12)
    else:  # far below max_norm: untouched
        for p, g in zip(ours, grads):
            np.testing.assert_array_equal(p.grad, g)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_clip_non_finite_as_torch(bad):
    """A non-finite gradient: the same total and the same scaled gradients as torch (NaN where torch has NaN)."""
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal(s) for s in SHAPES]
    grads[1][0, 0] = bad
    ours, theirs = _params(grads, np.float64), _torch_params(grads, np.float64)
    total = clip_grad_norm_(ours, 1.0)
    ttotal = float(torch.nn.utils.clip_grad_norm_(theirs, 1.0))
    assert (math.isnan(total) and math.isnan(ttotal)) or total == ttotal
    for p, tp in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad, tp.grad.numpy())


def test_clip_skips_parameters_without_gradients_and_mixed_dtypes():
    rng = np.random.default_rng(3)
    a = _params([rng.standard_normal((4, 3))], np.float32)[0]
    b = _params([rng.standard_normal((5,))], np.float64)[0]
    c = nn.Parameter(np.ones(3))
    want = _exact_norm([a.grad, b.grad], 2.0)
    assert clip_grad_norm_([a, c, b], 1e9) == pytest.approx(want, rel=1e-13, abs=0)
    assert c.grad is None
    assert clip_grad_norm_([c], 1.0) == 0.0

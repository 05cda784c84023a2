"""The training step's work outside the recurrent kernels, made cheaper: the same results as the plain way.

F.linear (nn.Linear's one node) against ops.linear on the transposed weight, finite differences and
torch; clip_grad_norm_ without NumPy's error-state switch for float32 gradients (no square can under- or
overflow there) and with it for float64 ones; the optimisers' step through each parameter's view of
the flat step buffer; the training loop's losses against a copy of the loop written out by hand;
mse_loss's mean (a sum over n) against NumPy's mean and sum, bit for bit.
"""
import math
import re

import numpy as np
import pytest

from tinybptt import nn, optim
from tinybptt.autograd import Tensor
from tinybptt.backprop import topological_order
from tinybptt.errors import ShapeError
from tinybptt.gradcheck import gradcheck
from tinybptt.nn import functional as F
from tinybptt.nn.utils import clip_grad_norm_
from tinybptt.ops import linear as ops_linear


def _xwb(dtype, lead=(5,), K=4, N=3, seed=0):
    rng = np.random.default_rng(seed)
    x = Tensor(rng.standard_normal(lead + (K,)).astype(dtype), requires_grad=True)
    w = Tensor(rng.standard_normal((N, K)).astype(dtype), requires_grad=True)
    b = Tensor(rng.standard_normal(N).astype(dtype), requires_grad=True)
    return x, w, b


# --------------------------------------------------------------------------- F.linear / nn.Linear


@pytest.mark.parametrize("lead", [(5,), (2, 3), ()], ids=["2d", "3d", "1d"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_is_the_transposed_product_in_one_node(lead, bias):
    """The same values and gradients, bit for bit, as ops.linear(x, w.T, b), with one node instead of two."""
    x, w, b = _xwb(np.float32, lead)
    y = F.linear(x, w, b if bias else None)
    ref = ops_linear(x, w.T, b if bias else None)
    np.testing.assert_array_equal(y.data, ref.data)
    assert len(topological_order(y)) == 1 and len(topological_order(ref)) == 2
    grads = []
    for out in (y, ref):
        for t in (x, w, b):
            t.grad = None
        (out * out).sum().backward()
        grads.append([None if t.grad is None else t.grad.copy() for t in (x, w, b)])
    for g, r in zip(*grads):
        if r is None:
            assert g is None
        else:
            np.testing.assert_array_equal(g, r)
    assert w.grad.flags.c_contiguous and w.grad.shape == w.shape


def test_linear_gradients_by_finite_differences():
    x, w, b = _xwb(np.float64, (2, 3))
    assert gradcheck(lambda x, w, b: F.linear(x, w, b), [x, w, b])


def test_nn_linear_matches_torch():
    torch = pytest.importorskip("torch")
    layer = nn.Linear(4, 3, dtype=np.float64, generator=0)
    ref = torch.nn.Linear(4, 3, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(layer.weight.data))
        ref.bias.copy_(torch.from_numpy(layer.bias.data))
    x = np.random.default_rng(3).standard_normal((6, 4))
    y = layer(x)
    (y * y).sum().backward()
    ty = ref(torch.from_numpy(x))
    (ty * ty).sum().backward()
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.weight.grad, ref.weight.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.bias.grad, ref.bias.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("xs,ws", [((5, 4), (3, 5)), ((5, 4), (4,)), ((), (3, 4))])
def test_linear_bad_shapes_name_the_op_and_the_shapes(xs, ws):
    with pytest.raises(ShapeError, match=r"linear: expected input \(\.\.\., in_features\).*%s" % re.escape(str(ws))):
        F.linear(np.zeros(xs), np.zeros(ws))


# --------------------------------------------------------------------------- clip_grad_norm_


def _with_grads(grads):
    ps = []
    for g in grads:
        p = nn.Parameter(np.zeros(g.shape, g.dtype), dtype=g.dtype)
        p.grad = g
        ps.append(p)
    return ps


@pytest.mark.parametrize("scale,dtype", [(1e-44, np.float32), (1e-30, np.float32), (1e37, np.float32),
                                         (1e200, np.float64), (1e-200, np.float64)],
                         ids=["f32-subnormal", "f32-tiny", "f32-max", "f64-huge", "f64-tiny"])
def test_clip_raises_no_floating_point_error_and_is_exact(scale, dtype):
    """Under np.errstate(all="raise"): float32 gradients take the sum of squares without NumPy's error
    state (their float64 squares cannot under- or overflow), float64 ones keep it (theirs can, and go
    through the scaled norm): no FloatingPointError either way, and the exact norm (math.hypot)."""
    rng = np.random.default_rng(4)
    grads = [(rng.standard_normal(s) * scale).astype(dtype) for s in [(7, 3), (5,), (1,)]]
    want = math.hypot(*[float(v) for g in grads for v in g.ravel()])
    max_norm = want / 4 if scale > 1 else 1.0  # tiny gradients stay as they are (scaled, they would underflow)
    ps = _with_grads(grads)
    with np.errstate(all="raise"):
        total = clip_grad_norm_(ps, max_norm)
    assert total == pytest.approx(want, rel=1e-12, abs=0)
    coef = min(1.0, max_norm / (want + 1e-6))
    for p, g in zip(ps, grads):
        assert p.grad.dtype == np.dtype(dtype)
        np.testing.assert_allclose(p.grad, g * dtype(coef), rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_clip_inf_gradient_scales_to_nan_silently():
    ps = _with_grads([np.array([np.inf, 1.0], np.float32), np.array([2.0], np.float32)])
    with np.errstate(all="raise"):
        total = clip_grad_norm_(ps, 1.0)
    assert total == math.inf
    assert np.isnan(ps[0].grad[0]) and ps[0].grad[1] == 0 and ps[1].grad[0] == 0


# --------------------------------------------------------------------------- optimisers


@pytest.mark.parametrize("name,kw", [("Adam", {}), ("SGD", {"momentum": 0.9})])
def test_the_step_writes_new_arrays_outside_the_optimiser_buffers(name, kw):
    """Every step gives each parameter a new array of its own: not a view of the step buffer the
    optimiser writes again next step."""
    rng = np.random.default_rng(5)
    ps = [nn.Parameter(rng.standard_normal(s).astype(np.float32), dtype=np.float32) for s in [(4, 3), (3,)]]
    opt = getattr(optim, name)(ps, lr=0.1, **kw)
    seen = []
    for _ in range(3):
        for p in ps:
            p.grad = rng.standard_normal(p.shape).astype(np.float32)
        opt.step()
        for p in ps:
            assert p.data.base is None and p.data.flags.owndata
            for flat in opt._flats:
                for buf in flat.buffers.values():
                    if isinstance(buf, np.ndarray):
                        assert not np.shares_memory(p.data, buf)
            seen.append(p.data)
    assert len({id(a) for a in seen}) == len(seen)


# --------------------------------------------------------------------------- the whole training step


def _hand_written_step(model, opt, x, y, clip):
    """The training step written the plain way: out[-1]'s read-out through ops.linear(h, W.T, b), the loss
    as ((pred - y) ** 2).mean(), the clip from its definition, torch's Adam update."""
    out = model.rnn(x)[0]
    pred = ops_linear(out[-1], model.head.weight.T, model.head.bias)
    d = pred - Tensor(np.asarray(y, np.float32))
    loss = (d * d).mean()
    model.zero_grad()
    loss.backward()
    ps = model.parameters()
    total = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in ps))
    if total > clip:
        for p in ps:
            p.grad = p.grad * np.float32(clip / (total + 1e-6))
    opt.step()
    return float(loss.item())


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_training_loop_trains_as_the_plain_step(cell):
    """TinyLoop's steps and the hand-written plain step, from the same weights on the same batches:
    the same losses and weights to float32 rounding."""
    from tinybptt.bench.train_loops import make_loop
    from tinybptt.tasks import adding_problem
    loop, ref = (make_loop("tinybptt", cell, "adding", 0, {"H": 16}) for _ in range(2))
    rng_a, rng_b = np.random.default_rng(6), np.random.default_rng(6)
    for _ in range(6):
        a = loop.step(*adding_problem(20, 8, rng_a, np.float32))
        b = _hand_written_step(ref.model, ref.opt, *adding_problem(20, 8, rng_b, np.float32), 1.0)
        assert a == pytest.approx(b, rel=1e-5)
    for p, q in zip(loop.model.parameters(), ref.model.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-4, atol=1e-6)



# --------------------------------------------------------------------------- mse_loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(32, 1), (7, 5, 3), (1,), ()], ids=["B1", "3d", "one", "scalar"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_loss_is_numpys_mean_and_sum_bit_for_bit(dtype, shape, reduction):
    """The loss (a sum over n, not np.mean) gives exactly NumPy's mean and sum of the squared differences,
    in the input's dtype, for many random batches."""
    rng = np.random.default_rng(7)
    for _ in range(50):
        a = (rng.standard_normal(shape) * 10 ** rng.uniform(-15, 15)).astype(dtype)
        b = (rng.standard_normal(shape) * 10 ** rng.uniform(-15, 15)).astype(dtype)
        got = F.mse_loss(a, b, reduction=reduction).data
        sq = (a - b) * (a - b)
        want = np.mean(sq) if reduction == "mean" else np.sum(sq)
        assert got.dtype == np.dtype(dtype) and got.shape == ()
        assert got == want or (np.isnan(got) and np.isnan(want))

"""mse_loss and nll_loss as one node each: finite differences, torch's values and gradients, the graph they make."""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt.backprop import topological_order
from tinybptt.nn import functional as F

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(5, 3), (4,), ()], ids=["5x3", "4", "scalar"])
def test_mse_loss_gradcheck(reduction, shape):
    rng = np.random.default_rng(0)
    x = tb.tensor(rng.standard_normal(shape), requires_grad=True)
    y = tb.tensor(rng.standard_normal(shape), requires_grad=True)
    tb.gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), [x, y])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_mse_loss_matches_torch(reduction, dtype):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((6, 4)).astype(dtype), rng.standard_normal((6, 4)).astype(dtype)
    g = rng.standard_normal((6, 4)).astype(dtype) if reduction == "none" else np.asarray(1.5, dtype)
    x, y = tb.tensor(a, requires_grad=True), tb.tensor(b, requires_grad=True)
    tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    out, tout = F.mse_loss(x, y, reduction=reduction), torch.nn.functional.mse_loss(tx, ty, reduction=reduction)
    out.backward(g)
    tout.backward(torch.from_numpy(g))
    tol = 1e-13 if dtype == np.float64 else 1e-6
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=tol)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=tol)
    np.testing.assert_allclose(y.grad, ty.grad.numpy(), rtol=tol)


def test_mse_loss_is_one_node_and_a_constant_target_gets_no_gradient():
    x = tb.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    loss = F.mse_loss(x, np.ones((2, 3)))
    assert [n.op for n in topological_order(loss)] == ["mse_loss"]
    loss.backward()
    np.testing.assert_array_equal(x.grad, 2 * (np.arange(6.0).reshape(2, 3) - 1) / 6)


# --------------------------------------------------------------------------- nll_loss, cross_entropy


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("lead", [(), (5,), (2, 3)], ids=["one-row", "rows", "2d-rows"])
def test_nll_loss_and_cross_entropy_gradcheck(reduction, lead):
    rng = np.random.default_rng(len(lead))
    x = tb.tensor(rng.standard_normal(lead + (4,)), requires_grad=True)
    target = rng.integers(0, 4, size=lead)
    weight = rng.standard_normal(lead)  # "none": a different weight on each row's loss
    for loss in (F.nll_loss, F.cross_entropy):
        f = (lambda a: (loss(a, target, reduction="none") * weight).sum()) if reduction == "none" else (
            lambda a: loss(a, target, reduction=reduction))
        assert tb.gradcheck(f, [x]), (loss.__name__, reduction, lead)


def test_nll_loss_is_one_node_and_cross_entropy_two():
    x = tb.tensor(np.log(np.full((3, 2), 0.5)), requires_grad=True)
    target = np.array([0, 1, 1])
    loss = F.nll_loss(x, target)
    assert [n.op for n in topological_order(loss)] == ["nll_loss"]
    loss.backward()
    np.testing.assert_array_equal(x.grad, [[-1 / 3, 0], [0, -1 / 3], [0, -1 / 3]])
    assert [n.op for n in topological_order(F.cross_entropy(x, target))] == ["nll_loss", "log_softmax"]


@pytest.mark.parametrize("loss, what", [(F.nll_loss, "log_probs"), (F.cross_entropy, "logits")])
def test_nll_loss_and_cross_entropy_name_themselves_in_their_errors(loss, what):
    who = loss.__name__
    with pytest.raises(tb.errors.ShapeError, match="%s: %s must have a class axis" % (who, what)):
        loss(np.float64(1.0), np.array(0))
    with pytest.raises(ValueError, match="%s: reduction must be one of" % who):
        loss(np.zeros((2, 3)), np.array([0, 1]), reduction="max")
    with pytest.raises(tb.errors.ShapeError, match="%s: reduction='mean' over no elements" % who):
        loss(np.zeros((0, 3)), np.zeros(0, int))
    with pytest.raises(tb.errors.ShapeError, match="%s: target class indices must lie in" % who):
        loss(np.zeros((2, 3)), np.array([0, 3]))

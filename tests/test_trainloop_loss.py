"""mse_loss as one node: finite-difference gradients, torch's values and gradients, the graph it makes."""
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

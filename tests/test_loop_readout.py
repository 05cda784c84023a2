"""The training model's read-out of the last step: h_n[-1] of the layer, which is out[-1] in value, in
gradients and in the gradient trace, without the gradient of out passing through a (T, B, H) array."""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt import kernels
from tinybptt.apps.train import SeqModel, step_gradient_log10
from tinybptt.autograd import Tensor
from tinybptt.inspect import numerics
from tinybptt.nn import functional as F
from tinybptt.tasks import make_batch


def _model_and_batch(task, cell, mode, T=12, B=3, H=8):
    tb.nn.manual_seed(0)
    model = SeqModel(task, cell, H, np.float32, mode)
    x, y = make_batch(task, T, B, np.random.default_rng(1), dtype=np.float32)
    return model, x, y


def _out_last_loss(model, x, y):
    """The loss written the plain way: the read-out of out[-1] (or of every step for the copy task)."""
    out = model.rnn(x)[0]
    T, B, H = out.shape
    pred = model.head(out.reshape(T * B, H)) if model.info.loss == "ce_all" else model.head(out[-1])
    if model.info.loss == "mse":
        return F.mse_loss(pred, Tensor(np.asarray(y, np.float32)))
    return F.cross_entropy(pred, np.asarray(y).reshape(-1))


def _grads_and_trace(model, loss):
    model.zero_grad()
    loss.backward()
    return [np.array(p.grad) for p in model.parameters()], np.array(model.rnn.grad_trace.h[0])


@pytest.mark.parametrize("mode", ["sequence", "cell", "ops"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("task", ["adding", "first", "copy"])
def test_loss_gradients_and_trace_equal_the_out_last_read_out(task, cell, mode):
    model, x, y = _model_and_batch(task, cell, mode)
    loss, _ = model.loss(x, y)
    grads, trace = _grads_and_trace(model, loss)
    ref = _out_last_loss(model, x, y)
    ref_grads, ref_trace = _grads_and_trace(model, ref)
    assert loss.item() == ref.item()
    for k, (g, r) in enumerate(zip(grads, ref_grads)):
        np.testing.assert_array_equal(g, r, err_msg="parameter %d" % k)
    np.testing.assert_array_equal(trace, ref_trace)
    assert np.any(trace[-1] != 0)  # the last step's gradient is in the trace


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("task", ["adding", "first"])
def test_the_last_output_reaches_the_kernel_as_dh_n(task, cell, monkeypatch):
    seen = []
    orig = kernels.backend.seq_backward

    def spy(cell_, saved, d_out, d_hn=None, *args, **kwargs):
        seen.append((d_out, d_hn))
        return orig(cell_, saved, d_out, d_hn, *args, **kwargs)

    monkeypatch.setattr(kernels.backend, "seq_backward", spy)
    model, x, y = _model_and_batch(task, cell, "sequence")
    model.loss(x, y)[0].backward()
    assert len(seen) == 1
    d_out, d_hn = seen[0]
    assert d_out is None  # no (T, B, H) gradient of out, all zero but its last step
    assert d_hn is not None and d_hn.shape == (x.shape[1], model.rnn.hidden_size) and np.any(d_hn != 0)


def test_the_probe_reads_the_trace_of_the_task_loss():
    model, x, y = _model_and_batch("adding", "lstm", "sequence")
    logs = step_gradient_log10(model, x, y)
    _, trace = _grads_and_trace(model, _out_last_loss(model, x, y))
    assert len(logs) == x.shape[0] + 1
    np.testing.assert_allclose(logs[1:], [numerics.log10_norm(trace[t]) for t in range(x.shape[0])], rtol=1e-12)
    assert logs[0] is not None and np.isfinite(logs[0])  # dL/dh0 of the initial state

"""``tinybptt train`` records the layer's gradient trace for its probes only.

The training steps never read ``layer.grad_trace``, so they run without it; the
probes (which read it) switch it on for their one backward pass, whatever the
layer's own setting, and the layer's setting is back when ``train`` returns.
"""
import numpy as np
import pytest

from tinybptt.apps.train import SeqModel, train
from tinybptt.autograd import is_grad_enabled


def _spy_forwards(layer):
    """Record ``layer.record_grad_trace`` at every forward that builds a graph."""
    seen = []
    forward = layer._forward

    def spy(*args, **kwargs):
        if is_grad_enabled():
            seen.append(layer.record_grad_trace)
        return forward(*args, **kwargs)
    layer._forward = spy
    return seen


@pytest.mark.parametrize("initially", [True, False])
def test_steps_untraced_probes_traced_setting_restored(initially):
    model = SeqModel("adding", "rnn", 8, np.float32)
    model.rnn.record_grad_trace = initially
    seen = _spy_forwards(model.rnn)
    res = train(task="adding", cell="rnn", T=6, H=8, batch=4, steps=6, eval_every=3, test_size=8,
                probe_every=3, progress=False, log=None, model=model)
    # probe at 0, steps 1-3, probe at 3, steps 4-6, probe at 6 (the final probe is the same step)
    assert seen == [True, False, False, False, True, False, False, False, True]
    assert res["probe"]["steps"] == [0, 3, 6]
    assert all(len(row) == 7 and row[-1] is not None for row in res["probe"]["log10"])
    assert model.rnn.record_grad_trace is initially


def test_setting_restored_after_an_error():
    model = SeqModel("adding", "lstm", 8, np.float32)
    calls = {"n": 0}
    step_loss = model.loss

    def failing_loss(x, y, state=None):
        calls["n"] += 1
        if calls["n"] == 3:  # the second training step (the first call is the probe at step 0)
            raise RuntimeError("stop")
        return step_loss(x, y, state)
    model.loss = failing_loss
    with pytest.raises(RuntimeError, match="stop"):
        train(task="adding", cell="lstm", T=5, H=8, batch=4, steps=4, eval_every=2, test_size=8,
              progress=False, log=None, model=model)
    assert model.rnn.record_grad_trace is True

"""Anomaly mode names the op, the layer and the time step where a NaN or an
overflow first appears, forward or backward.
"""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn


@pytest.mark.parametrize("mode, op, step", [("ops", "getitem", 3), ("cell", "getitem", 3),
                                             ("sequence", "rnn_tanh_sequence", 3)])
def test_anomaly_mode_names_the_source_of_a_nan(backend, mode, op, step):
    from tinybptt import inspect
    nn.manual_seed(0)
    rnn = nn.RNN(2, 3, mode=mode)
    x = np.random.default_rng(10).standard_normal((6, 1, 2))
    x[3, 0, 1] = np.nan
    with pytest.raises(inspect.AnomalyError) as info:
        with inspect.detect_anomaly():
            rnn(x)
    a = info.value.anomaly
    assert (a.phase, a.op, a.label, a.step) == ("forward", op, "rnn.l0", step)
    assert "NAN" in str(info.value) and "rnn.l0" in str(info.value)


def test_anomaly_mode_names_the_time_step_inside_a_sequence_node_going_back(backend):
    """Backward: a NaN planted in dL/dout at t=4 reaches dL/dx at steps 4, 3, ... 0; the first
    step the backward pass (running back in time) makes it at is 4."""
    from tinybptt import inspect
    nn.manual_seed(0)
    rnn = nn.RNN(2, 3, mode="sequence")
    x = tb.tensor(np.random.default_rng(3).standard_normal((7, 1, 2)), requires_grad=True)
    out, _ = rnn(x)
    g = np.ones(out.shape)
    g[4, 0, 2] = np.nan
    with pytest.raises(inspect.AnomalyError) as info:
        with inspect.detect_anomaly(forward=False):
            out.backward(g)
    a = info.value.anomaly
    assert (a.phase, a.op, a.step, a.inputs_finite) == ("backward", "rnn_tanh_sequence", 4, False)
    assert "t=4" in str(info.value)


def test_anomaly_mode_names_the_step_where_the_state_overflows(backend):
    """A ReLU RNN with a huge recurrent weight overflows to inf at a known step, from finite inputs."""
    from tinybptt import inspect
    rnn = nn.RNN(1, 1, nonlinearity="relu", bias=False, mode="ops")
    rnn.weight_ih_l0.data = np.array([[1.0]])
    rnn.weight_hh_l0.data = np.array([[1e200]])
    x = np.ones((5, 1, 1))  # h1 = 1, h2 = 1e200 + 1, h3 = inf
    with pytest.raises(inspect.AnomalyError) as info:
        with inspect.detect_anomaly():
            rnn(x)
    a = info.value.anomaly
    assert (a.op, a.step, a.bad, a.inputs_finite) == ("linear", 2, "inf", True)


def test_anomaly_mode_names_a_backward_that_makes_nan(backend):
    from tinybptt import inspect

    # d sqrt(x)/dx = 0.5 x^-0.5: inf at 0, so the zero gradient arriving there gives 0 * inf = NaN
    x = tb.tensor(np.array([0.0, 4.0]), requires_grad=True)
    with pytest.raises(inspect.AnomalyError) as info:
        with inspect.detect_anomaly():
            ((x ** 0.5) * 0.0).sum().backward()
    a = info.value.anomaly
    assert (a.phase, a.op, a.inputs_finite) == ("backward", "pow", True)

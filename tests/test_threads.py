"""Threads: two threads train independent models at once (C backend) and each gets
bit for bit what it gets alone; no_grad, node_scope and anomaly mode in one
thread do not leak into another.
"""
import threading

import numpy as np

import tinybptt as tb
from tinybptt import nn, optim
from tinybptt.nn import functional as F
from training_cases import train_step


def _train(cell, seed, steps, results, key, barrier=None):
    """Train a small model; store its final parameters and losses under results[key]."""
    if barrier is not None:
        barrier.wait()
    rng = np.random.default_rng(seed)
    layer = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](3, 16, num_layers=2)
    head = nn.Linear(16, 2)
    for p in layer.parameters() + head.parameters():
        p.data = rng.uniform(-0.3, 0.3, p.shape)
    params = layer.parameters() + head.parameters()
    opt = optim.Adam(params, lr=1e-2)
    losses = []
    x = rng.standard_normal((30, 8, 3))
    y = rng.integers(0, 2, (30, 8))
    for _ in range(steps):
        out, _ = layer(x)
        losses.append(train_step(F.cross_entropy(head(out), y), opt, params))
    results[key] = (losses, [p.data.copy() for p in params])


def test_two_threads_train_independent_models_exactly_as_alone(c_backend):
    jobs = [("lstm", 1), ("gru", 2)]
    alone = {}
    for cell, seed in jobs:
        _train(cell, seed, 25, alone, cell)
    together = {}
    barrier = threading.Barrier(len(jobs))
    threads = [threading.Thread(target=_train, args=(cell, seed, 25, together, cell, barrier)) for cell, seed in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for cell, _ in jobs:
        assert cell in together, "thread %s died" % cell
        losses, params = together[cell]
        assert losses == alone[cell][0], cell  # bit for bit
        for p, q in zip(params, alone[cell][1]):
            np.testing.assert_array_equal(p, q)


def test_no_grad_and_node_scope_are_per_thread():
    inside = threading.Event()
    checked = threading.Event()
    seen = {}

    def evaluator():
        w = tb.tensor(np.ones((2, 2)), requires_grad=True)
        with tb.no_grad(), tb.node_scope(label="eval", step=7):
            inside.set()
            assert checked.wait(30)
            y = w @ w
            seen["eval"] = (y.requires_grad, tb.is_grad_enabled())

    t = threading.Thread(target=evaluator)
    t.start()
    assert inside.wait(30)
    # the other thread is inside no_grad() and node_scope() right now
    w = tb.tensor(np.ones((2, 2)), requires_grad=True)
    y = (w @ w).tanh()
    seen["main"] = (y.requires_grad, tb.is_grad_enabled(), y.node.label, y.node.step)
    checked.set()
    t.join(30)
    y.sum().backward()
    assert seen["main"] == (True, True, None, None)
    assert seen["eval"] == (False, False)
    assert w.grad is not None and np.all(np.isfinite(w.grad))


def test_anomaly_mode_in_one_thread_does_not_affect_another():
    from tinybptt import inspect
    inside, done = threading.Event(), threading.Event()

    def watcher():
        with inspect.detect_anomaly():
            inside.set()
            done.wait(30)

    t = threading.Thread(target=watcher)
    t.start()
    try:
        assert inside.wait(30)
        y = tb.tensor(np.array([-1.0]), requires_grad=True).log()  # NaN here, outside anomaly mode
        assert np.isnan(y.data[0])
    finally:
        done.set()
        t.join(30)

"""kernels.workspace: the forward's big arrays are reused across steps, and never while anything uses them.

The reference for every gradient is the same computation with the pool turned
off (``set_limit(0)``: plain ``np.empty``), and the NumPy backend where a second
opinion is cheap.
"""
import threading

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn
from tinybptt.kernels import workspace

# T, B, H: a (T, B, H) array is 80 KiB in float32 and 160 KiB in float64, above workspace.MIN_BYTES
T, B, I, H = 20, 16, 3, 64
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@pytest.fixture
def pool(c_backend):
    """An empty pool with the default limit, the C backend active; restored afterwards."""
    old = workspace.limit()
    workspace.clear()
    yield workspace
    workspace.set_limit(old)
    workspace.clear()


def _layer(cell, dtype, seed=0):
    return CELLS[cell](I, H, dtype=dtype, generator=seed)


def _x(seed, dtype):
    return np.random.default_rng(seed).standard_normal((T, B, I)).astype(dtype)


def _loss(layer, x):
    out, _ = layer(x)
    return (out * out).sum() + out[-1].sum()


def _grads(layer):
    return [p.grad.copy() for p in layer.parameters()]


def _reference(cell, dtype, xs):
    """Gradients of each loss in ``xs``, one graph at a time, with the pool off."""
    workspace.set_limit(0)
    try:
        out = []
        for x in xs:
            layer = _layer(cell, dtype)
            _loss(layer, x).backward()
            out.append(_grads(layer))
        return out
    finally:
        workspace.set_limit(256 * 1024 * 1024)


def _assert_same(got, want, dtype):
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_two_live_graphs_backward_both(pool, cell, dtype):
    """Graphs 1 and 2 alive at once, after a step whose arrays are back in the pool; backward 2, then 1:
    both gradients are right, and the two graphs' saved arrays never share memory."""
    xs = [_x(k, dtype) for k in range(3)]
    want = _reference(cell, dtype, xs[1:])
    layer0 = _layer(cell, dtype)
    _loss(layer0, xs[0]).backward()  # a finished step: its arrays are free for reuse
    made = pool.stats()["made"]
    l1, l2 = _layer(cell, dtype), _layer(cell, dtype)
    loss1, loss2 = _loss(l1, xs[1]), _loss(l2, xs[2])
    assert pool.stats()["reused"] > 0 and pool.stats()["made"] > made  # graph 1 reused, graph 2 could not
    saved = [n.saved_tensors[0] for loss in (loss1, loss2) for n in tb.autograd.topological_order(loss)
             if n.op.endswith("sequence")]
    assert len(saved) == 2
    a1 = [getattr(saved[0], k) for k in ("out", "c_out", "gates", "tanh_c", "hn") if getattr(saved[0], k) is not None]
    a2 = [getattr(saved[1], k) for k in ("out", "c_out", "gates", "tanh_c", "hn") if getattr(saved[1], k) is not None]
    assert not any(np.shares_memory(a, b) for a in a1 for b in a2)
    loss2.backward()
    _loss(_layer(cell, dtype), xs[0]).backward()  # another step in between, while graph 1 waits
    loss1.backward()
    _assert_same(_grads(l1), want[0], dtype)
    _assert_same(_grads(l2), want[1], dtype)


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_numpy_backend_agrees(pool, cell):
    """The same two-graph schedule on the C backend (pooled) and the NumPy reference kernels."""
    xs = [_x(k, np.float64) for k in range(2)]
    layers = [_layer(cell, np.float64) for _ in xs]
    losses = [_loss(layer, x) for layer, x in zip(layers, xs)]
    for loss in reversed(losses):
        loss.backward()
    tb.set_backend("numpy")
    try:
        for layer, x in zip(layers, xs):
            ref = _layer(cell, np.float64)
            _loss(ref, x).backward()
            _assert_same(_grads(layer), _grads(ref), np.float64)
    finally:
        tb.set_backend("c")


def test_outputs_the_caller_keeps_are_never_reused(pool):
    """More kept outputs than the pool holds per shape, and a kept slice (h_n = out[-1]) of a dropped
    output: none is overwritten by later forward passes."""
    layer = _layer("lstm", np.float64)
    kept, copies = [], []
    for k in range(workspace.PER_SHAPE + 3):  # more than the pool keeps of one shape
        out, _ = layer(_x(k, np.float64))
        kept.append(out)
        copies.append(out.data.copy())
    last = layer(_x(99, np.float64))[0][-1]  # only a view of the output survives
    last_copy = last.data.copy()
    for k in range(5):
        _loss(layer, _x(100 + k, np.float64)).backward()
    for out, copy in zip(kept, copies):
        np.testing.assert_array_equal(out.data, copy)
    np.testing.assert_array_equal(last.data, last_copy)
    addresses = [o.data.__array_interface__["data"][0] for o in kept]
    assert len(set(addresses)) == len(addresses)


def test_a_finished_step_s_arrays_are_reused(pool):
    """In a plain loop the second step's forward gets the first step's memory back, and the pool stays
    at one step's arrays."""
    layer = _layer("lstm", np.float32)
    before = pool.stats()
    seen = []
    for k in range(4):
        out = layer(_x(k, np.float32))[0]
        seen.append(out.data.__array_interface__["data"][0])
        ((out * out).sum()).backward()
        del out
    assert len(set(seen)) == 1
    st = pool.stats()
    # the forward's out, c_out, gates, tanh_c and the backward's gradient trace (h and c): made once,
    # reused three times
    assert (st["arrays"], st["made"] - before["made"], st["reused"] - before["reused"]) == (6, 6, 18)


def test_no_grad_and_small_arrays_bypass_the_pool(pool):
    before = pool.stats()
    layer = _layer("gru", np.float32)
    with tb.no_grad():
        layer(_x(0, np.float32))
    small = nn.GRU(I, 4)
    _loss(small, np.ones((3, 2, I))).backward()
    assert pool.stats() == dict(before, arrays=0, bytes=0)


def test_limit_and_clear(pool):
    layer = _layer("lstm", np.float64)  # one forward: 3 arrays of 160 KiB and gates of 640 KiB
    pool.set_limit(1_000_000)
    _loss(layer, _x(0, np.float64)).backward()
    st = pool.stats()
    assert 0 < st["bytes"] <= 1_000_000 and st["arrays"] < 4
    held = layer(_x(1, np.float64))[0]  # in use: clear() must not disturb it
    copy = held.data.copy()
    pool.clear()
    assert pool.stats()["arrays"] == 0
    _loss(layer, _x(2, np.float64)).backward()
    np.testing.assert_array_equal(held.data, copy)
    pool.set_limit(0)
    assert pool.stats()["arrays"] == 0
    _loss(layer, _x(3, np.float64)).backward()
    assert pool.stats()["arrays"] == 0
    with pytest.raises(ValueError, match="workspace.set_limit"):
        pool.set_limit(-1)


def test_two_threads_training_at_once(pool):
    """Two threads, each training its own LSTM through the shared pool, get what each gets alone."""
    def train(seed, out):
        layer = _layer("lstm", np.float64, seed)
        opt = tb.optim.SGD(layer.parameters(), lr=0.01)
        for k in range(6):
            opt.zero_grad()
            _loss(layer, _x(seed * 100 + k, np.float64)).backward()
            opt.step()
        out[seed] = [p.data.copy() for p in layer.parameters()]

    alone, together = {}, {}
    for seed in (1, 2):
        train(seed, alone)
    threads = [threading.Thread(target=train, args=(seed, together)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed in (1, 2):
        for a, b in zip(together[seed], alone[seed]):
            np.testing.assert_array_equal(a, b)


def test_zeros_is_zero_even_in_a_reused_array(pool):
    dt = np.dtype(np.float32)
    a = pool.empty((64, 1024), dt)
    a.fill(7.0)
    address = a.__array_interface__["data"][0]
    del a
    z = pool.zeros((64, 1024), dt)
    assert z.__array_interface__["data"][0] == address  # the same memory, handed out again
    assert z.dtype == dt and z.shape == (64, 1024) and not z.any()

"""Long-run stability: memory stays flat, graphs are freed, nothing needs the cycle collector.

Every test here runs with Python's cyclic garbage collector DISABLED: if a graph,
a saved array or a gradient trace were kept alive by a reference cycle, it would
never be freed and memory would grow.  Reference counting alone must free
everything.

1. A small LSTM trains for thousands of steps: traced memory (tracemalloc sees
   Python objects and NumPy's array buffers) and RSS stay flat, and training works.
2. After ``backward()`` every node has dropped what it saved; once the caller lets
   go of the loss and outputs, every intermediate tensor is gone -- in every graph
   mode, with checkpointing, in anomaly mode.
3. The cycle collector finds nothing tinybptt made (no reference cycles).
4. Truncated BPTT over 100 000 steps (chunks, k1 = k2) and the step-by-step
   strategy (k2 > k1, which keeps graphs with retain_graph) do not grow.

About the thresholds.  CPython keeps freed tuples of each length on free lists
(up to 2000 per length); code that builds a tuple of one length and frees one of
another grows those lists by a few dozen bytes per call until they are full.
``_saturate_free_lists`` fills them first, so what is left is real growth.  A leak
of one graph per step here would be tens of kilobytes per step.
"""
import gc
import os
import time
import tracemalloc
import weakref

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import bptt, nn, optim
from tinybptt.backprop import topological_order
from tinybptt.kernels.recurrent import RecurrentSaved
from tinybptt.nn import functional as F
from training_cases import train_step


@pytest.fixture
def no_gc():
    """The cyclic garbage collector off for the test (reference counting only)."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _saturate_free_lists():
    """Fill CPython's tuple free lists so that later growth is real growth (see the module doc)."""
    junk = [tuple(range(n)) for n in range(1, 21) for _ in range(2100)]
    del junk


def _assert_flat(series, per_sample, what, skip=0):
    """``series`` of memory readings taken at regular intervals does not grow steadily.

    A leak adds to every interval, so the median increment would exceed ``per_sample``
    bytes.  Allocators and NumPy make an occasional one-off allocation (NumPy has one of
    about 1-2 MB somewhere after ten thousand ``__array_interface__`` reads, which
    checkpointed layers make on every backward): one jump is allowed, a staircase is not.
    """
    series = np.asarray(series, np.int64)[skip:]  # (skip readings still warming up)
    inc = np.diff(series)
    jumps = int((inc > 256 * 1024).sum())
    total = int(series[-1] - series[0])
    assert np.median(inc) <= per_sample and jumps <= 1 and total < 4 * 2**20, (
        "%s: memory grows: median %+d B per interval, %d jumps, %+d B in all; readings %s"
        % (what, np.median(inc), jumps, total, list(series)))


def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _lstm_trainer(mode="sequence", checkpoint=None, T=20, B=4, I=2, H=8, seed=0):
    """A tiny LSTM regression model and one training step (forward, backward, clip, Adam)."""
    nn.manual_seed(seed)
    lstm = nn.LSTM(I, H, mode=mode, checkpoint=checkpoint)
    head = nn.Linear(H, 1)
    params = lstm.parameters() + head.parameters()
    opt = optim.Adam(params, lr=1e-2)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I))
    y = x[:, :, :1].cumsum(axis=0) / np.sqrt(np.arange(1, T + 1))[:, None, None]  # a running mean to learn

    def step():
        out, _ = lstm(x)
        return train_step(F.mse_loss(head(out), y), opt, params)

    return lstm, step


# --------------------------------------------------------------------------- 1. thousands of steps


def test_thousands_of_training_steps_keep_memory_flat(no_gc):
    lstm, step = _lstm_trainer()
    for _ in range(100):  # warm-up: caches, lazily built functions, Adam state
        first = step()
    _saturate_free_lists()
    steps, every = 2000, 100
    traced = np.zeros(steps // every, np.int64)  # preallocated: the measurement must not allocate
    rss0 = _rss_bytes()
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        for i in range(steps):
            last = step()
            if i % every == every - 1:
                traced[i // every] = tracemalloc.get_traced_memory()[0]
        elapsed = time.perf_counter() - t0
    finally:
        tracemalloc.stop()
    rss1 = _rss_bytes()
    print("2000 steps in %.1f s; traced memory %d KB ... %d KB, RSS %+.1f MB"
          % (elapsed, traced[0] // 1024, traced[-1] // 1024,
             (rss1 - rss0) / 2**20 if rss0 and rss1 else float("nan")))
    # a leak of one graph per step would be ~30 KB per step, 3 MB per interval
    _assert_flat(traced, 1024, "2000 training steps")
    if rss0 and rss1:
        assert rss1 - rss0 < 16 * 2**20
    assert np.isfinite(last) and last < 0.5 * first  # and it did learn


@pytest.mark.parametrize("mode, checkpoint", [("ops", None), ("cell", None), ("sequence", 5)])
def test_other_graph_modes_keep_memory_flat(no_gc, mode, checkpoint):
    lstm, step = _lstm_trainer(mode=mode, checkpoint=checkpoint, T=8, B=2, H=4)
    for _ in range(60):  # warm-up: free lists and caches fill over the first tens of steps
        step()
    _saturate_free_lists()
    steps, every = {"ops": (100, 10), "cell": (300, 30), "sequence": (400, 40)}[mode]
    traced = np.zeros(steps // every + 1, np.int64)
    tracemalloc.start()
    try:
        step()
        traced[0] = tracemalloc.get_traced_memory()[0]
        for i in range(steps):
            step()
            if i % every == every - 1:
                traced[i // every + 1] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    _assert_flat(traced, 512, "%s mode" % mode, skip=2)


# --------------------------------------------------------------------------- 2. graphs are freed


def _graph_refs(root):
    """Weak references to every non-leaf tensor of the graph behind ``root`` and to the
    kernel workspaces (gates, tanh(c), hn) that fused recurrent nodes saved."""
    tensors, saved = [weakref.ref(root)], []
    for node in topological_order(root):
        for t in node.inputs or ():
            if isinstance(t, tb.Tensor) and t._ctx is not None:
                tensors.append(weakref.ref(t))
        for s in node.saved_tensors or ():
            if isinstance(s, RecurrentSaved):
                saved += [weakref.ref(a) for a in (s.gates, s.tanh_c, s.hn) if a is not None]
    return tensors, saved


@pytest.mark.parametrize("mode", ["sequence", "cell", "ops"])
def test_intermediates_go_at_backward_while_the_loss_is_still_held(no_gc, backend, mode):
    """In a training loop the previous loss lives until the next forward is done: backward
    must not leave the whole graph's tensors reachable from it (that would double the peak)."""
    layer = nn.LSTM(3, 4, num_layers=2, mode=mode)
    layer.record_grad_trace = mode != "ops"  # (ops mode's trace keeps h_t and c_t by design, in the layer)
    head = nn.Linear(4, 2)
    x = np.random.default_rng(1).standard_normal((6, 2, 3))
    out = layer(x)[0]  # (h_n, c_n) dropped: a graph the caller keeps keeps what it needs
    logits = head(out)
    loss = F.cross_entropy(logits, np.zeros((6, 2), int))
    held = {id(t) for t in (loss, out, logits)}
    refs = [weakref.ref(t) for node in topological_order(loss) for t in node.inputs or ()
            if isinstance(t, tb.Tensor) and t._ctx is not None and id(t) not in held]
    assert len(refs) >= 2  # at least the first layer's output and the log-probabilities
    loss.backward()
    alive = [r() for r in refs if r() is not None]
    assert not alive, "%d intermediate tensors are still reachable from the loss, e.g. %r" % (len(alive), alive[0])
    assert loss.item() == loss.item() and out.shape == (6, 2, 4)  # what the caller holds is intact


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("mode, checkpoint, trace", [
    ("sequence", None, True), ("cell", None, True), ("ops", None, False), ("sequence", 3, True)])
def test_graph_is_freed_after_backward(no_gc, backend, cell, mode, checkpoint, trace):
    layer = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN}[cell](3, 4, num_layers=2, mode=mode,
                                                                        checkpoint=checkpoint)
    layer.record_grad_trace = trace
    head = nn.Linear(4, 2)
    x = np.random.default_rng(0).standard_normal((7, 2, 3))
    out, state = layer(x)
    loss = F.cross_entropy(head(out), np.zeros((7, 2), int))
    nodes = topological_order(loss)
    tensors, saved = _graph_refs(loss)
    assert len(tensors) > 3 and (mode != "sequence" or checkpoint or cell == "rnn_tanh" or saved)
    loss.backward()
    # backward dropped what every node saved, although the caller still holds the loss
    assert all(n.freed and n.saved_tensors is None for n in nodes)
    assert all(r() is None for r in saved), "a fused node's workspace outlived backward"
    if trace:
        assert layer.grad_trace.norms().shape == (2, 7)
    del nodes, out, state, loss
    alive = [r() for r in tensors if r() is not None]
    assert not alive, "%d graph tensors outlived their graph, e.g. %r" % (len(alive), alive[0])
    for p in layer.parameters() + head.parameters():  # the gradients are what remains
        assert p.grad is not None and p.grad.shape == p.shape


def test_ops_mode_with_grad_trace_keeps_only_the_last_graph(no_gc):
    """In mode='ops' grad_trace reads retained .grad of each h_t, so the layer keeps the last
    unrolled graph until its next forward -- one graph, never more."""
    layer = nn.GRU(2, 3, mode="ops")
    x = np.ones((5, 1, 2))
    out, _ = layer(x)
    loss = (out * out).sum()
    first, _ = _graph_refs(loss)
    loss.backward()
    del out, loss
    assert any(r() is not None for r in first)  # held for grad_trace
    assert layer.grad_trace.norms().shape == (1, 5)
    out, _ = layer(x)  # the next forward lets the previous graph go
    assert all(r() is None for r in first)
    layer.record_grad_trace = False
    loss = (out * out).sum()
    second, _ = _graph_refs(loss)
    loss.backward()
    out, _ = layer(x)
    del loss
    assert all(r() is None for r in second)


def test_anomaly_mode_and_walk_free_the_graph(no_gc):
    from tinybptt import inspect
    layer = nn.LSTM(2, 3, mode="cell")
    out, _ = layer(np.ones((4, 1, 2)))
    loss = (out * out).sum()
    refs, _ = _graph_refs(loss)
    with inspect.detect_anomaly():
        loss.backward()
    del out, loss
    assert all(r() is None for r in refs)
    out, _ = layer(np.ones((4, 1, 2)))
    loss = (out * out).sum()
    refs, _ = _graph_refs(loss)
    w = inspect.walk(loss)
    assert len(w.records) > 4
    del out, loss, w
    assert all(r() is None for r in refs)


# --------------------------------------------------------------------------- 3. no reference cycles


def test_nothing_needs_the_cycle_collector():
    """Run every kind of graph with DEBUG_SAVEALL: whatever the collector would have to free
    (objects in reference cycles) ends up in gc.garbage -- none of it may be tinybptt's."""
    from tinybptt import inspect
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.garbage.clear()
        for mode, ck in (("sequence", None), ("cell", None), ("ops", None), ("sequence", 2)):
            lstm, step = _lstm_trainer(mode=mode, checkpoint=ck, T=5, B=2, H=3)
            for _ in range(3):
                step()
            lstm.grad_trace
        layer = nn.GRU(1, 3)
        bptt.truncated_bptt(layer, np.ones((30, 1, 1)), np.ones((30, 1, 3)), F.mse_loss,
                            optim.SGD(layer.parameters(), lr=0.1), k1=3, k2=7)
        bptt.truncated_bptt(layer, np.ones((30, 1, 1)), np.ones((30, 1, 3)), F.mse_loss,
                            optim.SGD(layer.parameters(), lr=0.1), k1=10)
        out, _ = layer(np.ones((4, 1, 1)))
        with inspect.detect_anomaly():
            (out * out).sum().backward()
        out, _ = layer(np.ones((4, 1, 1)))
        inspect.walk((out * out).sum())
        tb.gradcheck(lambda a: (a.tanh() * a).sum(), [tb.tensor(np.ones(3), requires_grad=True)])
        del out
        gc.collect()
        ours = [o for o in gc.garbage if type(o).__module__.startswith("tinybptt")
                or isinstance(o, np.ndarray)]
        assert not ours, "objects kept alive only by reference cycles: %s" % sorted(
            {type(o).__name__ for o in ours})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


# --------------------------------------------------------------------------- 4. truncated BPTT


class _Tagger(nn.Module):
    """GRU + linear head with the (x_chunk, state) -> (y_chunk, state) convention."""

    def __init__(self, H=4):
        super().__init__()
        self.rnn = nn.GRU(1, H)
        self.head = nn.Linear(H, 1)

    def forward(self, x, state):
        out, h = self.rnn(x, state)
        return self.head(out), h


def _tbptt_memory(T, k1, k2, seed=0):
    """Traced memory after each update of truncated_bptt over T steps (inputs allocated before)."""
    nn.manual_seed(seed)
    model = _Tagger()
    opt = optim.SGD(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, 1, 1))
    y = np.roll(x, 1, axis=0)  # predict the previous input
    n_updates = len(bptt.update_times(T, k1))
    mem = np.zeros(n_updates, np.int64)
    detached = np.zeros(n_updates, bool)

    def on_update(info):
        mem[info.index] = tracemalloc.get_traced_memory()[0]
        detached[info.index] = all(s._ctx is None for s in ([info.state] if isinstance(info.state, tb.Tensor)
                                                             else []))

    _saturate_free_lists()
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        res = bptt.truncated_bptt(model, x, y, lambda a, b: F.mse_loss(a, b, reduction="sum"), opt, k1=k1, k2=k2,
                                  on_update=on_update)
        elapsed = time.perf_counter() - t0
    finally:
        tracemalloc.stop()
    return res, mem, elapsed


def test_truncated_bptt_over_100k_steps_does_not_grow(no_gc):
    T, k = 100_000, 200
    res, mem, elapsed = _tbptt_memory(T, k, k)
    assert res.updates == T // k == len(res.losses)
    assert np.all(np.isfinite(res.losses)) and res.state._ctx is None
    print("truncated BPTT, T=%d, k1=k2=%d: %d updates in %.1f s; traced memory %d KB -> %d KB"
          % (T, k, res.updates, elapsed, mem[0] // 1024, mem[-1] // 1024))
    # readings every 10 updates: the list of losses adds ~32 B per update; one kept chunk graph ~40 KB
    _assert_flat(mem[::10], 10 * 128, "truncated BPTT over %d steps" % T)


def test_truncated_bptt_with_overlapping_windows_does_not_grow(no_gc):
    """k2 > k1 keeps each step's graph (retain_graph=True) while a later window needs it:
    the history must be trimmed as it goes, not kept for the whole sequence."""
    T, k1, k2 = 800, 5, 15
    res, mem, elapsed = _tbptt_memory(T, k1, k2)
    assert res.updates == T // k1
    print("truncated BPTT, T=%d, k1=%d, k2=%d: %d updates in %.1f s; traced memory %d KB -> %d KB"
          % (T, k1, k2, res.updates, elapsed, mem[0] // 1024, mem[-1] // 1024))
    # one kept step graph per step would be kilobytes per update; the losses list adds ~32 B
    _assert_flat(mem[::10], 10 * 256, "truncated BPTT k1=%d k2=%d" % (k1, k2), skip=2)

"""Binomial checkpointing (nn.revolve): the schedule is optimal, the executor is BPTT.

* the closed form ``revolve_cost`` equals a brute-force shortest-path search over
  every possible schedule (tiny cases) and a dynamic program (larger ones);
* every schedule is legal, stores at most ``budget`` states and costs exactly
  ``revolve_cost``;
* ``revolve_sequence`` gives full BPTT's outputs and gradients (RNN, LSTM, GRU;
  float64 and float32; both backends; one and two layers);
* its memory is bounded by the budget, not by T; bad budgets are clear errors.
"""
import collections
import heapq
import tracemalloc
from functools import lru_cache
from math import comb

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn
from tinybptt.nn.revolve import (default_segment, revolve_cost, revolve_schedule, revolve_sequence,
                                 revolve_split)

CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


# ------------------------------------------------------------------ the schedule is optimal


def brute_force_cost(n, s):
    """Fewest advances + tapes over ALL schedules (Dijkstra over machine configurations).

    A configuration is (current state or None, frozenset of stored states,
    k = segments not yet backpropagated).  Storing, restoring and freeing are
    free; advancing costs 1; taping segment k-1 (from state k-1) and
    backpropagating it costs 1.  The initial state 0 starts in a slot; nothing
    forces a schedule to keep it there.
    """
    start = (0, frozenset([0]), n)
    dist = {start: 0}
    heap = [(0, 0, start)]
    tie = 0
    while heap:
        d, _, conf = heapq.heappop(heap)
        if d > dist[conf]:
            continue
        cur, stored, k = conf
        if k == 0:
            return d
        moves = []
        if cur is not None:
            if cur < k - 1:
                moves.append((1, (cur + 1, stored, k)))                  # advance
            if cur == k - 1:
                moves.append((1, (None, stored, k - 1)))                 # tape + backward
            if cur not in stored and len(stored) < s:
                moves.append((0, (cur, stored | {cur}, k)))              # store
        for i in stored:
            moves.append((0, (i, stored, k)))                            # restore
            moves.append((0, (cur, stored - {i}, k)))                    # free
        for cost, nxt in moves:
            if d + cost < dist.get(nxt, 1 << 60):
                dist[nxt] = d + cost
                tie += 1
                heapq.heappush(heap, (d + cost, tie, nxt))
    raise AssertionError("no schedule found")


@lru_cache(maxsize=None)
def dp_cost(n, s):
    """Gruslys et al.'s recursion: advance y, store, right part with s-1 slots, left part with s."""
    if n == 1:
        return 1
    if s == 1:
        return n * (n + 1) // 2
    return min(y + dp_cost(n - y, s - 1) + dp_cost(y, s) for y in range(1, n))


@pytest.mark.parametrize("s", [1, 2, 3])
def test_closed_form_is_the_brute_force_minimum(s):
    for n in range(1, 8):
        assert revolve_cost(n, s) == brute_force_cost(n, s), (n, s)


def test_closed_form_equals_the_dynamic_program():
    for s in range(1, 8):
        for n in range(1, 90):
            assert revolve_cost(n, s) == dp_cost(n, s), (n, s)


def test_known_values():
    # one slot: segment i is recomputed from the start every time -> n(n+1)/2
    assert revolve_cost(10, 1) == 55
    # slots for every state: one sweep of advances, then every segment taped once
    assert revolve_cost(10, 10) == revolve_cost(10, 50) == 19
    # C(s + r, s) segments are the most s slots reverse with r advances each:
    # 3 slots, r = 2 -> C(5, 3) = 10 segments, n + r*n - C(s+r, s+1) = 10 + 20 - 5
    assert revolve_cost(10, 3) == 25
    assert revolve_cost(11, 3) == 11 + 3 * 11 - comb(6, 4)


def simulate(n, s, actions):
    """Execute a schedule on a model machine; return (evaluations, most states stored)."""
    cur, stored, tape, done, evals, most = 0, set(), None, n, 0, 0
    for op, i in actions:
        if op == "store":
            assert cur == i and i not in stored
            stored.add(i)
            most = max(most, len(stored))
        elif op == "restore":
            assert i in stored
            cur = i
        elif op == "free":
            stored.remove(i)
        elif op == "advance":
            assert cur == i and i < done - 1, "advance %d from state %s" % (i, cur)
            cur, evals = i + 1, evals + 1
        elif op == "tape":
            assert cur == i == done - 1 and tape is None  # segments are reversed last first
            tape, cur, evals = i, None, evals + 1
        elif op == "backward":
            assert tape == i
            tape, done = None, i
        else:
            raise AssertionError(op)
    assert done == 0 and tape is None and not stored
    return evals, most


@pytest.mark.parametrize("n, s", [(n, s) for s in (1, 2, 3, 5) for n in range(1, 41)]
                         + [(1000, 10), (5000, 3), (777, 40), (60, 200)])
def test_schedule_is_legal_optimal_and_within_budget(n, s):
    evals, most = simulate(n, s, revolve_schedule(n, s))
    assert evals == revolve_cost(n, s)
    assert most <= s


def test_forward_sweep_comes_first():
    """The executor's forward pass runs the actions up to the first tape: a single sweep."""
    acts = list(revolve_schedule(30, 4))
    first = [a for a in acts[:acts.index(("tape", 29))]]
    assert [a.index for a in first if a.op == "advance"] == list(range(29))
    assert {a.op for a in first} == {"store", "advance"}


def test_split_is_inside_the_optimal_range():
    for s in range(2, 6):
        for n in range(2, 60):
            y = revolve_split(n, s)
            assert 1 <= y < n and y + dp_cost(n - y, s - 1) + dp_cost(y, s) == dp_cost(n, s)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None, "3"])
def test_bad_budgets_are_clear_errors(bad):
    with pytest.raises(ValueError, match="budget must be an integer >= 1"):
        revolve_cost(10, bad)
    with pytest.raises(ValueError, match="budget must be an integer >= 1"):
        list(revolve_schedule(10, bad))
    lstm = nn.LSTM(2, 3)
    with pytest.raises(ValueError, match="revolve_sequence: budget"):
        revolve_sequence(lstm, np.zeros((5, 1, 2)), budget=bad)


def test_other_bad_arguments():
    lstm = nn.LSTM(2, 3)
    with pytest.raises(ValueError, match="segment must be a positive number of time steps, got 0"):
        revolve_sequence(lstm, np.zeros((5, 1, 2)), budget=2, segment=0)
    with pytest.raises(ValueError, match="the number of segments must be an integer >= 1"):
        revolve_cost(0, 3)
    with pytest.raises(TypeError, match="expected an nn.RNN, nn.LSTM or nn.GRU layer, got Linear"):
        revolve_sequence(nn.Linear(2, 3), np.zeros((5, 1, 2)), budget=2)
    with pytest.raises(tb.ShapeError, match="input must have shape"):
        revolve_sequence(lstm, np.zeros((5, 1, 4)), budget=2)


# ------------------------------------------------------------------ the executor is BPTT


def run_layer(layer, x, h0, c0, R, revolve=None):
    """Forward + backward of a loss reading out, h_n and c_n; returns every array that matters."""
    xt, h0t = tb.tensor(x, requires_grad=True), tb.tensor(h0, requires_grad=True)
    c0t = tb.tensor(c0, requires_grad=True) if c0 is not None else None
    state = (h0t, c0t) if c0 is not None else h0t
    out, st = layer(xt, state) if revolve is None else revolve_sequence(layer, xt, state, **revolve)
    h_n = st[0] if c0 is not None else st
    loss = (out * R).sum() + (h_n * h_n).sum()
    if c0 is not None:
        loss = loss + (st[1] * st[1]).sum()
    loss.backward()
    per_step = {"out": out.data, "h_n": h_n.data, "dx": xt.grad, "dh0": h0t.grad,
                "trace": layer.grad_trace.h}
    if c0 is not None:
        per_step.update(c_n=st[1].data, dc0=c0t.grad)
    sums = {name: p.grad.copy() for name, p in layer.named_parameters()}
    return per_step, sums


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("L, T, budget, segment", [(1, 17, 1, 1), (1, 17, 3, 2), (2, 23, 2, 3), (1, 9, 50, 4),
                                                   (2, 12, 4, 12)])
def test_revolve_equals_full_bptt(backend, cell, dtype, L, T, budget, segment):
    B, I, H = 2, 3, 4
    rng = np.random.default_rng(T * budget + segment)
    nn.manual_seed(3)
    full = CLASSES[cell](I, H, num_layers=L, dtype=dtype)
    rev = CLASSES[cell](I, H, num_layers=L, dtype=dtype)
    rev.load_state_dict(full.state_dict())
    for m in (full, rev):
        m.record_grad_trace = True
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((L, B, H)).astype(dtype)
    c0 = rng.standard_normal((L, B, H)).astype(dtype) if cell == "lstm" else None
    R = rng.standard_normal((T, B, H)).astype(dtype)
    ref_steps, ref_sums = run_layer(full, x, h0, c0, R)
    steps, sums = run_layer(rev, x, h0, c0, R, revolve=dict(budget=budget, segment=segment))
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)
    for name, a in ref_steps.items():
        assert steps[name].dtype == a.dtype
        if backend == "numpy" or segment >= T:
            # per-step arrays: the same operations in the same order -> the same bits
            np.testing.assert_array_equal(steps[name], a, err_msg=name)
        else:
            # the C GEMM may pick another blocking for a shorter segment (rounding only)
            np.testing.assert_allclose(steps[name], a, err_msg=name, **tol)
    for name, a in ref_sums.items():
        # sums over time, added segment by segment: equal up to the order of the additions
        assert sums[name].dtype == a.dtype
        np.testing.assert_allclose(sums[name], a, err_msg=name, **tol)
        if segment >= T:
            np.testing.assert_array_equal(sums[name], a, err_msg=name)
    st = rev.checkpoint_stats
    assert st.max_stored <= budget
    assert st.evaluations == revolve_cost(-(-T // segment), budget)


def test_revolve_agrees_with_torch():
    torch = pytest.importorskip("torch")
    T, B, I, H = 30, 2, 3, 5
    rng = np.random.default_rng(0)
    ours = nn.LSTM(I, H)
    ref = torch.nn.LSTM(I, H).double()
    with torch.no_grad():
        for name, p in ours.named_parameters():
            getattr(ref, name).copy_(torch.from_numpy(p.data))
    x = rng.standard_normal((T, B, I))
    xt = tb.tensor(x, requires_grad=True)
    out, (h_n, c_n) = revolve_sequence(ours, xt, budget=3, segment=2)
    (out.sum() + (c_n * c_n).sum()).backward()
    xr = torch.tensor(x, requires_grad=True)
    out_r, (h_r, c_r) = ref(xr)
    (out_r.sum() + (c_r * c_r).sum()).backward()
    np.testing.assert_allclose(out.data, out_r.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xt.grad, xr.grad.numpy(), rtol=1e-9, atol=1e-11)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, getattr(ref, name).grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=name)


def test_gradcheck():
    nn.manual_seed(0)
    gru = nn.GRU(2, 3, num_layers=2)
    x = tb.tensor(np.random.default_rng(1).standard_normal((7, 2, 2)), requires_grad=True)
    h0 = tb.tensor(np.random.default_rng(2).standard_normal((2, 2, 3)), requires_grad=True)

    def f(x, h0, *params):
        out, h_n = revolve_sequence(gru, x, h0, budget=2, segment=2)
        return (out * out).sum() + h_n.sum()

    assert tb.gradcheck(f, [x, h0] + gru.parameters())


def test_graph_node_no_grad_and_batch_first():
    lstm = nn.LSTM(2, 3, batch_first=True)
    x = np.random.default_rng(0).standard_normal((4, 9, 2))  # (B, T, I)
    out, (h_n, c_n) = revolve_sequence(lstm, tb.tensor(x, requires_grad=True), budget=2, segment=2)
    assert out.shape == (4, 9, 3) and h_n.shape == (1, 4, 3)
    assert h_n._ctx.fn.op_name() == "lstm_revolve"  # (out is its batch-first transpose)
    ref, (ref_h, _) = lstm(x)
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-13)
    with tb.no_grad():  # inference: the same numbers, nothing kept
        out2, _ = revolve_sequence(lstm, x, budget=2, segment=2)
    np.testing.assert_array_equal(out2.data, out.data)
    # unbatched input
    out3, (h3, c3) = revolve_sequence(lstm, x[0], budget=1, segment=3)
    assert out3.shape == (9, 3) and h3.shape == (1, 3)
    np.testing.assert_allclose(out3.data, ref.data[0], rtol=1e-13)


def test_backward_twice_with_retain_graph():
    rnn = nn.RNN(2, 3)
    x = tb.tensor(np.random.default_rng(0).standard_normal((11, 1, 2)))
    out, h_n = revolve_sequence(rnn, x, budget=2, segment=2)
    loss = (out * out).sum()
    loss.backward(retain_graph=True)
    first = [p.grad.copy() for p in rnn.parameters()]
    loss.backward()
    for g1, p in zip(first, rnn.parameters()):
        np.testing.assert_allclose(p.grad, 2 * g1, rtol=1e-14)


# ------------------------------------------------------------------ memory is bounded by the budget


def test_stored_states_never_exceed_the_budget():
    T, B, H = 200, 2, 4
    lstm = nn.LSTM(3, H)
    x = np.random.default_rng(0).standard_normal((T, B, 3))
    state_bytes = 2 * B * H * 8  # h and c, float64
    for budget, segment in [(1, 10), (2, 5), (5, 1), (7, 3), (100, 1)]:
        out, _ = revolve_sequence(lstm, tb.tensor(x), budget=budget, segment=segment)
        out.sum().backward()
        st = lstm.checkpoint_stats
        n = -(-T // segment)
        assert st.max_stored == min(budget, n)
        assert st.stored_bytes == min(budget, n) * state_bytes
        # the tape is one segment: the kernel's workspace for `segment` steps
        assert st.tape_bytes <= segment * B * H * 7 * 8 + 4 * state_bytes
        assert st.evaluations == revolve_cost(n, budget)


def test_default_segment_balances_the_tape_against_the_slots():
    assert default_segment("lstm", 70) == 20  # 70 states of (h, c) ~ 20 steps of 7 numbers
    assert default_segment("rnn_tanh", 5) == 5
    assert default_segment("gru", 3) == 1


def _peak_bytes(T, budget, segment):
    lstm = nn.LSTM(1, 16, dtype=np.float32)
    lstm.record_grad_trace = False  # the trace is (T, B, H) by definition
    x = tb.tensor(np.random.default_rng(0).standard_normal((T, 1, 1)).astype(np.float32))
    tracemalloc.start()
    try:
        _, (h_n, c_n) = revolve_sequence(lstm, x, budget=budget, segment=segment, return_sequence=False)
        (h_n.sum() + c_n.sum()).backward()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_T():
    """Without the (T, B, H) outputs, the peak is set by budget and segment, not T (NumPy's buffers are traced)."""
    _peak_bytes(4000, 8, 10)  # warm up: NumPy's and the kernels' one-time allocations
    small, large = _peak_bytes(500, 8, 10), _peak_bytes(4000, 8, 10)
    full_bptt_growth = 3500 * 16 * 4 * 7  # what full BPTT's saved activations would add
    assert large - small < full_bptt_growth / 20


# --------------------------------------------------------------------------- the layers' checkpoint="auto"

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_layer_checkpoint_auto_equals_full_bptt(cell):
    """``checkpoint="auto", checkpoint_budget=s`` on a layer: the outputs, every parameter
    gradient and the gradient trace of full BPTT; at most s states stored."""
    T, B, I, H, s = 37, 3, 4, 5, 4
    rng = np.random.default_rng(7)
    x = rng.standard_normal((T, B, I))
    make = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
    nn.manual_seed(3)
    full = make(I, H, num_layers=2)
    auto = make(I, H, num_layers=2, checkpoint="auto", checkpoint_budget=s)
    auto.load_state_dict(full.state_dict())
    results = []
    for layer in (full, auto):
        out = layer(x)[0]
        (out * out).sum().backward()
        results.append((out.data, {k: p.grad for k, p in layer.named_parameters()}, layer.grad_trace.h))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-12, atol=1e-14)  # C GEMM blocking: rounding
    for k in results[0][1]:
        np.testing.assert_allclose(results[1][1][k], results[0][1][k], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(results[1][2], results[0][2], rtol=1e-12, atol=1e-14)
    assert auto.checkpoint_stats.max_stored <= s
    assert "checkpoint='auto', checkpoint_budget=4" in repr(auto)


@pytest.mark.parametrize("kwargs", [dict(checkpoint="auto"), dict(checkpoint="auto", checkpoint_budget=0),
                                    dict(checkpoint="auto", checkpoint_budget=2.5),
                                    dict(checkpoint=5, checkpoint_budget=3), dict(checkpoint="revolve")])
def test_layer_checkpoint_auto_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=r"LSTM\(input_size=2, hidden_size=3\): checkpoint"):
        nn.LSTM(2, 3, **kwargs)

"""Allocation failures survived: every C kernel, made to fail at each of its allocations in turn.

The C kernels take all their temporary memory from one per-thread scratch
allocator (csrc/runtime.c), which a test-only switch can make fail
(``tinybptt.kernels.c_faults.failing_allocation(n)``: n requests succeed, the
next fails once).  For each kernel, n walks 0, 1, 2, ... until the call makes
no more than n requests (the injection is never reached).  At every n that was
reached, the call must raise MemoryError naming the op -- never crash, never
return a silently wrong answer -- and the very next call, without injection,
must give exactly the answer of a clean call.  The walk over every kernel also
runs under the AddressSanitizer build (.ci/sanitize), which would report any
error path that reads freed memory or frees twice.
"""
import numpy as np
import pytest

from tinybptt import kernels

C = kernels.c_backend
pytestmark = pytest.mark.skipif(C is None, reason="the C backend is not built")
if C is not None:
    from tinybptt.kernels.c_faults import failing_allocation

DTYPES = [np.float32, np.float64]
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
MAX_WALK = 64  # no kernel makes nearly this many requests; a walk that gets here is a bug
#: kernel name -> allocation failures injected (filled in as the tests run)
INJECTED = {}


def _arrays(result):
    """The arrays of a kernel's result, in a fixed order (saved workspaces excluded)."""
    if isinstance(result, np.ndarray):
        return [result]
    if isinstance(result, dict):
        return [result[k] for k in sorted(result)]
    return [r for r in result if isinstance(r, np.ndarray)]  # (out, c_out, saved)


def _assert_same(got, expected):
    for g, e in zip(_arrays(got), _arrays(expected), strict=True):
        np.testing.assert_array_equal(g, e)


def walk(op, call):
    """Fail each allocation of ``call`` in turn; returns how many failures were injected."""
    expected = call()
    injected = 0
    for n in range(MAX_WALK):
        error = None
        with failing_allocation(n) as injection:
            try:
                got = call()
            except MemoryError as exc:
                error = exc
        if not injection.fired:  # the call made at most n requests: walked them all
            assert error is None, "%s raised %r with no failure injected" % (op, error)
            _assert_same(got, expected)
            return injected
        injected += 1
        assert error is not None, "%s: allocation %d failed, yet the call returned normally" % (op, n)
        assert op in str(error) and "could not allocate" in str(error), str(error)
        _assert_same(call(), expected)  # the next call works, with the same answer
    pytest.fail("%s: still allocating after %d requests" % (op, MAX_WALK))


def _rng(*key):
    return np.random.default_rng(abs(hash(key)) % 2**32)


# ---------------------------------------------------------------- primitive ops

def _primitive_calls(dtype):
    r = _rng("ops", np.dtype(dtype).name)
    a = r.standard_normal((64, 48)).astype(dtype)
    b = r.standard_normal((48, 80)).astype(dtype)
    at = r.standard_normal((200, 3)).astype(dtype)   # few rows, both transposed: the GEMM copies op(a)
    bt = r.standard_normal((40, 200)).astype(dtype)
    s1 = r.standard_normal((4, 20, 30)).astype(dtype)
    s2 = r.standard_normal((4, 30, 40)).astype(dtype)
    x = r.standard_normal((5, 7)).astype(dtype)
    yield "matmul", lambda: C.matmul(a, b)
    yield "matmul", lambda: C.matmul(at, bt, trans_a=True, trans_b=True)
    yield "bmm", lambda: C.bmm(s1, s2)
    for name in ("tanh", "sigmoid", "relu"):
        f, fb = getattr(C, name), getattr(C, name + "_backward")
        yield name, (lambda f=f: f(x))
        yield name + "_backward", (lambda f=f, fb=fb: fb(f(x), x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_primitive_ops_survive_every_allocation_failure(dtype):
    for i, (op, call) in enumerate(_primitive_calls(dtype)):
        n = walk(op, call)
        INJECTED["%s #%d %s" % (op, i, np.dtype(dtype).name)] = n
        if op in ("matmul", "bmm"):
            assert n >= 1, "%s took no scratch memory: the walk tested nothing" % op
        else:
            assert n == 0  # elementwise kernels allocate nothing


# ---------------------------------------------------------------- recurrent kernels

def _cell_args(cell, dtype, T=5, B=6, I=7, H=40):
    r = _rng("cell", cell, np.dtype(dtype).name)
    G = GATES[cell]
    x = r.standard_normal((T, B, I)).astype(dtype)
    h0 = r.standard_normal((B, H)).astype(dtype)
    c0 = r.standard_normal((B, H)).astype(dtype) if cell == "lstm" else None
    w = [(0.3 * r.standard_normal(s)).astype(dtype) for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    d_out = r.standard_normal((T, B, H)).astype(dtype)
    return x, h0, c0, w, d_out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_kernels_survive_every_allocation_failure(cell, dtype):
    x, h0, c0, w, d_out = _cell_args(cell, dtype)
    _, _, saved = C.seq_forward(cell, x, h0, c0, *w)
    _, _, step_saved = C.step_forward(cell, x[0], h0, c0, *w)
    calls = [
        ("seq_forward(%s)" % cell, lambda: C.seq_forward(cell, x, h0, c0, *w)),
        ("seq_backward(%s)" % cell, lambda: C.seq_backward(cell, saved, d_out)),
        ("step_forward(%s)" % cell, lambda: C.step_forward(cell, x[0], h0, c0, *w)),
        ("step_backward(%s)" % cell, lambda: C.step_backward(cell, step_saved, d_out[0])),
    ]
    for op, call in calls:
        n = walk(op, call)
        INJECTED["%s %s" % (op, np.dtype(dtype).name)] = n
        assert n >= 1, "%s took no scratch memory: the walk tested nothing" % op


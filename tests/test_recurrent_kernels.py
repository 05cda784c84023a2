"""Fused recurrent kernels (RNN tanh/relu, LSTM, GRU): NumPy reference and C.

1. the NumPy reference's seq_backward against central finite differences;
2. the C kernels against the NumPy reference (hypothesis over sizes, cells, bias, dtype);
3. step_* against seq_* (T=1, and a loop of steps for T>1);
4. trace_h / trace_c are total gradients (suffix re-runs and finite differences);
5. bad input raises ShapeError / DTypeError naming the op and shapes, in both backends.
"""
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinybptt.errors import DTypeError, ShapeError
from tinybptt.kernels import numpy as KN
from tinybptt.kernels.cells import GATES
from tinybptt.kernels.recurrent import RecurrentSaved

try:
    from tinybptt.kernels import c as KC
except ImportError:  # extension not built
    KC = None

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
BACKENDS = [pytest.param(KN, id="numpy"),
            pytest.param(KC, id="c", marks=pytest.mark.skipif(KC is None, reason="C extension not built"))]
needs_c = pytest.mark.skipif(KC is None, reason="C extension not built")
# the sanitizer build is slow; fewer examples there
N_EXAMPLES = 15 if os.environ.get("TINYBPTT_SANITIZED") else 40
GRAD_KEYS = ["dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh", "trace_h", "trace_c"]


def make_inputs(rng, cell, T, B, I, H, bias="both", dtype=np.float64, scale=0.6):
    """Random inputs for seq_forward as a dict (x is (B, I) when T is None)."""
    G = GATES[cell]

    def r(*shape):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    return dict(
        x=r(B, I) if T is None else r(T, B, I),
        h0=r(B, H),
        c0=r(B, H) if cell == "lstm" else None,
        w_ih=r(G * H, I),
        w_hh=r(G * H, H),
        b_ih=r(G * H) if bias in ("both", "ih") else None,
        b_hh=r(G * H) if bias == "both" else None,
    )


def forward(K, cell, a):
    return K.seq_forward(cell, a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])


def loss_and_seeds(rng, cell, T, B, H, dtype=np.float64):
    """Seeds of the linear functional L = sum(R1*out) + sum(R2*h_n) (+ sum(R3*c_n))."""
    R1 = rng.standard_normal((T, B, H)).astype(dtype)
    R2 = rng.standard_normal((B, H)).astype(dtype)
    R3 = rng.standard_normal((B, H)).astype(dtype) if cell == "lstm" else None
    return R1, R2, R3


def L_value(K, cell, a, R1, R2, R3):
    out, c_out, _ = forward(K, cell, a)
    L = np.sum(R1 * out) + np.sum(R2 * out[-1])
    if R3 is not None:
        L += np.sum(R3 * c_out[-1])
    return L


def assert_close(name, got, want, rtol, atol):
    """assert_allclose that names the worst element (array, index, values)."""
    if want is None or got is None:
        assert got is None and want is None, "%s: one backend returned None, the other %s" % (
            name, type(got if want is None else want).__name__)
        return
    assert got.shape == want.shape, "%s: shape %s vs %s" % (name, got.shape, want.shape)
    assert got.dtype == want.dtype, "%s: dtype %s vs %s" % (name, got.dtype, want.dtype)
    if got.size == 0:
        return
    err = np.abs(got - want) - (atol + rtol * np.abs(want))
    k = np.unravel_index(np.argmax(err), err.shape)
    assert err[k] <= 0, "%s: worst element %s: got %r, want %r (abs err %.3g)" % (
        name, k, got[k], want[k], abs(got[k] - want[k]))


# ---------------------------------------------------------------- 1. finite differences

@pytest.mark.parametrize("bias", ["both", "none"])
@pytest.mark.parametrize("cell", CELLS)
def test_reference_backward_matches_finite_differences(cell, bias):
    rng = np.random.default_rng(2 * CELLS.index(cell) + (bias == "both"))
    T, B, I, H = 3, 2, 3, 2
    a = make_inputs(rng, cell, T, B, I, H, bias)
    R1, R2, R3 = loss_and_seeds(rng, cell, T, B, H)
    _, _, saved = forward(KN, cell, a)
    g = KN.seq_backward(cell, saved, R1, d_hn=R2, d_cn=R3)
    analytic = {"x": g["dx"], "h0": g["dh0"], "c0": g["dc0"], "w_ih": g["dw_ih"],
                "w_hh": g["dw_hh"], "b_ih": g["db_ih"], "b_hh": g["db_hh"]}
    eps = 1e-6
    for name, arr in a.items():
        if arr is None:
            assert analytic[name] is None, name
            continue
        num = np.zeros_like(arr)
        for k in np.ndindex(arr.shape):
            old = arr[k]
            arr[k] = old + eps
            Lp = L_value(KN, cell, a, R1, R2, R3)
            arr[k] = old - eps
            Lm = L_value(KN, cell, a, R1, R2, R3)
            arr[k] = old
            num[k] = (Lp - Lm) / (2 * eps)
        assert_close("d" + name, analytic[name], num, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- 2. C agrees with NumPy

@needs_c
@settings(max_examples=N_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=st.sampled_from(CELLS), T=st.integers(1, 6), B=st.integers(0, 4), I=st.integers(1, 7),
       H=st.integers(1, 7), bias=st.sampled_from(["both", "none", "ih"]),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**31 - 1),
       with_d_out=st.booleans(), with_d_hn=st.booleans(), flags=st.booleans())
def test_c_matches_reference(cell, T, B, I, H, bias, dtype, seed, with_d_out, with_d_hn, flags):
    rng = np.random.default_rng(seed)
    a = make_inputs(rng, cell, T, B, I, H, bias, dtype)
    R1, R2, R3 = loss_and_seeds(rng, cell, T, B, H, dtype)
    d_out = R1 if with_d_out else None
    d_hn = R2 if with_d_hn else None
    before = {k: None if v is None else v.copy() for k, v in dict(a, R1=R1, R2=R2, R3=R3).items()}
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 2e-5)

    out_n, c_n, s_n = forward(KN, cell, a)
    out_c, c_c, s_c = forward(KC, cell, a)
    assert_close("out", out_c, out_n, rtol, atol)
    assert_close("c_out", c_c, c_n, rtol, atol)
    for ws in ("gates", "tanh_c", "hn"):  # same workspace layout in both backends
        assert_close(ws, getattr(s_c, ws), getattr(s_n, ws), rtol, atol)

    kw = dict(d_hn=d_hn, d_cn=R3, need_dx=flags, need_trace=not flags)
    g_n = KN.seq_backward(cell, s_n, d_out, **kw)
    g_c = KC.seq_backward(cell, s_c, d_out, **kw)
    for k in GRAD_KEYS:
        assert_close(k, g_c[k], g_n[k], rtol, atol)
    assert (g_c["dx"] is None) == (not flags) and (g_c["trace_h"] is None) == flags
    # inputs and incoming gradients are never written to
    for k, v in before.items():
        now = dict(a, R1=R1, R2=R2, R3=R3)[k]
        assert v is None or np.array_equal(v, now), "%s was modified" % k
    # gradients are fresh arrays, not views of the inputs or of each other
    arrays = [v for v in g_c.values() if v is not None]
    for i, u in enumerate(arrays):
        assert not any(np.shares_memory(u, w) for w in arrays[i + 1:] + [R1, R2] + list(a.values())
                       if w is not None)


@needs_c
@pytest.mark.parametrize("cell", CELLS)
def test_c_accepts_non_contiguous_inputs(cell):
    rng = np.random.default_rng(7)
    T, B, I, H = 4, 3, 5, 4
    a = make_inputs(rng, cell, T, B, I, H)
    strided = dict(a)
    strided["x"] = np.ascontiguousarray(a["x"][:, ::-1])[:, ::-1]            # negative strides
    strided["w_hh"] = np.asfortranarray(a["w_hh"])
    strided["w_ih"] = np.repeat(a["w_ih"], 2, axis=1)[:, ::2]                 # step 2
    strided["h0"] = np.asfortranarray(a["h0"])
    assert not strided["x"].flags.c_contiguous and not strided["w_ih"].flags.c_contiguous
    out_n, _, s_n = forward(KN, cell, a)
    out_c, _, s_c = forward(KC, cell, strided)
    assert_close("out", out_c, out_n, 1e-10, 1e-12)
    d_out = np.asfortranarray(rng.standard_normal((T, B, H)))
    g_n = KN.seq_backward(cell, s_n, np.ascontiguousarray(d_out))
    g_c = KC.seq_backward(cell, s_c, d_out)
    for k in GRAD_KEYS:
        assert_close(k, g_c[k], g_n[k], 1e-10, 1e-12)


@needs_c
@pytest.mark.parametrize("cell", CELLS)
def test_c_backward_accepts_a_saved_from_the_reference(cell):
    """The workspace layout is shared, so switching backends between forward and backward works."""
    rng = np.random.default_rng(11)
    T, B, I, H = 3, 2, 3, 4
    a = make_inputs(rng, cell, T, B, I, H)
    _, _, s_n = forward(KN, cell, a)
    d_out = rng.standard_normal((T, B, H))
    g_n = KN.seq_backward(cell, s_n, d_out)
    g_c = KC.seq_backward(cell, s_n, d_out)
    for k in GRAD_KEYS:
        assert_close(k, g_c[k], g_n[k], 1e-10, 1e-12)
    h_n, c_n, st_n = KN.step_forward(cell, a["x"][0], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    d_h = rng.standard_normal((B, H))
    s1, s2 = KN.step_backward(cell, st_n, d_h), KC.step_backward(cell, st_n, d_h)
    for k in s1:
        assert_close(k, s2[k], s1[k], 1e-10, 1e-12)


# ---------------------------------------------------------------- 3. step kernels vs sequence kernels

def step_loop(K, cell, a, d_out, d_hn, d_cn):
    """Forward and backward through T calls of step_forward/step_backward."""
    T = a["x"].shape[0]
    h, c, saves, outs = a["h0"], a["c0"], [], []
    for t in range(T):
        h, c, s = K.step_forward(cell, a["x"][t], h, c, a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
        saves.append(s)
        outs.append(h)
    dh = d_hn
    dc = d_cn
    acc = {k: None for k in ("dw_ih", "dw_hh", "db_ih", "db_hh")}
    dx = [None] * T
    trace_h = [None] * T
    for t in reversed(range(T)):
        dh = d_out[t] + dh
        trace_h[t] = dh
        g = K.step_backward(cell, saves[t], dh, dc)
        dx[t], dh, dc = g["dx"], g["dh"], g["dc"]
        for k in acc:
            if g[k] is not None:
                acc[k] = g[k] if acc[k] is None else acc[k] + g[k]
    return np.stack(outs), dict(acc, dx=np.stack(dx), dh0=dh, dc0=dc, trace_h=np.stack(trace_h))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("K", BACKENDS)
def test_steps_reproduce_sequence(K, cell, T, dtype):
    rng = np.random.default_rng(3 + T)
    B, I, H = 3, 4, 5
    a = make_inputs(rng, cell, T, B, I, H, "both", dtype)
    R1, R2, R3 = loss_and_seeds(rng, cell, T, B, H, dtype)
    out, _, saved = forward(K, cell, a)
    want = K.seq_backward(cell, saved, R1, d_hn=R2, d_cn=R3)
    got_out, got = step_loop(K, cell, a, R1, R2, R3 if R3 is not None else None)
    rtol, atol = (1e-12, 1e-13) if dtype == np.float64 else (1e-5, 1e-6)
    assert_close("out", got_out, out, rtol, atol)
    for k in got:
        assert_close(k, got[k], want[k], rtol, atol)


def test_step_backward_without_d_c_or_dx():
    rng = np.random.default_rng(5)
    a = make_inputs(rng, "lstm", None, 2, 3, 4)
    for K in [KN] + ([KC] if KC else []):
        h, c, s = K.step_forward("lstm", a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
        d_h = rng.standard_normal(h.shape)
        g0 = K.step_backward("lstm", s, d_h, None, need_dx=False)
        g1 = K.step_backward("lstm", s, d_h, np.zeros_like(c))
        assert g0["dx"] is None and g1["dx"].shape == (2, 3)
        assert_close("dh", g0["dh"], g1["dh"], 0, 0)
        assert_close("dc", g0["dc"], g1["dc"], 0, 0)


# ---------------------------------------------------------------- 4. traces are total gradients

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("K", BACKENDS)
def test_trace_is_the_total_gradient(K, cell):
    rng = np.random.default_rng(17)
    T, B, I, H = 4, 2, 3, 3
    a = make_inputs(rng, cell, T, B, I, H)
    R1, R2, R3 = loss_and_seeds(rng, cell, T, B, H)
    out, c_out, saved = forward(K, cell, a)
    g = K.seq_backward(cell, saved, R1, d_hn=R2, d_cn=R3)
    W = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])

    def suffix_L(t, h, c):
        """L restricted to the steps after t, started from state (h, c) = (out[t], c_out[t])."""
        if t == T - 1:
            return np.sum(R2 * h) + (np.sum(R3 * c) if R3 is not None else 0.0)
        o, co, _ = K.seq_forward(cell, a["x"][t + 1:], h, c, *W)
        return (np.sum(R1[t + 1:] * o) + np.sum(R2 * o[-1])
                + (np.sum(R3 * co[-1]) if R3 is not None else 0.0))

    for t in range(T):
        c_t = None if c_out is None else c_out[t]
        # trace_h[t] = d_out[t] + the gradient reaching out[t] through every later step
        if t == T - 1:
            want = R1[t] + R2
        else:
            _, _, s = K.seq_forward(cell, a["x"][t + 1:], out[t], c_t, *W)
            gs = K.seq_backward(cell, s, R1[t + 1:], d_hn=R2, d_cn=R3)
            want = R1[t] + gs["dh0"]
        assert_close("trace_h[%d]" % t, g["trace_h"][t], want, 1e-10, 1e-12)
        if cell != "lstm":
            assert g["trace_c"] is None
            continue
        # trace_c[t] by finite differences, moving c_t and h_t = o_t * tanh(c_t) together
        h_prev = a["h0"] if t == 0 else out[t - 1]
        pre = a["x"][t] @ a["w_ih"].T + h_prev @ a["w_hh"].T + a["b_ih"] + a["b_hh"]
        o = 1 / (1 + np.exp(-pre[:, 3 * H:]))
        num = np.zeros((B, H))
        eps = 1e-6
        for k in np.ndindex(B, H):
            vals = []
            for sgn in (1, -1):
                c = c_out[t].copy()
                c[k] += sgn * eps
                h = o * np.tanh(c)
                vals.append(np.sum(R1[t] * h) + suffix_L(t, h, c))
            num[k] = (vals[0] - vals[1]) / (2 * eps)
        assert_close("trace_c[%d]" % t, g["trace_c"][t], num, 1e-6, 1e-8)
    # and dh0 is one more step back from trace_h[0]: the traces are consistent with the result
    assert np.all(np.isfinite(g["dh0"]))


# ---------------------------------------------------------------- edge sizes and numerics

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("K", BACKENDS)
def test_edge_sizes(K, cell):
    rng = np.random.default_rng(2)
    for T, B, I, H in [(1, 0, 3, 2), (1, 1, 1, 1), (2, 0, 1, 1), (1, 3, 2, 1)]:
        a = make_inputs(rng, cell, T, B, I, H)
        out, c_out, s = forward(K, cell, a)
        assert out.shape == (T, B, H)
        g = K.seq_backward(cell, s, np.ones((T, B, H)))
        assert g["dx"].shape == (T, B, I) and g["dh0"].shape == (B, H)
        assert g["dw_hh"].shape == (GATES[cell] * H, H)
        if B == 0:
            assert not g["dw_ih"].any() and not g["db_ih"].any()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("K", BACKENDS)
def test_huge_preactivations_do_not_overflow(K, cell):
    rng = np.random.default_rng(4)
    a = make_inputs(rng, cell, 3, 2, 3, 4, scale=1000.0)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        out, c_out, s = forward(K, cell, a)
        g = K.seq_backward(cell, s, np.ones_like(out))
    assert np.all(np.isfinite(out))
    assert all(np.all(np.isfinite(v)) for v in g.values() if v is not None)


# ---------------------------------------------------------------- 5. bad input

def _args(cell="lstm", T=2, B=3, I=4, H=5, dtype=np.float64):
    return make_inputs(np.random.default_rng(0), cell, T, B, I, H, "both", dtype)


def _call(K, cell="lstm", **change):
    a = _args(cell)
    a.update(change)
    return forward(K, cell, a)


BAD_FORWARD = [
    # (description, cell, changes, exception, fragments the message must contain)
    ("unknown cell", "lstmm", {}, ShapeError, ["seq_forward", "unknown cell 'lstmm'"]),
    ("x 2-D", "gru", {"x": np.zeros((3, 4))}, ShapeError, ["seq_forward(gru)", "x must be 3-D", "(3, 4)"]),
    ("T=0", "rnn_tanh", {"x": np.zeros((0, 3, 4))}, ShapeError, ["seq_forward(rnn_tanh)", "T=0"]),
    ("h0 batch", "lstm", {"h0": np.zeros((2, 5))}, ShapeError, ["h0 must have shape (3, H)", "(2, 5)"]),
    ("h0 missing", "gru", {"h0": None}, ShapeError, ["seq_forward(gru)", "h0"]),
    ("w_ih", "gru", {"w_ih": np.zeros((15, 3))}, ShapeError,
     ["seq_forward(gru): w_ih must have shape (15, 4) [G*H, I with G=3, H=5, I=4], got (15, 3)"]),
    ("b_hh", "lstm", {"b_hh": np.zeros(19)}, ShapeError, ["b_hh must have shape (20,)", "got (19,)"]),
    ("c0 for gru", "gru", {"c0": np.zeros((3, 5))}, ShapeError, ["seq_forward(gru)", "c0 must be None"]),
    ("c0 missing", "lstm", {"c0": None}, ShapeError, ["seq_forward(lstm)", "c0", "(3, 5)"]),
    ("c0 shape", "lstm", {"c0": np.zeros((3, 4))}, ShapeError, ["c0 must have shape (3, 5)", "got (3, 4)"]),
    ("mixed dtypes", "rnn_relu", {"w_hh": np.zeros((5, 5), np.float32)}, DTypeError,
     ["seq_forward(rnn_relu)", "mixed dtypes", "float32", "float64"]),
    ("int dtype", "lstm", {"x": np.zeros((2, 3, 4), np.int64)}, DTypeError, ["seq_forward(lstm)", "int64"]),
    ("a list", "gru", {"x": [[[0.0] * 4] * 3] * 2}, DTypeError, ["seq_forward(gru)", "list"]),
]


@pytest.mark.parametrize("desc,cell,change,exc,fragments", BAD_FORWARD, ids=[b[0] for b in BAD_FORWARD])
@pytest.mark.parametrize("K", BACKENDS)
def test_bad_forward_input(K, desc, cell, change, exc, fragments):
    a = _args(cell if cell in GATES else "lstm")
    a.update(change)
    with pytest.raises(exc) as info:
        forward(K, cell, a)
    for f in fragments:
        assert f in str(info.value), "%r not in %r" % (f, str(info.value))


@pytest.mark.parametrize("K", BACKENDS)
def test_message_of_the_design_example(K):
    a = dict(x=np.zeros((1, 1, 2)), h0=np.zeros((1, 64)), c0=np.zeros((1, 64)),
             w_ih=np.zeros((256, 2)), w_hh=np.zeros((256, 32)), b_ih=None, b_hh=None)
    with pytest.raises(ShapeError) as info:
        forward(K, "lstm", a)
    assert str(info.value) == ("seq_forward(lstm): w_hh must have shape (256, 64) "
                               "[G*H, H with G=4, H=64], got (256, 32)")


@pytest.mark.parametrize("K", BACKENDS)
def test_bad_backward_and_step_input(K):
    a = _args("lstm")
    out, c_out, s = forward(K, "lstm", a)
    cases = [
        (lambda: K.seq_backward("lstm", s, np.zeros((2, 3, 4))), ShapeError,
         ["seq_backward(lstm)", "d_out must have shape (2, 3, 5)", "(2, 3, 4)"]),
        (lambda: K.seq_backward("lstm", s, np.zeros((2, 3, 5), np.float32)), DTypeError,
         ["seq_backward(lstm)", "d_out", "float32", "float64"]),
        (lambda: K.seq_backward("lstm", s, None, d_hn=np.zeros((3,))), ShapeError, ["d_hn must have shape (3, 5)"]),
        (lambda: K.seq_backward("gru", s, None), ShapeError, ["seq_backward(gru)", "lstm"]),
        (lambda: K.seq_backward("lstm", "nope", None), ShapeError, ["seq_backward(lstm)", "str"]),
        (lambda: K.seq_backward("lstmm", s, None), ShapeError, ["unknown cell"]),
        (lambda: K.step_forward("lstm", a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], None, None), ShapeError,
         ["step_forward(lstm)", "x must be 2-D (B, I)", "(2, 3, 4)"]),
        (lambda: K.step_backward("lstm", s, np.zeros((3, 5))), ShapeError, ["step_backward(lstm)", "seq_forward"]),
    ]
    g = _args("gru")
    _, _, sg = forward(K, "gru", g)
    cases.append((lambda: K.seq_backward("gru", sg, None, d_cn=np.zeros((3, 5))), ShapeError,
                  ["seq_backward(gru)", "d_cn must be None"]))
    h, _, st1 = K.step_forward("gru", g["x"][0], g["h0"], None, g["w_ih"], g["w_hh"], g["b_ih"], g["b_hh"])
    cases.append((lambda: K.step_backward("gru", st1, np.zeros((3, 5)), d_c=np.zeros((3, 5))), ShapeError,
                  ["step_backward(gru)", "d_c must be None"]))
    cases.append((lambda: K.step_backward("gru", st1, np.zeros((5, 3))), ShapeError,
                  ["step_backward(gru)", "d_h must have shape (3, 5)", "(5, 3)"]))
    for fn, exc, fragments in cases:
        with pytest.raises(exc) as info:
            fn()
        for f in fragments:
            assert f in str(info.value), "%r not in %r" % (f, str(info.value))

"""Fuzzing the C kernels through the public Python API (hypothesis).

Every C entry point -- ``kernels.c.matmul``, the activations and their backward
passes, ``seq_forward/seq_backward`` and ``step_forward/step_backward`` of every
cell -- is fed random shapes (including 0-sized and odd ones), random memory
layouts (transposed, Fortran-ordered, negatively strided, stepped, offset,
misaligned, broadcast), dtypes (float32, float64 and the ones that must be
refused: float16, ints, bool, complex, big-endian, mixed) and values (ordinary,
saturating, tiny, zeros, NaN and infinities).  Valid input must give what the NumPy
reference gives (NaN where NaN, infinities equal, finite values to rounding);
invalid input must raise the same documented error, with the same message, from
both backends -- and never reach C.  Inputs are never modified.

Run under ``.ci/sanitize`` these are also the memory-safety fuzz of the C code.
"""
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinybptt import nn
from tinybptt.errors import DTypeError, ShapeError, TinyBPTTError
from tinybptt.kernels import numpy as KN

try:
    from tinybptt.kernels import c as KC
except ImportError:  # the C extension is not built
    KC = None

pytestmark = pytest.mark.skipif(KC is None, reason="C extension not built")

SANITIZED = bool(os.environ.get("TINYBPTT_SANITIZED"))
# CI runs a fixed (derandomized) set of examples; TINYBPTT_FUZZ_EXAMPLES=N fuzzes deeper with fresh random ones
DEEP = int(os.environ.get("TINYBPTT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=DEEP or (80 if SANITIZED else 250), deadline=None, derandomize=not DEEP, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
FLOATS = [np.dtype(np.float32), np.dtype(np.float64)]
BAD_DTYPES = [np.dtype(t) for t in (np.float16, np.int32, np.int64, np.bool_, np.complex64, ">f8", np.uint8)]
LAYOUTS = ["c", "fortran", "reversed", "stepped", "offset", "misaligned", "transposed", "broadcast"]


# --------------------------------------------------------------------------- helpers


def relayout(a, how):
    """An array with ``a``'s shape and values but the memory layout ``how``.

    Except "broadcast": a zero-stride view repeating ``a``'s first slice along the
    last axis (other values, but the same for both backends).
    """
    if a is None or how == "c" or a.ndim == 0:
        return a
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "reversed":  # negative strides on every axis
        idx = (slice(None, None, -1),) * a.ndim
        return np.ascontiguousarray(a[idx])[idx]
    if how == "stepped":  # every other element of a bigger buffer along the last axis
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1] + 1,), a.dtype)
        big[..., 1::2] = a
        return big[..., 1::2]
    if how == "offset":  # an interior block of a bigger buffer
        big = np.zeros(tuple(s + 2 for s in a.shape), a.dtype)
        inner = tuple(slice(1, s + 1) for s in a.shape)
        big[inner] = a
        return big[inner]
    if how == "misaligned":
        buf = np.zeros(a.nbytes + 1, np.uint8)
        m = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        m[...] = a
        return m
    if how == "transposed":  # the transpose of a C-contiguous array with axes reversed
        return np.ascontiguousarray(a.T).T
    if how == "broadcast":
        return np.broadcast_to(a[..., :1], a.shape) if a.shape[-1] else a
    raise ValueError(how)


VALUE_KINDS = ["normal", "large", "tiny", "zeros", "special"]


def values(rng, shape, dtype, kind, scale=1.0):
    """Random float64 values of a kind, cast to ``dtype``."""
    if kind == "normal":
        v = rng.standard_normal(shape) * scale
    elif kind == "large":
        v = rng.standard_normal(shape) * 1e3
    elif kind == "tiny":
        v = rng.standard_normal(shape) * (1e-40 if dtype == np.float64 else 1e-20)
    elif kind == "zeros":
        v = np.zeros(shape)
    else:  # mostly ordinary, sprinkled with NaN and +-inf
        v = np.asarray(rng.standard_normal(shape) * scale)
        mask = rng.random(shape) < 0.15
        v[mask] = rng.choice([np.nan, np.inf, -np.inf], size=int(mask.sum()))
    return np.asarray(v).astype(dtype)  # (a 0-D draw is a NumPy scalar, not an array)


def assert_same(name, got, want, dtype, scale=None, rtol32=5e-5):
    """``got`` equals ``want``: NaN where NaN, equal infinities, finite values to rounding.

    ``scale`` (same shape, >= 0) bounds the size of the terms that were summed, for
    a tolerance that survives cancellation: |got - want| <= tol * scale.  ``rtol32``: the
    float32 tolerance (rounding compounds over the time steps of a recurrent kernel).
    """
    assert got.shape == want.shape, "%s: shape %s != %s" % (name, got.shape, want.shape)
    assert got.dtype == want.dtype, "%s: dtype %s != %s" % (name, got.dtype, want.dtype)
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_g, nan_w), "%s: NaN at %s vs %s" % (name, np.argwhere(nan_g ^ nan_w)[:3].tolist(),
                                                                   "reference")
    inf_g, inf_w = np.isinf(got), np.isinf(want)
    assert np.array_equal(got[inf_g | inf_w], want[inf_g | inf_w]), "%s: infinities differ" % name
    fin = np.isfinite(got) & np.isfinite(want)
    tol = rtol32 if dtype == np.float32 else 1e-11
    bound = tol * (1.0 + (np.abs(want) if scale is None else scale))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bad = fin & (err > bound)
    assert not bad.any(), "%s: worst at %s: got %r want %r" % (
        name, np.unravel_index(np.argmax(np.where(fin, err - bound, -np.inf)), got.shape),
        got[bad][0], want[bad][0])


def both(call, errors=False):
    """``call(K)`` for both backends (reference first) with warnings as errors.

    With ``errors=True`` a tinybptt error is returned instead of raised, so that
    the two backends' errors can be compared.
    """
    out = []
    for K in (KN, KC):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                out.append(call(K))
            except TinyBPTTError as e:
                if not errors:
                    raise
                out.append(e)
    return out


# --------------------------------------------------------------------------- matmul

dims = st.one_of(st.integers(0, 9), st.integers(10, 40), st.sampled_from([63, 65, 97, 130]))


@FUZZ
@given(M=dims, N=dims, K=dims, dtype=st.sampled_from(FLOATS), ta=st.booleans(), tb=st.booleans(),
       la=st.sampled_from(LAYOUTS), lb=st.sampled_from(LAYOUTS), kind=st.sampled_from(VALUE_KINDS),
       out_mode=st.sampled_from(["new", "out", "accumulate"]), seed=st.integers(0, 2**32 - 1))
def test_matmul_matches_reference(M, N, K, dtype, ta, tb, la, lb, kind, out_mode, seed):
    if M * N * K > 130 * 130 * 40:
        K = max(1, (130 * 130 * 40) // max(1, M * N))
    rng = np.random.default_rng(seed)
    a = values(rng, (K, M) if ta else (M, K), dtype, kind)
    b = values(rng, (N, K) if tb else (K, N), dtype, "normal" if kind == "special" else kind)
    av, bv = relayout(a, la), relayout(b, lb)
    a0, b0 = av.copy(), bv.copy()
    start = values(rng, (M, N), dtype, "normal")

    def call(Kb):
        if out_mode == "new":
            return Kb.matmul(av, bv, trans_a=ta, trans_b=tb)
        out = start.copy() if out_mode == "accumulate" else np.full((M, N), np.nan, dtype)  # NaN must not leak
        r = Kb.matmul(av, bv, trans_a=ta, trans_b=tb, out=out, accumulate=out_mode == "accumulate")
        assert r is out
        return r

    got_n, got_c = both(call)
    opa, opb = (a.T if ta else a).astype(np.float64), (b.T if tb else b).astype(np.float64)
    with np.errstate(over="ignore"):
        scale = np.abs(np.nan_to_num(opa)) @ np.abs(np.nan_to_num(opb)) + (np.abs(start) if out_mode == "accumulate"
                                                                           else 0)
    assert_same("matmul C vs reference", got_c, got_n, dtype, scale)
    np.testing.assert_array_equal(av, a0)
    np.testing.assert_array_equal(bv, b0)


@FUZZ
@given(da=st.sampled_from(FLOATS + BAD_DTYPES), db=st.sampled_from(FLOATS + BAD_DTYPES),
       M=st.integers(0, 4), N=st.integers(0, 4), K=st.integers(0, 4), dK=st.integers(-2, 2),
       ndim_a=st.sampled_from([2, 2, 2, 1, 3]), la=st.sampled_from(LAYOUTS))
def test_matmul_bad_input_same_error_from_both_backends(da, db, M, N, K, dK, ndim_a, la):
    Kb = max(K + dK, 0)
    if da == db and da in FLOATS and Kb == K and ndim_a == 2:
        Kb = K + 1  # always something wrong
    shape_a = {1: (K,), 2: (M, K), 3: (2, M, K)}[ndim_a]
    a = relayout(np.ones(shape_a).astype(da), la)
    b = np.ones((Kb, N)).astype(db)
    err_n, err_c = both(lambda Kb: Kb.matmul(a, b), errors=True)
    assert isinstance(err_n, (ShapeError, DTypeError)), "reference accepted %s" % ((a.shape, a.dtype, b.shape, b.dtype),)
    assert type(err_c) is type(err_n) and str(err_c) == str(err_n)
    assert str(err_n).startswith("matmul: ")
    if isinstance(err_n, DTypeError):
        assert str(a.dtype) in str(err_n) or str(b.dtype) in str(err_n)
    else:
        assert str(a.shape) in str(err_n) or "(%d, %d)" % (M, K) in str(err_n)


# --------------------------------------------------------------------------- activations

shapes = st.lists(st.integers(0, 6), min_size=0, max_size=3).map(tuple)


@FUZZ
@given(shape=shapes, dtype=st.sampled_from(FLOATS), layout=st.sampled_from(LAYOUTS),
       kind=st.sampled_from(VALUE_KINDS), name=st.sampled_from(["tanh", "sigmoid", "relu"]),
       broadcast=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_activations_and_backward_match_reference(shape, dtype, layout, kind, name, broadcast, seed):
    rng = np.random.default_rng(seed)
    x = relayout(values(rng, shape, dtype, kind, scale=30), layout)
    if broadcast:
        x = relayout(x, "broadcast")
    x0 = x.copy()
    y_n, y_c = both(lambda K: getattr(K, name)(x))
    assert_same(name, y_c, y_n, dtype)
    np.testing.assert_array_equal(x, x0)
    dy = relayout(values(rng, shape, dtype, "special" if kind == "special" else "normal"), layout)
    y = relayout(y_n, layout)
    d_n, d_c = both(lambda K: getattr(K, name + "_backward")(y, dy))
    assert_same(name + "_backward", d_c, d_n, dtype)


@FUZZ
@given(dx=st.sampled_from(FLOATS + BAD_DTYPES), ddy=st.sampled_from(FLOATS + BAD_DTYPES),
       sx=shapes, sdy=shapes, name=st.sampled_from(["tanh", "sigmoid", "relu"]), as_list=st.booleans())
def test_activation_bad_input_same_error_from_both_backends(dx, ddy, sx, sdy, name, as_list):
    x = np.ones(sx).astype(dx)
    dy = np.ones(sdy).astype(ddy)
    if not (dx == ddy and dx in FLOATS and sx == sdy) or as_list:
        call = (lambda K: getattr(K, name + "_backward")(x.tolist() if as_list else x, dy))
        err_n, err_c = both(call, errors=True)
        assert isinstance(err_n, (ShapeError, DTypeError)), (sx, dx, sdy, ddy)
        assert type(err_c) is type(err_n) and str(err_c) == str(err_n)
        assert str(err_n).startswith(name + "_backward: ")
    if dx not in FLOATS:
        err_n, err_c = both(lambda K: getattr(K, name)(x), errors=True)
        assert isinstance(err_n, DTypeError) and type(err_c) is DTypeError and str(err_c) == str(err_n)
        assert str(dx) in str(err_n)


# --------------------------------------------------------------------------- recurrent kernels


@st.composite
def recurrent_case(draw):
    cell = draw(st.sampled_from(sorted(GATES)))
    T, B, I, H = draw(st.integers(1, 5)), draw(st.integers(0, 4)), draw(st.integers(0, 5)), draw(st.integers(0, 5))
    dtype = draw(st.sampled_from(FLOATS))
    bias = draw(st.sampled_from(["both", "ih", "hh", "none"]))
    kind = draw(st.sampled_from(["normal", "normal", "large", "tiny", "zeros", "special"]))
    layouts = {k: draw(st.sampled_from(LAYOUTS)) for k in ("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh", "d")}
    grads = dict(d_out=draw(st.booleans()), d_hn=draw(st.booleans()), d_cn=draw(st.booleans()),
                 need_dx=draw(st.booleans()), need_trace=draw(st.booleans()))
    return cell, (T, B, I, H), dtype, bias, kind, layouts, grads, draw(st.integers(0, 2**32 - 1))


def make_args(rng, cell, sizes, dtype, bias, kind):
    T, B, I, H = sizes
    G = GATES[cell]
    w_kind = "large" if kind == "large" else "normal"
    return dict(
        x=values(rng, (T, B, I), dtype, kind), h=values(rng, (B, H), dtype, "normal", 0.5),
        c=values(rng, (B, H), dtype, "normal", 0.5) if cell == "lstm" else None,
        w_ih=values(rng, (G * H, I), dtype, w_kind, 0.5), w_hh=values(rng, (G * H, H), dtype, "normal", 0.5),
        b_ih=values(rng, (G * H,), dtype, "normal", 0.5) if bias in ("both", "ih") else None,
        b_hh=values(rng, (G * H,), dtype, "normal", 0.5) if bias in ("both", "hh") else None)


ORDER = ("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh")


def silent(call):
    """Run the reference with NumPy's FP warnings off: it is the oracle, not under test here
    (test_ieee_values checks which kernels stay silent)."""
    with np.errstate(all="ignore"):
        return call()


@FUZZ
@given(case=recurrent_case())
def test_sequence_kernels_match_reference(case):
    cell, sizes, dtype, bias, kind, layouts, gflags, seed = case
    T, B, I, H = sizes
    rng = np.random.default_rng(seed)
    a = make_args(rng, cell, sizes, dtype, bias, kind)
    views = {k: relayout(v, layouts[k]) for k, v in a.items()}
    before = {k: None if v is None else v.copy() for k, v in views.items()}
    args = [views[k] for k in ORDER]
    out_n, c_n, s_n = silent(lambda: KN.seq_forward(cell, *args))
    out_c, c_c, s_c = KC.seq_forward(cell, *args)
    assert_same("out", out_c, out_n, dtype, rtol32=2e-4)
    if cell == "lstm":
        assert_same("c_out", c_c, c_n, dtype, rtol32=2e-4)
    else:
        assert c_c is None and c_n is None
    d_out = relayout(values(rng, (T, B, H), dtype, "normal"), layouts["d"]) if gflags["d_out"] else None
    d_hn = values(rng, (B, H), dtype, "normal") if gflags["d_hn"] else None
    d_cn = values(rng, (B, H), dtype, "normal") if gflags["d_cn"] and cell == "lstm" else None
    kw = dict(need_dx=gflags["need_dx"], need_trace=gflags["need_trace"])
    g_n = silent(lambda: KN.seq_backward(cell, s_n, d_out, d_hn, d_cn, **kw))
    g_c = KC.seq_backward(cell, s_c, d_out, d_hn, d_cn, **kw)
    assert set(g_c) == set(g_n)
    for k in g_n:
        if g_n[k] is None:
            assert g_c[k] is None, k
        else:
            assert_same(k, g_c[k], g_n[k], dtype, rtol32=2e-4)
    for k, v in before.items():
        assert v is None or np.array_equal(views[k], v, equal_nan=True), "%s was modified" % k


@FUZZ
@given(case=recurrent_case())
def test_step_kernels_match_reference(case):
    cell, sizes, dtype, bias, kind, layouts, gflags, seed = case
    T, B, I, H = sizes
    rng = np.random.default_rng(seed)
    a = make_args(rng, cell, sizes, dtype, bias, kind)
    a["x"] = a["x"][0]
    views = {k: relayout(v, layouts[k]) for k, v in a.items()}
    args = [views[k] for k in ORDER]
    h_n, c_n, s_n = silent(lambda: KN.step_forward(cell, *args))
    h_c, c_c, s_c = KC.step_forward(cell, *args)
    assert_same("h_new", h_c, h_n, dtype, rtol32=2e-4)
    if cell == "lstm":
        assert_same("c_new", c_c, c_n, dtype, rtol32=2e-4)
    d_h = values(rng, (B, H), dtype, "normal") if gflags["d_out"] else None
    d_c = values(rng, (B, H), dtype, "normal") if gflags["d_cn"] and cell == "lstm" else None
    g_n = silent(lambda: KN.step_backward(cell, s_n, d_h, d_c, need_dx=gflags["need_dx"]))
    g_c = KC.step_backward(cell, s_c, d_h, d_c, need_dx=gflags["need_dx"])
    for k in g_n:
        if g_n[k] is None:
            assert g_c[k] is None, k
        else:
            assert_same(k, g_c[k], g_n[k], dtype, rtol32=2e-4)


@FUZZ
@given(case=recurrent_case(), target=st.sampled_from(ORDER), how=st.sampled_from(["grow", "shrink", "ndim", "dtype",
                                                                                  "int", "drop", "list"]),
       step=st.booleans(), axis=st.integers(0, 2))
def test_recurrent_bad_input_same_error_from_both_backends(case, target, how, step, axis):
    cell, sizes, dtype, bias, kind, layouts, gflags, seed = case
    rng = np.random.default_rng(seed)
    a = make_args(rng, cell, sizes, dtype, bias, "normal")
    if step:
        a["x"] = a["x"][0]
    v = a[target]
    if v is None:  # an optional argument that is absent: give it one it must not have, or any array
        v = np.ones((2, 2), dtype)
    elif how in ("grow", "shrink"):
        ax = axis % v.ndim
        if how == "grow" or v.shape[ax] == 0:
            v = np.concatenate([v, np.ones(v.shape[:ax] + (1,) + v.shape[ax + 1:], dtype)], axis=ax)
        else:
            v = v.take(range(v.shape[ax] - 1), axis=ax)
    elif how == "ndim":
        v = v[None]
    elif how == "dtype":
        v = v.astype(np.float32 if dtype == np.float64 else np.float64)
    elif how == "int":
        v = v.astype(np.int64)
    elif how == "drop":
        v = None
    else:
        v = v.tolist()
    a[target] = v
    required_missing = v is None and target in ("x", "h") or (v is None and target == "c" and cell == "lstm")
    if v is None and not required_missing:
        return  # dropping an optional argument is legal
    args = [relayout(a[k], layouts[k]) if isinstance(a[k], np.ndarray) else a[k] for k in ORDER]
    fn = "step_forward" if step else "seq_forward"
    res_n, res_c = both(lambda K: silent(lambda: getattr(K, fn)(cell, *args)), errors=True)
    if not isinstance(res_n, Exception):  # the change happened to keep it valid (e.g. empty dims)
        assert not isinstance(res_c, Exception)
        assert_same("out", res_c[0], res_n[0], dtype)
        return
    assert isinstance(res_n, (ShapeError, DTypeError)), repr(res_n)
    assert type(res_c) is type(res_n) and str(res_c) == str(res_n)
    assert str(res_n).startswith("%s(%s): " % (fn, cell)), str(res_n)


# --------------------------------------------------------------------------- whole layers, both backends


@settings(FUZZ, max_examples=DEEP or 25)
@given(kind=st.sampled_from(["RNN", "LSTM", "GRU"]), L=st.integers(1, 2), T=st.integers(1, 4), B=st.integers(1, 3),
       I=st.integers(1, 4), H=st.integers(1, 4), batch_first=st.booleans(), unbatched=st.booleans(),
       layout=st.sampled_from(LAYOUTS), in_dtype=st.sampled_from(["float64", "float32", "float16", "int64", "bool"]),
       dtype=st.sampled_from(FLOATS), mode=st.sampled_from(["sequence", "cell"]), seed=st.integers(0, 2**32 - 1))
def test_layers_agree_across_backends(kind, L, T, B, I, H, batch_first, unbatched, layout, in_dtype, dtype, mode,
                                      seed):
    import tinybptt as tb
    rng = np.random.default_rng(seed)
    layer = getattr(nn, kind)(I, H, num_layers=L, batch_first=batch_first, dtype=dtype, mode=mode)
    shape = (T, I) if unbatched else ((B, T, I) if batch_first else (T, B, I))
    x = relayout((rng.standard_normal(shape) * 2).astype(in_dtype), layout)
    results = []
    previous = tb.get_backend()
    try:
        for name in ("numpy", "c"):
            tb.set_backend(name)
            for p in layer.parameters():
                p.grad = None
            out, state = layer(x)
            assert out.dtype == dtype
            (out * out).sum().backward()
            results.append([out.data] + [p.grad for p in layer.parameters()])
    finally:
        tb.set_backend(previous)
    for k, (g_n, g_c) in enumerate(zip(*results)):
        assert_same("layer result %d" % k, g_c, g_n, dtype)

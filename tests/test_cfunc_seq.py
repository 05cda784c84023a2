"""The LSTM's and GRU's C sequence backward, part by part, against the NumPy reference.

The C sequence backward (csrc/lstm_impl.h, csrc/gru_impl.h) is an outline over
named parts: the scratch block's layout, the carried gradient's start, arrival
and end (csrc/recurrent_impl.h: carry_begin, carry_receive, carry_end), one step
of the reverse walk, the weight gradients either a group of steps at a time
("step by step", while T*B is above 128 rows and the sums fit 640 KB) or as one
product over every step at the end.  Every combination of what a caller can ask
for goes through those parts differently, so each is checked here against the
NumPy reference, under every instruction set the CPU has (the per-step product
and the GEMMs dispatch on it), float32 and float64:

* shapes that take each weight-gradient path: few rows; step by step with a
  last group shorter than the others; many rows whose sums are too big for the
  step-by-step path;
* dx wanted or not, the trace wanted or not, d_out given or only d_hn (and d_cn),
  biases on both sides, on one, or none;
* a gradient far below float's range, which moves the carried exponent (the
  results come back at true scale, or, with carry_exp, scaled and with their
  exponent).
"""
import itertools

import numpy as np
import pytest

from tinybptt.kernels import numpy_rnn

try:
    from tinybptt.kernels import c_rnn
except ImportError:  # extension not built
    c_rnn = None

pytestmark = pytest.mark.skipif(c_rnn is None, reason="C extension not built")

GATES = {"lstm": 4, "gru": 3}
KEYS = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh", "trace_h", "trace_c")
# T, B, I, H and the weight-gradient path each takes (float32 and float64 alike)
SHAPES = [
    pytest.param((3, 5, 4, 9), id="few-rows"),                # T*B = 15: one product at the end
    pytest.param((37, 5, 3, 10), id="step-by-step"),          # 26 steps a group: 36..11, then 10..0
    pytest.param((9, 16, 2, 240), id="many-rows-big-sums"),   # T*B = 144, sums over 640 KB: at the end
]
# (need_dx, need_trace, d_out given, bias): every combination of the first three, the biases varied
FLAGS = [flags + (bias,) for flags, bias in zip(itertools.product((True, False), repeat=3),
                                                ("both", "ih", "hh", "none") * 2)]


def _problem(cell, T, B, I, H, dtype, bias, seed):
    """Forward arguments (x, h0, c0, w_ih, w_hh, b_ih, b_hh) and the seeds d_out, d_hn, d_cn."""
    rng = np.random.default_rng(seed)
    G, k = GATES[cell], 1 / np.sqrt(H)

    def u(*shape):
        return rng.uniform(-k, k, shape).astype(dtype)

    def n(*shape):
        return rng.standard_normal(shape).astype(dtype)

    args = (n(T, B, I), 0.5 * n(B, H), 0.5 * n(B, H) if cell == "lstm" else None, u(G * H, I), u(G * H, H),
            u(G * H) if bias in ("both", "ih") else None, u(G * H) if bias in ("both", "hh") else None)
    seeds = (n(T, B, H), n(B, H), n(B, H) if cell == "lstm" else None)
    return args, seeds


def _close(what, got, want, dtype):
    if want is None:
        assert got is None, what
        return
    assert got is not None, what
    rtol, atol = (3e-4, 3e-5) if dtype == np.float32 else (1e-10, 1e-12)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sequence_backward_matches_reference(isa, cell, shape, dtype):
    T, B, I, H = shape
    for k, (need_dx, need_trace, given, bias) in enumerate(FLAGS):
        args, (d_out, d_hn, d_cn) = _problem(cell, T, B, I, H, dtype, bias, seed=k)
        if not given:
            d_out = None
        what = "%s %s dx=%s trace=%s d_out=%s bias=%s" % (cell, shape, need_dx, need_trace, given, bias)
        out_n, c_n, s_n = numpy_rnn.seq_forward(cell, *args)
        out_c, c_c, s_c = c_rnn.seq_forward(cell, *args)
        _close("out " + what, out_c, out_n, dtype)
        _close("c_out " + what, c_c, c_n, dtype)
        kw = dict(d_hn=d_hn, d_cn=d_cn, need_dx=need_dx, need_trace=need_trace)
        g_n = numpy_rnn.seq_backward(cell, s_n, d_out, **kw)
        g_c = c_rnn.seq_backward(cell, s_c, d_out, **kw)
        for key in KEYS:
            _close("%s %s" % (key, what), g_c[key], g_n[key], dtype)
        assert (g_c["dx"] is None) == (not need_dx) and (g_c["trace_h"] is None) == (not need_trace), what


SCALE = -900  # 2^-900: far below float's range, within float64's, so the reference can be run at true size


@pytest.mark.parametrize("carry", [False, True], ids=["true-scale", "carry_exp"])
@pytest.mark.parametrize("shape", SHAPES[:2])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_tiny_gradient_moves_the_exponent_and_the_results_agree(isa, cell, shape, carry):
    """d_out, d_hn, d_cn times 2^-900 (float64): the kernel carries them at an exponent near -900.
    At true scale every result is the reference's times 2^-900; with carry_exp = -900 and d_hn,
    d_cn given as scaled values, dh0 and dc0 come back scaled, their exponent in carry_exp."""
    T, B, I, H = shape
    args, (d_out, d_hn, d_cn) = _problem(cell, T, B, I, H, np.float64, "both", seed=7)
    _, _, s_n = numpy_rnn.seq_forward(cell, *args)
    _, _, s_c = c_rnn.seq_forward(cell, *args)
    want = numpy_rnn.seq_backward(cell, s_n, d_out, d_hn=d_hn, d_cn=d_cn)
    tiny = lambda a: None if a is None else np.ldexp(a, SCALE)  # noqa: E731
    if carry:
        g = c_rnn.seq_backward(cell, s_c, tiny(d_out), d_hn=d_hn, d_cn=d_cn, carry_exp=SCALE)
        e = g["carry_exp"]  # one exponent per sequence (row) of the batch
        assert e.shape == (B,) and np.all(e != 0)
        back = {k: (np.ldexp(v, -SCALE + (e[:, None] if k in ("dh0", "dc0") else 0))
                    if v is not None else None) for k, v in g.items() if k in KEYS}
    else:
        g = c_rnn.seq_backward(cell, s_c, tiny(d_out), d_hn=tiny(d_hn), d_cn=tiny(d_cn))
        back = {k: None if g[k] is None else np.ldexp(g[k], -SCALE) for k in KEYS}
    for key in KEYS:
        _close("%s %s %s carry=%s" % (key, cell, shape, carry), back[key], want[key], np.float64)

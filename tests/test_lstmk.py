"""The LSTM's sequence forward as one product per step, and vmath.h's exp scaling.

The C sequence forward computes each step's pre-activations as one product,
[x_t | h_{t-1} | 1] @ [W_ih | W_hh | b_ih + b_hh]^T.  The NumPy reference keeps
the two halves and the two biases apart, so comparing them checks the gathered
rows, the packed weights and the bias column, for every way of giving biases
(either alone, both, none), for no input features at all (I = 0), and at sizes
that leave partial vector panels.

vmath.h's float32 tanh and sigmoid take 2^n from the bits of the rounding sum,
and sigmoid scales by 2^(n + 64) * 2^-64 so that its subnormal results come out
right.  Checked here: a dense sweep across the underflow range, the clamp edges,
and NaN inputs with any payload (the exponent bits come from the input's bits,
so a NaN must not turn into a number).
"""
import numpy as np
import pytest

from tinybptt.kernels import numpy as KN

KC = pytest.importorskip("tinybptt.kernels.c")
c_ops = pytest.importorskip("tinybptt.kernels.c_ops")


def _inputs(rng, T, B, I, H, bias, dtype, scale=0.6):
    def r(*shape):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    return dict(x=r(T, B, I), h0=r(B, H), c0=r(B, H), w_ih=r(4 * H, I), w_hh=r(4 * H, H),
                b_ih=r(4 * H) if bias in ("both", "ih") else None,
                b_hh=r(4 * H) if bias in ("both", "hh") else None)


def _forward(K, a):
    return K.seq_forward("lstm", a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])


@pytest.mark.parametrize("bias", ["both", "ih", "hh", "none"])
@pytest.mark.parametrize("T,B,I,H", [(3, 4, 0, 5), (4, 3, 1, 1), (5, 2, 2, 16), (2, 7, 7, 13), (3, 33, 3, 9)])
def test_forward_matches_reference(T, B, I, H, bias):
    a = _inputs(np.random.default_rng(T * 1000 + B * 100 + I * 10 + H), T, B, I, H, bias, np.float64)
    out_c, _, s_c = _forward(KC, a)
    out_r, _, s_r = _forward(KN, a)
    # the outputs, and what the backward pass reads: c_t, the activated gates, tanh(c_t)
    for got, want in ((out_c, out_r), (s_c.c_out, s_r.c_out), (s_c.gates, s_r.gates), (s_c.tanh_c, s_r.tanh_c)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_forward_float32_at_the_training_loop_shape():
    """T=100, B=32, I=2, H=64 in float32 against the float64 reference (weights
    of the size an initialisation gives, 1/sqrt(H), so that the float32 rounding
    is not amplified through the steps)."""
    a = _inputs(np.random.default_rng(7), 100, 32, 2, 64, "both", np.float64, scale=0.125)
    a32 = {k: None if v is None else v.astype(np.float32) for k, v in a.items()}
    out_c = _forward(KC, a32)[0]
    out_r = _forward(KN, a)[0]
    assert out_c.dtype == np.float32
    np.testing.assert_allclose(out_c, out_r, rtol=0, atol=1e-6)


def test_sigmoid_across_the_underflow_range():
    """Within an ulp (of float32, subnormal spacing below 1.2e-38) on a dense sweep
    from where exp(x) underflows to 0 up through the smallest normal numbers."""
    x = np.unique(np.linspace(-104.5, -80.0, 400001).astype(np.float32))
    ex = np.exp(x.astype(np.float64))
    exact = ex / (1 + ex)
    got = c_ops.sigmoid(x)
    ulps = np.abs(got.astype(np.float64) - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)
    worst = int(np.argmax(ulps))
    assert ulps[worst] <= 1.0, "sigmoid(%r): %.2f ulps" % (x[worst], ulps[worst])
    assert np.all(got[x < -103.98] == 0)       # below half the smallest subnormal
    assert np.all(got[x > -103.9] > 0)         # and above it, never flushed


def test_clamp_edges():
    """tanh saturates to exactly +-1 from |x| = 9.1 on (its clamp at |x| = 43.5
    inside that range), sigmoid to exactly 1 and 0 at large |x|."""
    t = np.linspace(9.1, 200.0, 200001).astype(np.float32)
    assert np.all(c_ops.tanh(t) == 1) and np.all(c_ops.tanh(-t) == -1)
    s = np.linspace(105.0, 1e4, 1001).astype(np.float32)
    assert np.all(c_ops.sigmoid(s) == 1) and np.all(c_ops.sigmoid(-s) == 0)


def test_nan_with_any_payload_stays_nan():
    bits = np.array([0x7FC00000, 0x7FC00001, 0x7FC0FFFF, 0x7F800001, 0x7FBFFFFF, 0xFFC12345, 0xFFFFFFFF],
                    np.uint32)
    x = bits.view(np.float32)
    assert np.all(np.isnan(c_ops.sigmoid(x))) and np.all(np.isnan(c_ops.tanh(x)))
    # and inside the LSTM's gate loop: a NaN pre-activation gives NaN outputs
    a = _inputs(np.random.default_rng(3), 2, 2, 2, 16, "both", np.float32)
    a["x"][0, 0, 0] = x[1]
    out = _forward(KC, a)[0]
    assert np.all(np.isnan(out[:, 0]))

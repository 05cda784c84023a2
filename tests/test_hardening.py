"""Hardening: bad input, strides and layouts, edge sizes, numerical edge cases, threads.

1. Every public entry point rejects bad input with a tinybptt error that names the
   op or layer, the shapes and dtypes, and says what to do (one table of cases).
2. Non-contiguous, negatively strided, broadcast (zero-stride), transposed and
   misaligned NumPy inputs give the same results as contiguous copies, on both
   backends; ``out`` overlapping an operand does not corrupt the product.
3. Edge sizes: T = 1, B = 1, H = 1 against hand-computed values; 0-sized dimensions
   work (kernels, cells) or raise a clear error (layers, losses); T = 10 000 in
   sequence mode agrees between the C kernels and the NumPy reference.
4. Numerical edge cases: tanh, sigmoid, log_softmax, cross_entropy at +-1000, +-inf
   and NaN give the right values and gradients with warnings turned into errors
   and ``np.errstate(all="raise")``; the recurrent kernels likewise; NaN propagates
   forward in time only; anomaly mode names the op, layer and step.
5. Threads: two threads train independent models at once (C backend) and each gets
   bit for bit what it gets alone; no_grad in one thread does not leak into the other.
6. A ``saved`` whose arrays no longer fit the forward pass is refused before C reads it.

Expected values are computed independently (Python's ``math``, closed forms, or the
NumPy reference when the C backend is under test), never by the code under test.
"""
import math
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import kernels, nn, optim
from tinybptt.errors import DTypeError, GraphError, ShapeError
from tinybptt.kernels import numpy as KN
from tinybptt.kernels import numpy_rnn
from tinybptt.nn import functional as F

try:
    from tinybptt.kernels import c as KC
except ImportError:  # the C extension is not built
    KC = None

needs_c = pytest.mark.skipif(KC is None, reason="C extension not built")
KERNELS = [pytest.param(KN, id="numpy"), pytest.param(KC, id="c", marks=needs_c)]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
CELLS = list(GATES)


@pytest.fixture
def c_backend():
    """The C backend made active for the test (and the previous one restored)."""
    if KC is None:
        pytest.skip("C extension not built")
    previous = tb.get_backend()
    tb.set_backend("c")
    yield
    tb.set_backend(previous)


@pytest.fixture
def strict_fp():
    """Warnings are errors and NumPy raises on every floating-point event (also underflow)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            yield


def rnn_args(rng, cell, T, B, I, H, dtype=np.float64, bias=True, scale=0.5):
    """Inputs of seq_forward (x is (B, I) when T is None), as a dict."""
    G = GATES[cell]

    def r(*shape):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    return dict(x=r(B, I) if T is None else r(T, B, I), h=r(B, H), c=r(B, H) if cell == "lstm" else None,
                w_ih=r(G * H, I), w_hh=r(G * H, H), b_ih=r(G * H) if bias else None, b_hh=r(G * H) if bias else None)


def seq(K, cell, a):
    return K.seq_forward(cell, a["x"], a["h"], a["c"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])


# =========================================================================== 1. bad input


def _param(shape, grad_shape=None):
    p = nn.Parameter(np.zeros(shape))
    p.grad = np.ones(shape if grad_shape is None else grad_shape)
    return p


def _inf_grad_param():
    p = nn.Parameter(np.zeros(3))
    p.grad = np.array([1.0, np.inf, 0.0])
    return p


def _readonly(shape):
    a = np.zeros(shape)
    a.flags.writeable = False
    return a


A34, B45 = np.ones((3, 4)), np.ones((4, 5))
X = np.ones((5, 2, 3))  # (T, B, I) for a layer with I = 3
H0 = np.zeros((2, 4))
W = {c: (np.ones((GATES[c] * 4, 3)), np.ones((GATES[c] * 4, 4))) for c in CELLS}

# (id, call, exception, fragments that must all appear in the message)
BAD_INPUT = [
    # ---- Tensor and ops
    ("tensor-complex", lambda: tb.tensor(np.ones(3, complex)), DTypeError, ["tensor", "complex128"]),
    ("tensor-str", lambda: tb.tensor("abc"), DTypeError, ["tensor", "<U3"]),
    ("tensor-int-dtype", lambda: tb.tensor([1, 2], dtype=np.int32), DTypeError, ["float32 or float64", "int32"]),
    ("matmul-mixed", lambda: tb.tensor(np.ones((2, 3), np.float32)) @ tb.tensor(np.ones((3, 2))), DTypeError,
     ["matmul", "mixed dtypes", "(2, 3) float32", "(3, 2) float64", "cast"]),
    ("matmul-1d-b", lambda: tb.tensor(A34) @ tb.tensor(np.ones(4)), ShapeError, ["matmul", "(K, N)", "(4,)"]),
    ("matmul-inner", lambda: tb.tensor(A34) @ tb.tensor(A34), ShapeError, ["matmul", "(3, 4) float64"]),
    ("add-broadcast", lambda: tb.tensor(A34) + tb.tensor(np.ones((2, 4))), ShapeError,
     ["add", "(3, 4)", "(2, 4)", "broadcast"]),
    ("reshape", lambda: tb.tensor(A34).reshape(5, 2), ShapeError, ["reshape", "(3, 4)", "(5, 2)"]),
    ("backward-nonscalar", lambda: (tb.tensor(A34, requires_grad=True) * 2).backward(), ShapeError,
     ["backward", "(3, 4)", "grad="]),
    # ---- kernels, both backends
    *[(f"{n}-matmul-int", lambda K=K: K.matmul(np.ones((2, 2), int), np.ones((2, 2), int)), DTypeError,
       ["matmul", "int64", "float32 or float64", "astype"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-matmul-f16", lambda K=K: K.matmul(np.ones((2, 2), np.float16), np.ones((2, 2), np.float16)),
       DTypeError, ["matmul", "float16"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-matmul-bigendian", lambda K=K: K.matmul(np.ones((2, 2), ">f8"), np.ones((2, 2), ">f8")),
       DTypeError, ["matmul", ">f8", "astype"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-matmul-3d", lambda K=K: K.matmul(np.ones((2, 2, 2)), np.ones((2, 2))), ShapeError,
       ["matmul", "2-D", "(2, 2, 2)"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-matmul-inner", lambda K=K: K.matmul(A34, A34, trans_b=False), ShapeError,
       ["matmul", "inner dimensions", "(3, 4)"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-matmul-out-dtype", lambda K=K: K.matmul(A34, B45, out=np.zeros((3, 5), np.float32)), DTypeError,
       ["matmul", "out", "float32", "float64"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-matmul-out-shape", lambda K=K: K.matmul(A34, B45, out=np.zeros((5, 3))), ShapeError,
       ["matmul", "out", "(3, 5)", "(5, 3)"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-matmul-out-readonly", lambda K=K: K.matmul(A34, B45, out=_readonly((3, 5))), ShapeError,
       ["matmul", "out", "writeable", "read-only"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-matmul-out-strided", lambda K=K: K.matmul(A34, B45, out=np.zeros((3, 10))[:, ::2]), ShapeError,
       ["matmul", "out", "C-contiguous", "np.empty((3, 5)"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-tanh-list", lambda K=K: K.tanh([1.0, 2.0]), DTypeError, ["tanh", "list", "np.asarray"])
      for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-sigmoid-npscalar", lambda K=K: K.sigmoid(np.float64(1.0)), DTypeError,
       ["sigmoid", "NumPy scalar", "np.asarray"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-tanh-int", lambda K=K: K.tanh(np.arange(3)), DTypeError, ["tanh", "int64", "astype"])
      for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-tanh_backward-shapes", lambda K=K: K.tanh_backward(np.ones(3), np.ones(4)), ShapeError,
       ["tanh_backward", "(3,) float64", "(4,) float64"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-relu_backward-mixed", lambda K=K: K.relu_backward(np.ones(3), np.ones(3, np.float32)),
       DTypeError, ["relu_backward", "mixed dtypes"]) for n, K in (("np", KN), ("c", KC)) if K],
    # ---- recurrent kernels, both backends
    *[(f"{n}-seq-cell", lambda K=K: K.seq_forward("lstn", X, H0, None, *W["lstm"], None, None), ShapeError,
       ["seq_forward", "unknown cell", "'lstm'"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-seq-x2d", lambda K=K: K.seq_forward("gru", X[0], H0, None, *W["gru"], None, None), ShapeError,
       ["seq_forward(gru)", "(T, B, I)", "(2, 3)"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-seq-T0", lambda K=K: K.seq_forward("gru", X[:0], H0, None, *W["gru"], None, None), ShapeError,
       ["seq_forward(gru)", "T=0", "(0, 2, 3)"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-seq-h0-batch", lambda K=K: K.seq_forward("rnn_tanh", X, np.zeros((3, 4)), None, *W["rnn_tanh"],
                                                      None, None), ShapeError,
       ["seq_forward(rnn_tanh)", "h0", "(2, H)", "(3, 4)"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-seq-w_ih", lambda K=K: K.seq_forward("lstm", X, H0, H0, np.ones((16, 5)), W["lstm"][1], None, None),
       ShapeError, ["seq_forward(lstm)", "w_ih", "(16, 3)", "G=4, H=4", "(16, 5)"])
      for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-seq-w_hh", lambda K=K: K.seq_forward("gru", X, H0, None, W["gru"][0], np.ones((12, 3)), None, None),
       ShapeError, ["seq_forward(gru)", "w_hh", "(12, 4)", "(12, 3)"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-seq-bias", lambda K=K: K.seq_forward("gru", X, H0, None, *W["gru"], np.ones(4), None), ShapeError,
       ["seq_forward(gru)", "b_ih", "(12,)", "(4,)"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-seq-c0-missing", lambda K=K: K.seq_forward("lstm", X, H0, None, *W["lstm"], None, None), ShapeError,
       ["seq_forward(lstm)", "c0", "required", "zeros"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-seq-c0-extra", lambda K=K: K.seq_forward("gru", X, H0, H0, *W["gru"], None, None), ShapeError,
       ["seq_forward(gru)", "c0", "only an LSTM"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-seq-mixed", lambda K=K: K.seq_forward("gru", X.astype(np.float32), H0, None, *W["gru"], None, None),
       DTypeError, ["seq_forward(gru)", "mixed dtypes", "float32", "float64"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-seq-int", lambda K=K: K.seq_forward("gru", X.astype(int), H0.astype(int), None,
                                                 *(w.astype(int) for w in W["gru"]), None, None),
       DTypeError, ["seq_forward(gru)", "int64", "astype"]) for n, K in (("np", KN), ("c", KC)) if K],
    *[(f"{n}-step-x3d", lambda K=K: K.step_forward("rnn_relu", X, H0, None, *W["rnn_relu"], None, None),
       ShapeError, ["step_forward(rnn_relu)", "(B, I)", "(5, 2, 3)"]) for n, K in (("np", KN), ("c", KC)) if K],
    # ---- layers and cells
    ("Linear-size", lambda: nn.Linear(-1, 3), ValueError, ["Linear", "in_features", "-1"]),
    ("Linear-float-size", lambda: nn.Linear(2.5, 3), ValueError, ["Linear", "in_features", "2.5"]),
    ("Linear-dtype", lambda: nn.Linear(2, 3, dtype=np.int32), DTypeError, ["Linear", "int32"]),
    ("Linear-input", lambda: nn.Linear(3, 2)(np.ones((4, 5))), ShapeError, ["Linear", "(..., 3)", "(4, 5) float64"]),
    ("Linear-input-dtype", lambda: nn.Linear(3, 2)(tb.tensor(np.ones((4, 3), np.float32))), DTypeError,
     ["Linear(3, 2)", "float32", "float64", "astype"]),
    ("Linear-complex", lambda: nn.Linear(3, 2)(np.ones((1, 3), complex)), DTypeError, ["Linear(3, 2)", "complex128"]),
    ("Embedding-size", lambda: nn.Embedding(-1, 3), ValueError, ["Embedding", "num_embeddings", "-1"]),
    ("Embedding-ids-range", lambda: nn.Embedding(4, 2)(np.array([0, 4])), ShapeError, ["Embedding(4, 2)", "[0, 4)"]),
    ("Embedding-ids-inf", lambda: nn.Embedding(4, 2)(np.array([np.inf])), DTypeError, ["Embedding(4, 2)", "integers"]),
    ("Embedding-ids-str", lambda: nn.Embedding(4, 2)(np.array(["a"])), DTypeError, ["Embedding(4, 2)", "<U1"]),
    ("LSTM-input-size", lambda: nn.LSTM(3, 4)(np.ones((5, 2, 7))), ShapeError,
     ["LSTM(input_size=3, hidden_size=4)", "(T, B, 3)", "(5, 2, 7) float64"]),
    ("GRU-input-4d", lambda: nn.GRU(3, 4)(np.ones((5, 2, 1, 3))), ShapeError, ["GRU(", "(5, 2, 1, 3)"]),
    ("RNN-T0", lambda: nn.RNN(3, 4)(np.ones((0, 2, 3))), ShapeError, ["RNN(", "no time steps", "(0, 2, 3)"]),
    ("RNN-B0", lambda: nn.RNN(3, 4)(np.ones((5, 0, 3))), ShapeError, ["RNN(", "no batch", "(5, 0, 3)"]),
    ("RNN-h0-shape", lambda: nn.RNN(3, 4)(X, np.zeros((1, 3, 4))), ShapeError,
     ["RNN(", "h0", "(num_layers, B, H) = (1, 2, 4)", "(1, 3, 4)"]),
    ("GRU-h0-dtype", lambda: nn.GRU(3, 4)(X, tb.tensor(np.zeros((1, 2, 4), np.float32))), DTypeError,
     ["GRU(", "h0", "float32", "astype"]),
    ("LSTM-state-structure", lambda: nn.LSTM(3, 4)(X, np.zeros((1, 2, 4))), ShapeError,
     ["LSTM(", "(h0, c0)", "ndarray"]),
    ("RNN-complex", lambda: nn.RNN(3, 4)(X.astype(complex)), DTypeError, ["RNN(", "complex128"]),
    ("RNN-hidden0", lambda: nn.RNN(3, 0), ValueError, ["RNN", "hidden_size", "0"]),
    ("Module-to-int", lambda: nn.LSTM(3, 4).to(np.int32), DTypeError, ["LSTM.to", "int32", "float32 or float64"]),
    ("RNN-mode", lambda: nn.RNN(3, 4, mode="fast"), ValueError, ["RNN", "mode", "'fast'"]),
    ("LSTMCell-input", lambda: nn.LSTMCell(3, 4)(np.ones((2, 5))), ShapeError,
     ["LSTMCell(input_size=3, hidden_size=4)", "(B, 3)", "(2, 5)"]),
    ("GRUCell-h", lambda: nn.GRUCell(3, 4)(np.ones((2, 3)), np.zeros((3, 4))), ShapeError,
     ["GRUCell(", "h", "(2, 4)", "(3, 4)"]),
    # ---- losses
    ("ce-target-shape", lambda: F.cross_entropy(np.zeros((2, 3)), [0, 1, 2]), ShapeError,
     ["cross_entropy", "(2,)", "(3,)"]),
    ("ce-target-range", lambda: F.cross_entropy(np.zeros((2, 3)), [0, 3]), ShapeError, ["cross_entropy", "[0, 3)"]),
    ("ce-target-float", lambda: F.cross_entropy(np.zeros((2, 3)), [0.5, 1]), DTypeError,
     ["cross_entropy", "integer class indices"]),
    ("ce-empty-mean", lambda: F.cross_entropy(np.zeros((0, 3)), np.zeros(0, int)), ShapeError,
     ["cross_entropy", "no elements", "(0, 3)", "reduction='sum'"]),
    ("mse-shape", lambda: F.mse_loss(np.zeros((2, 3)), np.zeros((3, 2))), ShapeError,
     ["mse_loss", "(2, 3) float64", "(3, 2) float64"]),
    ("mse-empty-mean", lambda: F.mse_loss(np.zeros((0, 3)), np.zeros((0, 3))), ShapeError, ["mse_loss", "(0, 3)"]),
    ("mse-reduction", lambda: F.mse_loss(np.zeros(2), np.zeros(2), reduction="avg"), ValueError,
     ["mse_loss", "'avg'", "'mean'"]),
    ("log_softmax-axis", lambda: F.log_softmax(np.zeros((2, 3)), axis=2), ShapeError,
     ["log_softmax", "axis 2", "(2, 3)", "[-2, 1]"]),
    # ---- optimisers and clipping
    ("sgd-grad-shape", lambda: optim.SGD([_param((3, 4), (5, 3, 4))], lr=0.1).step(), ShapeError,
     ["SGD.step", "parameter 0", "(3, 4)", "(5, 3, 4)"]),
    ("adam-grad-shape", lambda: optim.Adam([_param((3,), (1,))]).step(), ShapeError, ["Adam.step", "(3,)", "(1,)"]),
    ("sgd-duplicate", lambda: (lambda p: optim.SGD([p, p], lr=0.1))(_param((2,))), ValueError,
     ["SGD", "more than once"]),
    ("sgd-lr-nan", lambda: optim.SGD([_param((2,))], lr=float("nan")), ValueError, ["SGD", "lr", "nan"]),
    ("adam-betas", lambda: optim.Adam([_param((2,))], betas=(0.9,)), ValueError, ["Adam", "betas", "(0.9,)"]),
    ("sgd-module", lambda: optim.SGD(nn.Linear(2, 2), lr=0.1), TypeError, ["SGD", "Linear", "model.parameters()"]),
    ("sgd-no-grad", lambda: optim.SGD([tb.tensor([1.0])], lr=0.1), GraphError, ["SGD", "requires_grad=True"]),
    ("clip-max_norm", lambda: nn.utils.clip_grad_norm_([_param((2,))], -1.0), ValueError,
     ["clip_grad_norm_", "max_norm", "-1.0"]),
    ("clip-norm_type", lambda: nn.utils.clip_grad_norm_([_param((2,))], 1.0, norm_type=0), ValueError,
     ["clip_grad_norm_", "norm_type"]),
    ("clip-arrays", lambda: nn.utils.clip_grad_norm_([np.zeros(2)], 1.0), TypeError,
     ["clip_grad_norm_", "ndarray", "model.parameters()"]),
    ("clip-nonfinite", lambda: nn.utils.clip_grad_norm_([nn.Parameter(np.zeros(2)), _param((2,)), _inf_grad_param()],
                                                        1.0, error_if_nonfinite=True),
     GraphError, ["clip_grad_norm_", "inf", "parameters [2]", "(3,)", "detect_anomaly"]),
    ("clip-value-nan", lambda: nn.utils.clip_grad_value_([_param((2,))], float("nan")), ValueError,
     ["clip_grad_value_", "nan"]),
    # ---- gradcheck and truncated BPTT
    ("gradcheck-arrays", lambda: tb.gradcheck(lambda x: x.tanh(), [np.ones(3)]), TypeError,
     ["gradcheck", "Tensors", "ndarray", "tinybptt.tensor"]),
    ("gradcheck-no-grad", lambda: tb.gradcheck(lambda x: x.tanh(), [tb.tensor(np.ones(3))]), ValueError,
     ["gradcheck", "requires_grad=True"]),
    ("gradcheck-fn-output", lambda: tb.gradcheck(lambda x: np.ones(3), [tb.tensor(np.ones(3), requires_grad=True)]),
     TypeError, ["gradcheck", "fn must return a Tensor", "ndarray"]),
    ("tbptt-T0", lambda: tb.bptt.truncated_bptt(nn.RNN(3, 4), np.ones((0, 1, 3)), np.ones((0, 1, 4)),
                                                 F.mse_loss, k1=2), ShapeError,
     ["truncated_bptt", "no time steps", "(0, 1, 3)"]),
    ("tbptt-axis", lambda: tb.bptt.truncated_bptt(nn.RNN(3, 4), X, np.ones((5, 2, 4)), F.mse_loss, k1=2,
                                                   time_axis=3), ShapeError,
     ["truncated_bptt", "time_axis=3", "(5, 2, 3)"]),
    ("tbptt-k1", lambda: tb.bptt.truncated_bptt(nn.RNN(3, 4), X, np.ones((5, 2, 4)), F.mse_loss, k1=0), ValueError,
     ["truncated_bptt", "k1", "0"]),
    ("tbptt-targets", lambda: tb.bptt.truncated_bptt(nn.RNN(3, 4), X, np.ones((4, 2, 4)), F.mse_loss, k1=2),
     ShapeError, ["truncated_bptt", "5 steps", "4", "(5, 2, 3)", "(4, 2, 4)"]),
    ("backend-name", lambda: tb.set_backend("cuda"), tb.BackendError, ["set_backend", "'cuda'", "numpy"]),
]


@pytest.mark.parametrize("call, exc, fragments", [pytest.param(*c[1:], id=c[0]) for c in BAD_INPUT])
def test_bad_input_raises_a_clear_error(call, exc, fragments):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy warning on the way to the error is a failure too
        with pytest.raises(exc) as info:
            call()
    assert isinstance(info.value, (tb.TinyBPTTError, ValueError, TypeError)), type(info.value)
    msg = str(info.value)
    missing = [f for f in fragments if f not in msg]
    assert not missing, "message %r lacks %s" % (msg, missing)


@pytest.mark.parametrize("K", KERNELS)
def test_seq_backward_checks_its_gradients(K):
    rng = np.random.default_rng(0)
    a = rnn_args(rng, "lstm", 4, 2, 3, 5)
    out, c_out, saved = seq(K, "lstm", a)
    cases = [
        (dict(d_out=np.ones((4, 2, 4))), ShapeError, ["seq_backward(lstm)", "d_out", "(4, 2, 5)", "(4, 2, 4)"]),
        (dict(d_out=np.ones((4, 2, 5), np.float32)), DTypeError, ["d_out", "float32", "float64", "astype"]),
        (dict(d_out=None, d_hn=np.ones((2, 6))), ShapeError, ["d_hn", "(2, 5)", "(2, 6)"]),
        (dict(d_out=None, d_cn=np.ones(5)), ShapeError, ["d_cn", "(2, 5)", "(5,)"]),
    ]
    for kwargs, exc, fragments in cases:
        with pytest.raises(exc) as info:
            K.seq_backward("lstm", saved, **kwargs)
        assert all(f in str(info.value) for f in fragments), (str(info.value), fragments)
    with pytest.raises(ShapeError, match="saved comes from seq_forward"):
        K.step_backward("lstm", saved, np.ones((2, 5)))
    with pytest.raises(ShapeError, match=r"saved comes from seq_forward\(lstm\), not seq_forward\(gru\)"):
        K.seq_backward("gru", saved, np.ones((4, 2, 5)))
    with pytest.raises(ShapeError, match="saved must be what seq_forward returned"):
        K.seq_backward("lstm", {"x": a["x"]}, np.ones((4, 2, 5)))


def test_float16_and_integer_data_become_float64_tensors_and_layers_accept_them():
    """At the Tensor level, float16/int/bool data is promoted to float64 (documented);
    only the kernels, which take arrays, insist on float32/float64."""
    for data in (np.ones((2, 3), np.float16), np.arange(6).reshape(2, 3), np.ones((2, 3), bool)):
        t = tb.tensor(data)
        assert t.dtype == np.float64
        np.testing.assert_array_equal(t.data, data.astype(np.float64))
    lin = nn.Linear(3, 2)
    ref = np.ones((1, 3)) @ lin.weight.data.T + lin.bias.data
    np.testing.assert_allclose(lin(np.ones((1, 3), np.int32)).data, ref)
    np.testing.assert_allclose(lin(np.ones((1, 3), np.float16)).data, ref)
    rnn = nn.RNN(1, 2)
    out_int, _ = rnn(np.ones((3, 1, 1), np.int64))
    out_f, _ = rnn(np.ones((3, 1, 1)))
    np.testing.assert_array_equal(out_int.data, out_f.data)


def test_mixed_precision_arithmetic_promotes_and_gradients_keep_each_leaf_dtype():
    a = tb.tensor(np.full(3, 2.0, np.float32), requires_grad=True)
    b = tb.tensor(np.full(3, 3.0), requires_grad=True)
    y = a * b
    assert y.dtype == np.float64
    y.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_array_equal(a.grad, [3, 3, 3])
    np.testing.assert_array_equal(b.grad, [2, 2, 2])


# =========================================================================== 2. layouts


def _misaligned(a):
    """A C-contiguous copy of ``a`` whose data pointer is NOT aligned to its item size."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    m = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned and m.flags.c_contiguous
    return m


def _layouts(a):
    """Views of ``a`` (2-D) with the same values but other memory layouts."""
    M, N = a.shape
    big = np.zeros((2 * M + 1, 3 * N + 1), a.dtype)
    big[1::2, 1::3] = a
    rev = np.ascontiguousarray(a[::-1, ::-1])
    return {
        "strided": big[1::2, 1::3],
        "negative": rev[::-1, ::-1],
        "fortran": np.asfortranarray(a),
        "transposed": np.ascontiguousarray(a.T).T,
        "misaligned": _misaligned(a),
    }


@pytest.mark.parametrize("K", KERNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_is_layout_blind(K, dtype):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((37, 19)).astype(dtype)
    b = rng.standard_normal((19, 23)).astype(dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for (na, va) in [("contig", a), *_layouts(a).items()]:
        for (nb, vb) in [("contig", b), *_layouts(b).items()]:
            a0, b0 = va.copy(), vb.copy()
            got = K.matmul(va, vb)
            assert got.dtype == dtype and got.shape == (37, 23)
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg="a %s, b %s" % (na, nb))
            np.testing.assert_array_equal(va, a0)  # inputs untouched
            np.testing.assert_array_equal(vb, b0)
    # op(a) through the transpose flags, on strided views
    got = K.matmul(_layouts(a.T.copy())["negative"], _layouts(b.T.copy())["strided"], trans_a=True, trans_b=True)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    # zero-stride (broadcast) operands
    row = rng.standard_normal(19).astype(dtype)
    got = K.matmul(np.broadcast_to(row, (5, 19)), b)
    np.testing.assert_allclose(got, np.tile(row.astype(np.float64) @ b.astype(np.float64), (5, 1)), rtol=tol, atol=tol)


@pytest.mark.parametrize("K", KERNELS)
@pytest.mark.parametrize("n", [4, 300])
def test_matmul_out_overlapping_an_operand(K, n):
    """matmul(x, w, out=x): the C GEMM used to read rows it had already overwritten."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    for accumulate in (False, True):
        for which in ("a", "b", "a_transposed"):
            xs, ws = x.copy(), w.copy()
            if which == "a":
                want = x @ w + (x if accumulate else 0)
                got = K.matmul(xs, ws, out=xs, accumulate=accumulate)
            elif which == "b":
                want = x @ w + (w if accumulate else 0)
                got = K.matmul(xs, ws, out=ws, accumulate=accumulate)
            else:
                want = x.T @ w + (x if accumulate else 0)
                got = K.matmul(xs, ws, trans_a=True, out=xs, accumulate=accumulate)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9, err_msg="%s accumulate=%s" % (which, accumulate))


@pytest.mark.parametrize("K", KERNELS)
def test_activations_are_layout_blind(K):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 7)) * 3
    for name, want, dname in (("tanh", np.tanh(x), "tanh_backward"), ("sigmoid", 1 / (1 + np.exp(-x)), "sigmoid_backward"),
                              ("relu", np.maximum(x, 0), "relu_backward")):
        for lay, v in _layouts(x).items():
            np.testing.assert_allclose(getattr(K, name)(v), want, rtol=1e-14, atol=1e-15, err_msg=lay)
            y, dy = want, rng.standard_normal(x.shape)
            ref = getattr(KN, dname)(y, dy)
            for lay2, vy in _layouts(y).items():
                got = getattr(K, dname)(vy, _layouts(dy)[lay])
                np.testing.assert_allclose(got, ref, rtol=1e-14, atol=1e-15, err_msg="%s %s" % (lay, lay2))
        np.testing.assert_allclose(getattr(K, name)(np.broadcast_to(x[0], (4, 7))), np.broadcast_to(want[0], (4, 7)),
                                   rtol=1e-14, atol=1e-15)


def _view3(a, how):
    """A view of the 3-D or lower array ``a`` with the same values and another layout."""
    if how == "negative":
        return np.ascontiguousarray(a[::-1])[::-1]
    if how == "strided":
        big = np.zeros((a.shape[0] * 2,) + a.shape[1:], a.dtype)
        big[::2] = a
        return big[::2]
    if how == "fortran":
        return np.asfortranarray(a)
    return _misaligned(a)


@needs_c
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("how", ["negative", "strided", "fortran", "misaligned"])
def test_recurrent_kernels_are_layout_blind(cell, how):
    rng = np.random.default_rng(4)
    a = rnn_args(rng, cell, 4, 3, 2, 5)
    ref_out, ref_c, ref_saved = seq(KN, cell, a)
    d_out = rng.standard_normal(ref_out.shape)
    ref = KN.seq_backward(cell, ref_saved, d_out)
    views = {k: None if v is None else _view3(v, how) for k, v in a.items()}
    for K in (KN, KC):
        out, c_out, saved = seq(K, cell, views)
        np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-13)
        g = K.seq_backward(cell, saved, _view3(d_out, how))
        for k, v in ref.items():
            if v is not None:
                np.testing.assert_allclose(g[k], v, rtol=1e-11, atol=1e-12, err_msg="%s %s" % (K.NAME, k))
        h, c, s = K.step_forward(cell, views["x"][0], views["h"], views["c"], views["w_ih"], views["w_hh"],
                                 views["b_ih"], views["b_hh"])
        np.testing.assert_allclose(h, ref_out[0], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("mode", ["sequence", "cell", "ops"])
def test_layers_take_non_contiguous_inputs(backend, mode):
    rng = np.random.default_rng(5)
    nn.manual_seed(0)
    lstm = nn.LSTM(3, 4, mode=mode)
    x = rng.standard_normal((6, 2, 3))
    h0, c0 = rng.standard_normal((1, 2, 4)), rng.standard_normal((1, 2, 4))
    out, (h, c) = lstm(x, (h0, c0))
    (out * out).sum().backward()
    want = [out.data.copy(), h.data.copy(), c.data.copy()] + [p.grad.copy() for p in lstm.parameters()]
    for p in lstm.parameters():
        p.grad = None
    xv = np.ascontiguousarray(x[::-1])[::-1]                      # negative strides
    h0v = np.asfortranarray(h0)
    c0v = np.zeros((1, 2, 8))
    c0v[:, :, ::2] = c0
    out, (h, c) = lstm(xv, (h0v, c0v[:, :, ::2]))
    (out * out).sum().backward()
    got = [out.data, h.data, c.data] + [p.grad for p in lstm.parameters()]
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)
    # batch_first with a transposed (non-contiguous) input
    bf = nn.GRU(3, 4, batch_first=True, mode=mode)
    o1, _ = bf(np.ascontiguousarray(x.transpose(1, 0, 2)))
    o2, _ = bf(x.transpose(1, 0, 2))
    np.testing.assert_array_equal(o1.data, o2.data)


# =========================================================================== 3. edge sizes


def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


@pytest.mark.parametrize("mode", ["sequence", "cell", "ops"])
def test_T1_B1_H1_I1_match_hand_computed_cells(backend, mode):
    """With every size 1 the cells are scalar formulas: compute them with math, not with tinybptt."""
    x, h0, c0 = 0.7, -0.3, 0.4
    rnn = nn.RNN(1, 1, mode=mode)
    w = {k: float(p.data.ravel()[0]) for k, p in rnn.named_parameters()}
    out, h = rnn(np.array([[[x]]]), np.array([[[h0]]]))
    want = math.tanh(w["weight_ih_l0"] * x + w["bias_ih_l0"] + w["weight_hh_l0"] * h0 + w["bias_hh_l0"])
    assert out.shape == (1, 1, 1) and h.shape == (1, 1, 1)
    assert out.item() == pytest.approx(want, rel=1e-13) and h.item() == pytest.approx(want, rel=1e-13)
    out.sum().backward()
    d = 1 - want * want  # tanh' from the output
    assert rnn.weight_ih_l0.grad.item() == pytest.approx(d * x, rel=1e-12)
    assert rnn.weight_hh_l0.grad.item() == pytest.approx(d * h0, rel=1e-12)
    assert rnn.bias_hh_l0.grad.item() == pytest.approx(d, rel=1e-12)

    lstm = nn.LSTM(1, 1, mode=mode)
    Wi, Wh = lstm.weight_ih_l0.data.ravel(), lstm.weight_hh_l0.data.ravel()
    bi, bh = lstm.bias_ih_l0.data.ravel(), lstm.bias_hh_l0.data.ravel()
    pre = [Wi[k] * x + bi[k] + Wh[k] * h0 + bh[k] for k in range(4)]
    i, f, g, o = _sig(pre[0]), _sig(pre[1]), math.tanh(pre[2]), _sig(pre[3])
    c1 = f * c0 + i * g
    h1 = o * math.tanh(c1)
    out, (h, c) = lstm(np.array([[x]]), (np.array([[h0]]), np.array([[c0]])))  # unbatched (T, I)
    assert out.shape == (1, 1) and h.shape == (1, 1) and c.shape == (1, 1)
    assert out.item() == pytest.approx(h1, rel=1e-13) and c.item() == pytest.approx(c1, rel=1e-13)

    gru = nn.GRU(1, 1, mode=mode)
    Wi, Wh = gru.weight_ih_l0.data.ravel(), gru.weight_hh_l0.data.ravel()
    bi, bh = gru.bias_ih_l0.data.ravel(), gru.bias_hh_l0.data.ravel()
    r = _sig(Wi[0] * x + bi[0] + Wh[0] * h0 + bh[0])
    z = _sig(Wi[1] * x + bi[1] + Wh[1] * h0 + bh[1])
    n = math.tanh(Wi[2] * x + bi[2] + r * (Wh[2] * h0 + bh[2]))
    out, h = gru(np.array([[[x]]]), np.array([[[h0]]]))
    assert out.item() == pytest.approx((1 - z) * n + z * h0, rel=1e-13)


@pytest.mark.parametrize("K", KERNELS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("sizes", [(3, 0, 2, 4), (3, 2, 0, 4), (3, 2, 2, 0), (1, 0, 0, 0)], ids=str)
def test_recurrent_kernels_with_empty_dimensions(K, cell, sizes):
    """B, I or H = 0 is legal in the kernels: right shapes, zeros where a sum is empty."""
    T, B, I, H = sizes
    rng = np.random.default_rng(6)
    a = rnn_args(rng, cell, T, B, I, H)
    out, c_out, saved = seq(K, cell, a)
    assert out.shape == (T, B, H) and (c_out is None) == (cell != "lstm")
    g = K.seq_backward(cell, saved, np.ones((T, B, H)))
    assert g["dx"].shape == (T, B, I) and g["dh0"].shape == (B, H)
    assert g["dw_ih"].shape == (GATES[cell] * H, I) and g["dw_hh"].shape == (GATES[cell] * H, H)
    if B == 0:  # no samples: every weight gradient is an empty sum
        assert not np.any(g["dw_ih"]) and not np.any(g["dw_hh"]) and not np.any(g["db_ih"])
    if I == 0 and B and H:  # no input: the result equals a run with the input path removed
        out2, _, _ = seq(KN, cell, dict(a, x=np.zeros((T, B, 1)), w_ih=np.zeros((GATES[cell] * H, 1))))
        np.testing.assert_allclose(out, out2, rtol=1e-13, atol=1e-14)


def test_empty_dimensions_in_kernels_and_cells(backend):
    K = kernels.backend
    np.testing.assert_array_equal(K.matmul(np.ones((3, 0)), np.ones((0, 2))), np.zeros((3, 2)))
    out = np.full((3, 2), 7.0)
    np.testing.assert_array_equal(K.matmul(np.ones((3, 0)), np.ones((0, 2)), out=out), np.zeros((3, 2)))
    assert K.matmul(np.ones((0, 4)), np.ones((4, 2))).shape == (0, 2)
    assert K.tanh(np.ones((0, 3))).shape == (0, 3)
    assert K.sigmoid_backward(np.ones((2, 0)), np.ones((2, 0))).shape == (2, 0)
    cell = nn.LSTMCell(3, 4)
    h, c = cell(np.ones((0, 3)))
    assert h.shape == (0, 4) and c.shape == (0, 4)
    t = tb.tensor(np.ones((0, 3)), requires_grad=True)
    (t.tanh() * 2).sum().backward()
    assert t.grad.shape == (0, 3)


def test_tensor_matmul_with_empty_inner_dimension():
    y = tb.tensor(np.ones((2, 0))) @ tb.tensor(np.ones((0, 3)))
    np.testing.assert_array_equal(y.data, np.zeros((2, 3)))


@pytest.mark.parametrize("cell", CELLS)
def test_ten_thousand_steps_in_sequence_mode(c_backend, cell):
    """T = 10 000 with B = 1, H = 2: the C kernels agree with the NumPy reference's plain loop."""
    rng = np.random.default_rng(7)
    T = 10_000
    a = rnn_args(rng, cell, T, 1, 1, 2, scale=0.8)
    out, c_out, saved = seq(KC, cell, a)
    ref_out, ref_c, ref_saved = seq(KN, cell, a)
    np.testing.assert_allclose(out, ref_out, rtol=1e-9, atol=1e-12)
    d = np.zeros_like(out)
    d[-1] = 1.0  # only the last output: the gradient must travel all 10 000 steps
    g, ref = KC.seq_backward(cell, saved, d), KN.seq_backward(cell, ref_saved, d)
    for k in ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh", "trace_h"):
        np.testing.assert_allclose(g[k], ref[k], rtol=1e-8, atol=1e-12, err_msg=k)
    # and through the layer: one node, gradients everywhere finite
    layer = {"rnn_tanh": nn.RNN, "rnn_relu": lambda i, h: nn.RNN(i, h, nonlinearity="relu"),
             "lstm": nn.LSTM, "gru": nn.GRU}[cell](1, 2)
    x = tb.tensor(a["x"], requires_grad=True)
    res, _ = layer(x)
    res[-1].sum().backward()
    assert x.grad.shape == (T, 1, 1) and np.all(np.isfinite(x.grad))
    assert layer.grad_trace.norms().shape == (1, T)


# =========================================================================== 4. numerical edge cases

EDGE = np.array([-1000.0, -50.0, -0.0, 0.0, 50.0, 1000.0, -np.inf, np.inf, np.nan])


def _math_or_nan(f, v):
    return float("nan") if math.isnan(v) else f(v)


def _ref_sigmoid(v):
    if math.isinf(v):
        return 1.0 if v > 0 else 0.0
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_sigmoid_at_extremes(backend, dtype, strict_fp):
    x = tb.tensor(EDGE.astype(dtype), requires_grad=True)
    for name, fn, ref, dref in (
            ("tanh", tb.tanh, math.tanh, lambda y: 1 - y * y),
            ("sigmoid", tb.sigmoid, _ref_sigmoid, lambda y: y * (1 - y))):
        x.grad = None
        y = fn(x)
        want = np.array([_math_or_nan(ref, v) for v in EDGE], dtype=np.float64)
        assert y.dtype == dtype
        np.testing.assert_allclose(y.data.astype(np.float64), want, rtol=2e-7, atol=1e-30, equal_nan=True,
                                   err_msg=name)
        y.sum().backward()
        dwant = np.array([float("nan") if math.isnan(w) else dref(w) for w in want])
        np.testing.assert_allclose(x.grad.astype(np.float64), dwant, rtol=2e-6, atol=1e-30, equal_nan=True,
                                   err_msg=name)
        assert np.all(x.grad[np.abs(EDGE) >= 1000] == 0)  # saturated: exactly zero, not NaN
        assert np.isnan(y.data[-1]) and np.isnan(x.grad[-1])  # NaN in, NaN out


def _ref_log_softmax(row):
    """log_softmax of one row with Python floats: NaN when undefined (a NaN, a +inf, or all -inf)."""
    if any(math.isnan(v) for v in row) or any(v == math.inf for v in row) or all(v == -math.inf for v in row):
        return [float("nan")] * len(row)
    m = max(row)
    lse = m + math.log(math.fsum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


ROWS = [[-1000.0, 1000.0, 0.0], [1000.0, 1000.0, 1000.0], [-1000.0, -1000.0, -999.0], [-np.inf, 0.0, 1.0],
        [-np.inf, -np.inf, 5.0], [-np.inf, -np.inf, -np.inf], [np.inf, 0.0, 1.0], [np.inf, np.inf, 0.0],
        [np.nan, 0.0, 1.0], [3.0, 1.0, 2.0]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_and_softmax_at_extremes(backend, dtype, strict_fp):
    x = tb.tensor(np.array(ROWS, dtype), requires_grad=True)
    g = np.array([[1.0, 2.0, 3.0]] * len(ROWS), dtype)
    want = np.array([_ref_log_softmax(r) for r in ROWS])
    y = F.log_softmax(x)
    (y * tb.tensor(g)).sum().backward()
    np.testing.assert_allclose(y.data, want, rtol=1e-6, equal_nan=True)
    with np.errstate(under="ignore"):  # (the test's own reference may underflow)
        p = np.exp(want)  # gradient of sum(g * log_softmax): g - softmax * sum(g)
    np.testing.assert_allclose(x.grad, g - p * g.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6, equal_nan=True)
    x.grad = None
    s = F.softmax(x)
    (s * tb.tensor(g)).sum().backward()
    np.testing.assert_allclose(s.data, p, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(x.grad, p * (g - (g * p).sum(axis=1, keepdims=True)), rtol=1e-5, atol=1e-6,
                               equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_at_extremes(backend, dtype, strict_fp):
    cases = [  # (logits, target, loss, d loss / d logits) -- worked out by hand
        ([-1000.0, 1000.0, 0.0], 1, 0.0, [0.0, 0.0, 0.0]),
        ([-1000.0, 1000.0, 0.0], 0, 2000.0, [-1.0, 1.0, 0.0]),
        ([1000.0, 1000.0, 1000.0], 2, math.log(3), [1 / 3, 1 / 3, -2 / 3]),
        ([-np.inf, 0.0, 0.0], 1, math.log(2), [0.0, -0.5, 0.5]),     # -inf masks a class
        ([-np.inf, 0.0, 0.0], 0, math.inf, [-1.0, 0.5, 0.5]),        # the target was masked
        ([np.nan, 0.0, 0.0], 1, math.nan, [math.nan] * 3),
        ([np.inf, 0.0, 0.0], 0, math.nan, [math.nan] * 3),
    ]
    for logits, target, loss, grad in cases:
        x = tb.tensor(np.array([logits], dtype), requires_grad=True)
        out = F.cross_entropy(x, [target])
        assert out.dtype == dtype
        out.backward()
        np.testing.assert_allclose(out.item(), loss, rtol=1e-6, equal_nan=True, err_msg=str(logits))
        np.testing.assert_allclose(x.grad[0], grad, rtol=1e-6, atol=1e-7, equal_nan=True, err_msg=str(logits))
    # a batch: one bad row makes only its own gradient NaN
    x = tb.tensor(np.array([[0.0, 1.0], [np.nan, 0.0], [1000.0, -1000.0]], dtype), requires_grad=True)
    F.cross_entropy(x, [0, 1, 0], reduction="sum").backward()
    assert np.all(np.isfinite(x.grad[[0, 2]])) and np.all(np.isnan(x.grad[1]))


@pytest.mark.parametrize("K", KERNELS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_recurrent_kernels_saturate_without_warnings(K, cell, dtype, strict_fp):
    """Pre-activations of +-1000 (weights scaled up): finite, saturated, no FP exception."""
    rng = np.random.default_rng(8)
    a = rnn_args(rng, cell, 5, 2, 3, 4, dtype=dtype)
    a["w_ih"] = (np.sign(a["w_ih"]) * 500).astype(dtype)
    a["x"] = (np.sign(a["x"]) * 2).astype(dtype)  # |pre-activation| up to 3000
    out, c_out, saved = seq(K, cell, a)
    g = K.seq_backward(cell, saved, np.ones_like(out))
    assert np.all(np.isfinite(out))
    for k, v in g.items():
        if v is not None:
            assert np.all(np.isfinite(v)), k
    if cell != "rnn_relu":
        assert np.all(np.abs(out) <= 1)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("K", [pytest.param(KC, id="c", marks=needs_c), pytest.param(KN, id="numpy")])
def test_recurrent_kernels_with_nonfinite_input(K, cell, special):
    rng = np.random.default_rng(9)
    a = rnn_args(rng, cell, 6, 3, 2, 4)
    a["x"][2, 1, 0] = special  # step 2, sample 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            out, c_out, saved = seq(K, cell, a)
            g = K.seq_backward(cell, saved, np.ones_like(out))
    # the other samples never see it; steps before 2 are untouched
    clean = dict(a, x=a["x"].copy())
    clean["x"][2, 1, 0] = 0.0
    ref_out, _, _ = seq(KN, cell, clean)
    np.testing.assert_allclose(out[:, [0, 2]], ref_out[:, [0, 2]], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(out[:2], ref_out[:2], rtol=1e-12, atol=1e-13)
    if np.isnan(special):
        assert np.all(np.isnan(out[2:, 1])), "NaN must propagate forward in time"
        assert np.all(np.isnan(g["dw_ih"][:, 0]))  # the weight that multiplied it
        assert np.all(np.isfinite(g["dh0"][[0, 2]])) and np.all(np.isfinite(g["dx"][:, [0, 2]]))
        if cell != "rnn_relu":  # (relu' at NaN is 0, as in PyTorch: relu stops a NaN going backward)
            assert np.all(np.isnan(g["dh0"][1])) and np.all(np.isnan(g["dx"][:, 1]))
    if K is KC:  # the C kernels put their NaNs where the reference does (with warnings silenced)
        with np.errstate(all="ignore"):
            r_out, _, r_saved = seq(KN, cell, a)
            r = KN.seq_backward(cell, r_saved, np.ones_like(r_out))
        np.testing.assert_allclose(out, r_out, rtol=1e-12, atol=1e-13, equal_nan=True)
        for k, v in r.items():
            if v is not None:
                np.testing.assert_allclose(g[k], v, rtol=1e-10, atol=1e-12, equal_nan=True, err_msg=k)


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

    class Sqrt(tb.Function):  # d sqrt(x)/dx = 1/(2 sqrt x): inf at 0, so 0 * inf = NaN below
        @staticmethod
        def forward(ctx, x):
            y = np.sqrt(x)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            with np.errstate(divide="ignore", invalid="ignore"):
                return g / (2 * y)

    x = tb.tensor(np.array([0.0, 4.0]), requires_grad=True)
    with pytest.raises(inspect.AnomalyError) as info:
        with inspect.detect_anomaly():
            (Sqrt.apply(x) * 0.0).sum().backward()
    a = info.value.anomaly
    assert (a.phase, a.op, a.inputs_finite) == ("backward", "sqrt", True)


# =========================================================================== 5. threads


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
        loss = F.cross_entropy(head(out), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
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


# =========================================================================== 6. tampered saved

_TAMPER = """
import numpy as np, sys
from tinybptt.kernels import {backend} as K
rng = np.random.default_rng(0)
x, h0 = rng.standard_normal((6, 2, 3)), np.zeros((2, 4))
out, _, saved = K.seq_forward("rnn_tanh", x, h0, None, rng.standard_normal((4, 3)),
                              rng.standard_normal((4, 4)), None, None)
saved.out = saved.out[:2].copy()   # the saved outputs no longer cover T = 6 steps
try:
    K.seq_backward("rnn_tanh", saved, np.ones((6, 2, 4)))
except Exception as e:
    print(type(e).__name__, e)
    sys.exit(0)
print("no error")
sys.exit(3)
"""


@needs_c
def test_seq_backward_refuses_a_saved_whose_arrays_were_replaced():
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(_TAMPER.format(backend="c"))],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("ShapeError") and "out" in r.stdout, (r.returncode, r.stdout,
                                                                                         r.stderr[-2000:])


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

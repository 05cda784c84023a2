"""Bad input to every public entry point raises a tinybptt error that names the op
or layer, the shapes and dtypes, and says what to do (one table of cases); a
recurrent kernel's ``saved`` whose arrays no longer fit its forward pass is
refused before C reads it.
"""
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn, optim
from tinybptt.errors import DTypeError, GraphError, ShapeError
from tinybptt.kernels import numpy as KN
from tinybptt.nn import functional as F
from kernel_cases import KC, needs_c, KERNELS, CELLS, GATES, rnn_args, seq


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
    ("matmul-1d-k", lambda: tb.tensor(A34) @ tb.tensor(np.ones(3)), ShapeError, ["matmul", "(3, 4) float64", "(3,) float64"]),
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
     ["cross_entropy", "target class indices must be integers", "float64"]),
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

"""Which dtypes the Tensor level accepts and how it promotes them: float16, integer
and bool data become float64 tensors (the kernels, which take arrays, insist on
float32/float64); mixed float32/float64 arithmetic promotes, and each leaf's
gradient keeps the leaf's dtype.
"""
import numpy as np

import tinybptt as tb
from tinybptt import nn


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

"""The initialisers and the in-place edits given values a float weight cannot take: an error naming
the function and the value (never NumPy's, never a silently dropped imaginary part), the tensor
unchanged, and the next valid call right."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinybptt as tb
from tinybptt.errors import DTypeError
from tinybptt.nn import init

EDGES = settings(derandomize=True, database=None, deadline=None, max_examples=30)
NOT_REAL = [1j, 2 + 0j, "a", None, np.array([1.0, 2j])]


@EDGES
@given(call=st.sampled_from(["constant_", "uniform_a", "uniform_b", "normal_mean", "normal_std", "add_alpha",
                             "sub_alpha"]),
       bad=st.sampled_from(range(len(NOT_REAL))))
def test_non_real_values_name_the_function(call, bad):
    """Before: constant_(t, 1j) raised float()'s TypeError and add_(x, alpha=1j) silently added
    the real part only; uniform_/normal_ passed complex bounds to NumPy."""
    v = NOT_REAL[bad]
    t = tb.tensor(np.zeros(2))
    calls = {"constant_": lambda: init.constant_(t, v), "uniform_a": lambda: init.uniform_(t, v, 1.0),
             "uniform_b": lambda: init.uniform_(t, 0.0, v), "normal_mean": lambda: init.normal_(t, v, 1.0),
             "normal_std": lambda: init.normal_(t, 0.0, v), "add_alpha": lambda: t.add_(1.0, alpha=v),
             "sub_alpha": lambda: t.sub_(1.0, alpha=v)}
    op = call.split("_")[0] + "_"
    with pytest.raises((DTypeError, ValueError)) as err:
        calls[call]()
    assert str(err.value).startswith(op + ":")
    assert isinstance(err.value, DTypeError) or "alpha must be a number" in str(err.value)
    np.testing.assert_array_equal(t.data, [0.0, 0.0])  # unchanged
    t.add_(np.array([1.0, 2.0]), alpha=3)  # and the next valid edit is right
    np.testing.assert_array_equal(t.data, [3.0, 6.0])


@pytest.mark.parametrize("call,error,message", [
    (lambda t: init.uniform_(t, 1.0, 0.0), ValueError, "uniform_: needs a <= b, got a=1.0, b=0.0"),
    (lambda t: init.normal_(t, 0.0, -1.0), ValueError, "normal_: std must be >= 0, got -1.0"),
    (lambda t: init.orthogonal_(t, gates=0), ValueError,
     "orthogonal_: gates, if not None, must be an integer >= 1, got 0"),
    (lambda t: init.identity_(t, gates=2.0), ValueError,
     "identity_: gates, if not None, must be an integer >= 1, got 2.0"),
    (lambda t: init.manual_seed("x"), TypeError, "manual_seed: generator must be None, an int seed"),
    (lambda t: init.manual_seed(-1), ValueError, "manual_seed: a generator seed must be >= 0, got -1"),
])
def test_bad_bounds_gates_and_seeds(call, error, message):
    """Before: NumPy's "high - low < 0" and "scale < 0", ZeroDivisionError for gates=0, and
    SeedSequence's errors for manual_seed."""
    t = tb.tensor(np.zeros((4, 2)))
    with pytest.raises(error, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        call(t)
    np.testing.assert_array_equal(t.data, np.zeros((4, 2)))


def test_manual_seed_still_reseeds():
    """What the checked manual_seed must keep doing (int and NumPy int seeds, a Generator)."""
    old = init.get_rng()
    try:
        init.manual_seed(3)
        a = init.normal_(tb.tensor(np.zeros(4))).data.copy()
        init.manual_seed(np.int64(3))
        np.testing.assert_array_equal(init.normal_(tb.tensor(np.zeros(4))).data, a)
        np.testing.assert_array_equal(a, np.random.default_rng(3).normal(size=4))
    finally:
        init.manual_seed(old)  # a Generator: the global one as it was
    assert init.get_rng() is old


@pytest.mark.parametrize("edit", ["setitem", "copy_", "add_", "mul_", "fill_"])
def test_editing_in_a_value_that_requires_grad_is_refused(edit):
    """Before: ``y[0] = w`` (w requiring grad) copied w's values and the graph never learned of it:
    a loss computed from y gave w no gradient, silently."""
    from tinybptt.errors import GraphError
    w = tb.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = tb.tensor(np.zeros((2, 3)))
    calls = {"setitem": lambda: y.__setitem__(0, w), "copy_": lambda: y.copy_(w), "add_": lambda: y.add_(w),
             "mul_": lambda: y.mul_(w), "fill_": lambda: y.fill_(w[0])}
    with pytest.raises(GraphError, match="^%s: the value requires grad" % edit):
        calls[edit]()
    np.testing.assert_array_equal(y.data, np.zeros((2, 3)))
    with tb.no_grad():  # where such edits belong; and a detached value is accepted
        y[0] = w
    y[1] = w.detach()
    np.testing.assert_array_equal(y.data, [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])

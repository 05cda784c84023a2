"""The gradient checker itself: it must catch planted bugs, and say where they are.

The planted bugs are custom Functions whose backward is wrong in a known way
(an additive error on one element, a transposed weight gradient), so the
expected analytic-minus-numeric difference is known here without trusting
gradcheck's own arithmetic.
"""
import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinybptt as tb
from tinybptt.autograd import Function
from tinybptt.gradcheck import GradcheckWarning
from tinybptt.testing import assert_gradients_match, broadcastable_shapes, float_arrays, shapes, tensors

PLANT = 5.0  # the additive error planted in a backward


def make_square(bad_index=None, extra=PLANT):
    """y = x*x; backward adds ``extra`` at ``bad_index`` when given (a planted bug)."""

    class Square(tb.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            dx = np.array(2 * x * g)
            if bad_index is not None:
                dx[bad_index] += extra
            return dx

    return Square


class LinearTransposedGrad(tb.Function):
    """y = x @ W with a planted bug: dW is returned transposed (W is square, so shapes fit)."""

    @staticmethod
    def forward(ctx, x, W):
        ctx.save_for_backward(x, W)
        return x @ W

    @staticmethod
    def backward(ctx, g):
        x, W = ctx.saved_tensors
        return g @ W.T, (x.T @ g).T


def leaf(shape, seed=0, lo=-2, hi=2, dtype=np.float64):
    return tb.tensor(np.random.default_rng(seed).uniform(lo, hi, shape).astype(dtype), requires_grad=True)


def field(msg, name):
    m = re.search(r"%s:\s+(\S+)" % name, msg)
    assert m, "no %r in message:\n%s" % (name, msg)
    return float(m.group(1))


# --------------------------------------------------------------------------- catching planted bugs


def test_planted_error_is_caught_and_described():
    x = leaf((4, 2, 3))
    bad = (2, 1, 0)
    Square = make_square(bad)
    with pytest.raises(tb.GradcheckError) as info:
        tb.gradcheck(Square.apply, [x], names=["x[T,B,I]"])
    msg = str(info.value)
    assert "x[T,B,I]" in msg
    assert "(2, 1, 0)" in msg
    assert "t=2" in msg  # the T axis of the name
    assert "1 of 24" in msg
    assert "Jacobian" not in msg and msg.count("\n") < 15  # a description, not a dump
    analytic, numeric = field(msg, "analytic"), field(msg, "numeric")
    abs_err, rel_err, tol = field(msg, "abs error"), field(msg, "rel error"), field(msg, "tolerance")
    # the planted bug adds exactly PLANT to the true derivative
    assert analytic - numeric == pytest.approx(PLANT, rel=1e-5)
    assert abs_err == pytest.approx(PLANT, rel=1e-5)
    assert rel_err == pytest.approx(PLANT / max(abs(numeric), 1e-5), rel=1e-5)
    assert tol == pytest.approx(1e-5 + 1e-3 * abs(numeric), rel=1e-5)
    rep = info.value.report
    assert not rep.ok and rep.n_failed == 1
    assert rep.worst_input == "x[T,B,I]" and rep.worst_index == bad and rep.worst_timestep == 2
    assert rep.abs_err == pytest.approx(PLANT, rel=1e-5)
    assert isinstance(info.value, AssertionError) and isinstance(info.value, tb.TinyBPTTError)


def test_numeric_value_is_the_true_derivative():
    """With a one-element output, S is the output itself: numeric = d sum(x^2)/dx_i = 2 x_i."""
    x = leaf((3, 2), seed=4)
    bad = (1, 0)
    Square = make_square(bad)

    def fn(x):
        return Square.apply(x).sum()

    rep = tb.gradcheck(fn, [x], raise_exception=False)
    assert rep.compared == "output"
    assert rep.numeric == pytest.approx(2 * x.data[bad], rel=1e-6)
    assert rep.analytic == pytest.approx(2 * x.data[bad] + PLANT, rel=1e-6)
    assert "derivatives of the output" in rep.message()


def test_non_scalar_output_says_it_compares_a_seeded_random_projection():
    x = leaf((4,), seed=5)
    Square = make_square((2,))
    rep = tb.gradcheck(Square.apply, [x], raise_exception=False, seed=7)
    assert rep.compared == "projection"
    msg = rep.message()
    assert "random projection" in msg and "seed 7" in msg and "per_output=True" in msg
    assert "random projection" in str(tb.gradcheck(lambda z: z * z, [x], seed=7))
    # the projection S = v . y with y_i = x_i^2 has dS/dx_2 = 2 v_2 x_2: recover v_2 from numeric
    v = np.random.default_rng(7).standard_normal(4)
    assert rep.numeric == pytest.approx(2 * v[2] * x.data[2], rel=1e-6)


def test_per_output_view_names_the_output_element():
    """y = (x0^2 + plant, x1^2, x0 * x1) with a planted error only in dy_0/dx_0."""
    class Planted(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return np.array([x[0] ** 2, x[1] ** 2, x[0] * x[1]])

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return np.array([g[0] * (2 * x[0] + PLANT) + g[2] * x[1], g[1] * 2 * x[1] + g[2] * x[0]])

    x = tb.tensor([0.7, -1.3], requires_grad=True)
    rep = tb.gradcheck(Planted.apply, [x], per_output=True, raise_exception=False, names=["x"])
    assert rep.compared == "per output" and rep.n_failed == 1
    w = rep["x"]
    assert w.n_compared == 6 and w.worst_output == (0, (0,)) and w.worst_index == (0,)
    assert w.numeric == pytest.approx(2 * 0.7, rel=1e-6)
    assert w.analytic == pytest.approx(2 * 0.7 + PLANT, rel=1e-9)
    assert "of output 0 at (0,)" in rep.message() and "each output element" in rep.message()
    good = tb.gradcheck(lambda x: (x * x, x.sum()), [x], per_output=True)
    assert good.ok and good["input 0"].n_compared == 3 * 2
    with pytest.raises(ValueError, match="per_output"):
        tb.gradcheck(lambda x: x * x, [x], per_output=True, fast=True)


def test_transposed_weight_gradient_is_caught():
    x = leaf((5, 3), seed=1)
    W = leaf((3, 3), seed=2)
    with pytest.raises(tb.GradcheckError) as info:
        tb.gradcheck(LinearTransposedGrad.apply, [x, W], names=["x", "W"])
    msg = str(info.value)
    assert "'W'" in msg
    rep = info.value.report
    assert rep["x"].ok  # dx is right
    assert not rep["W"].ok
    # a transpose is right on the diagonal and (generically) wrong off it
    assert 0 < rep["W"].n_failed <= 6
    assert rep.worst_index[0] != rep.worst_index[1]
    assert "%d of 9" % rep["W"].n_failed in msg


def test_unnamed_inputs_are_called_by_position():
    x = leaf((3,), seed=3)
    y = leaf((3,), seed=4)
    Square = make_square((1,))
    with pytest.raises(tb.GradcheckError, match=r"input 1.*\n.*\(1,\)"):
        tb.gradcheck(lambda a, b: a * 2 + Square.apply(b), [x, y])


def test_fast_mode_catches_and_localises_the_same_element():
    x = leaf((6, 2, 4), seed=5)
    bad = (4, 0, 3)
    Square = make_square(bad, extra=0.5)
    with pytest.raises(tb.GradcheckError) as full:
        tb.gradcheck(Square.apply, [x], names=["x[T,B,I]"])
    with pytest.raises(tb.GradcheckError) as fast:
        tb.gradcheck(Square.apply, [x], names=["x[T,B,I]"], fast=True)
    assert fast.value.report.worst_index == full.value.report.worst_index == bad
    assert fast.value.report.inputs[0].mode == "fast+full"
    assert "(4, 0, 3)" in str(fast.value) and "t=4" in str(fast.value)


def test_fast_mode_is_cheap_when_gradients_are_right():
    calls = []

    def fn(x, W):
        calls.append(1)
        return (x @ W).tanh()

    x, W = leaf((10, 8), seed=6), leaf((8, 6), seed=7)
    rep = tb.gradcheck(fn, [x, W], fast=True)
    assert rep.ok and [r.mode for r in rep.inputs] == ["fast", "fast"]
    assert len(calls) == 1 + 2 * 2 * 2  # one backward pass, two projections x two sides per input
    calls.clear()
    tb.gradcheck(fn, [x, W])
    assert len(calls) == 1 + (1 + 2 * 80) + (1 + 2 * 48)  # full: per input S(x) and 2 per element


# --------------------------------------------------------------------------- passing checks


class Softsign(tb.Function):
    """y = x / (1 + |x|), dy/dx = 1 / (1 + |x|)^2 (the docstring example of tinybptt.testing)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x / (1 + np.abs(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (1 + np.abs(x)) ** 2


@given(x=tensors(shapes(max_dims=3), avoid=(0.0,)))
def test_correct_custom_function_passes(x):
    rep = assert_gradients_match(Softsign.apply, [x], names=["x"], allow_kinks=False)
    assert rep.ok and bool(rep)
    assert rep.inputs[0].max_abs_err < 1e-6
    assert "OK" in str(rep)


@given(shape=shapes(min_dims=1, max_dims=3, max_side=4), data=st.data())
def test_any_planted_element_is_found(shape, data):
    idx = tuple(data.draw(st.integers(0, s - 1)) for s in shape)
    x = tb.tensor(data.draw(float_arrays(shape)), requires_grad=True)
    rep = tb.gradcheck(make_square(idx, extra=1.0).apply, [x], raise_exception=False)
    assert not rep.ok and rep.n_failed == 1
    assert rep.worst_index == idx
    assert rep.abs_err == pytest.approx(1.0, rel=1e-5)


def test_multiple_outputs_and_an_output_without_grad():
    x, W = leaf((4, 3), seed=8), leaf((3, 2), seed=9)
    const = tb.tensor(np.ones(3))
    rep = tb.gradcheck(lambda x, W: ((x @ W).sigmoid(), x.sum(axis=0), const * 2), [x, W], names=["x", "W"])
    assert rep.ok and [r.name for r in rep.inputs] == ["x", "W"]


def test_only_inputs_with_requires_grad_are_checked():
    x = leaf((3,), seed=10)
    c = tb.tensor(np.arange(3.0))  # not checked, but passed to fn
    rep = tb.gradcheck(lambda x, c: x * c, [x, c])
    assert [r.position for r in rep.inputs] == [0]


def test_runs_fn_in_grad_mode_even_inside_no_grad():
    x = leaf((3,), seed=11)
    with tb.no_grad():
        rep = tb.gradcheck(lambda x: x.tanh(), [x])
        assert not tb.is_grad_enabled()
    assert rep.ok


def test_time_axis_argument_and_name_letters():
    x = leaf((3, 5), seed=12)  # (B, T) layout: time is axis 1
    Square = make_square((2, 4))
    with pytest.raises(tb.GradcheckError, match="t=4"):
        tb.gradcheck(Square.apply, [x], time_axis=[1])
    with pytest.raises(tb.GradcheckError, match="t=4"):
        tb.gradcheck(Square.apply, [x], names=["x[B,T]"])
    with pytest.raises(ValueError, match="3 axis letters"):
        tb.gradcheck(Square.apply, [x], names=["x[T,B,I]"])


def test_raise_exception_false_returns_a_readable_report():
    x = leaf((2, 3), seed=13)
    rep = tb.gradcheck(make_square((0, 2)).apply, [x], names=["h"], raise_exception=False)
    text = str(rep)
    assert not rep.ok and not bool(rep)
    assert "FAILED" in text and "1 of 6" in text and "h" in text and "(0, 2)" in text


# --------------------------------------------------------------------------- warnings, kinks, side effects


def test_float32_input_warns_and_uses_coarser_tolerances():
    x = leaf((3, 2), seed=14, dtype=np.float32)
    with pytest.warns(GradcheckWarning, match="'x'.*float32"):
        rep = tb.gradcheck(lambda x: (x * x).tanh(), [x], names=["x"])
    assert rep.ok and rep.inputs[0].eps == pytest.approx(1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float64: no warning
        tb.gradcheck(lambda x: x * x, [leaf((2,))])


def test_relu_at_exactly_zero_is_a_kink_not_a_failure():
    x = tb.tensor(np.array([-1.0, 0.0, 0.5, 2.0]), requires_grad=True)
    rep = tb.gradcheck(tb.relu, [x], names=["x"])
    assert rep.ok
    assert len(rep.kinks) == 1
    name, kink = rep.kinks[0]
    assert name == "x" and kink.index == (1,)
    assert kink.analytic == 0.0  # relu'(0) taken as 0
    assert kink.backward == pytest.approx(0.0, abs=1e-9)  # left slope 0
    assert kink.forward != pytest.approx(0.0, abs=1e-3)  # right slope r != 0
    assert "kink" in str(rep) and "not differentiable" in str(rep)
    with pytest.raises(tb.GradcheckError, match="kink"):
        assert_gradients_match(tb.relu, [x], allow_kinks=False)


def test_wrong_gradient_at_a_kink_is_still_a_failure():
    class BadRelu(tb.Function):
        @staticmethod
        def forward(ctx, x):
            return np.maximum(x, 0)

        @staticmethod
        def backward(ctx, g):
            return g * 0 + 7.0  # neither slope

    x = tb.tensor(np.array([0.0, 1.0]), requires_grad=True)
    with pytest.raises(tb.GradcheckError, match="2 of 2"):
        tb.gradcheck(BadRelu.apply, [x])


@pytest.mark.parametrize("fails", [False, True])
def test_inputs_data_and_grads_are_untouched(fails):
    x = leaf((3, 4), seed=15)
    W = leaf((4, 4), seed=16)
    other = leaf((4,), seed=17)  # a parameter used by fn but not passed to gradcheck
    data_x, data_W = x.data, W.data
    copy_x, copy_W = x.data.copy(), W.data.copy()
    old_grad = np.full((3, 4), 0.25)
    x.grad = old_grad
    other.grad = np.full(4, -1.0)
    fn = (lambda x, W: LinearTransposedGrad.apply(x, W) + other) if fails else (lambda x, W: x @ W + other)
    tb.gradcheck(fn, [x, W], raise_exception=False)
    assert x.data is data_x and W.data is data_W
    assert np.array_equal(x.data, copy_x) and np.array_equal(W.data, copy_W)
    assert x.grad is old_grad and np.array_equal(old_grad, np.full((3, 4), 0.25))
    assert W.grad is None
    assert np.array_equal(other.grad, np.full(4, -1.0))


def test_restores_data_even_when_fn_raises():
    x = leaf((4,), seed=18)
    before = x.data
    n = []

    def fn(x):
        n.append(1)
        if len(n) > 3:
            raise RuntimeError("boom")
        return x * x

    with pytest.raises(RuntimeError, match="boom"):
        tb.gradcheck(fn, [x])
    assert x.data is before and x.grad is None


def test_bad_arguments():
    x = tb.tensor(np.ones(3))
    with pytest.raises(ValueError, match="requires_grad"):
        tb.gradcheck(lambda x: x * 2, [x])
    y = leaf((3,)) * 2  # not a leaf
    with pytest.raises(ValueError, match="not a leaf"):
        tb.gradcheck(lambda y: y * 2, [y])
    with pytest.raises(TypeError, match="Tensor"):
        tb.gradcheck(lambda y: y * 2, [np.ones(3)])
    with pytest.raises(TypeError, match="must return a Tensor"):
        tb.gradcheck(lambda x: x.data, [leaf((2,))])


# --------------------------------------------------------------------------- tinybptt.testing strategies


@given(shape=shapes(min_dims=1, max_dims=3, min_side=2, max_side=3))
def test_shapes_respect_bounds(shape):
    assert 1 <= len(shape) <= 3 and all(2 <= s <= 3 for s in shape)


@given(pair=broadcastable_shapes(shapes(max_dims=3)))
def test_broadcastable_shapes_broadcast(pair):
    shape, other = pair
    out = np.broadcast_shapes(shape, other)
    assert out[len(out) - len(shape):] == shape  # other never stretches shape's own axes


@given(a=float_arrays(shapes(), dtype=np.float32, avoid=(0.0, 1.0), margin=0.1))
def test_float_arrays_keep_away_from_kinks(a):
    assert a.dtype == np.float32
    assert np.all(np.isfinite(a))
    assert np.all(np.abs(a) >= np.float32(0.1)) and np.all(np.abs(a - 1) >= np.float32(0.1) - 1e-7)
    assert np.all(np.abs(a) <= 2.1)


@given(t=tensors((2, 3), min_value=0.5, max_value=1.5, requires_grad=False))
def test_tensors_strategy(t):
    assert isinstance(t, tb.Tensor) and t.shape == (2, 3) and not t.requires_grad
    assert t.dtype == np.float64 and np.all((t.data >= 0.5) & (t.data <= 1.5))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_named_not_reported_as_a_gradient_failure(bad):
    x = np.arange(6.0).reshape(2, 3)
    x[1, 2] = bad
    w = tb.tensor(np.ones((3, 2)), requires_grad=True)
    with pytest.raises(ValueError) as info:
        tb.gradcheck(lambda x, w: x @ w, [tb.tensor(x, requires_grad=True), w], names=["x", "w"])
    msg = str(info.value)
    assert "input 'x'" in msg and "(2, 3)" in msg and "1 non-finite" in msg and "(1, 2)" in msg
    assert w.grad is None  # nothing was run

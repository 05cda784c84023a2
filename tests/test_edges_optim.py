"""Optimisers and gradient clipping given unusual gradients: every ``.grad`` is read through one
check (``optim.grad_array``), an error changes nothing, and the next valid call is right."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinybptt as tb
from tinybptt import optim
from tinybptt.errors import DTypeError, ShapeError
from tinybptt.nn.utils import clip_grad_norm_, clip_grad_value_

EDGES = settings(derandomize=True, database=None, deadline=None, max_examples=30)
OPTIMISERS = {
    "SGD": lambda ps: optim.SGD(ps, lr=0.1),
    "SGD-momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    "Adam": lambda ps: optim.Adam(ps, lr=0.1),
}


def _params(*specs):
    rng = np.random.default_rng(0)
    return [tb.tensor(rng.standard_normal(shape).astype(dt), requires_grad=True) for shape, dt in specs]


def _first_step(name, p0, g):
    """Parameter ``p0`` after one step with gradient ``g``, written out (each rule's first step)."""
    if name == "Adam":  # m = 0.1 g, v = 0.001 g^2, bias-corrected: lr * g / (|g| + eps)
        return p0 - 0.1 * g / (np.abs(g) + 1e-8)
    return p0 - 0.1 * g  # SGD; with momentum the first buffer is g itself


BAD_GRADS = [("complex128", lambda s: np.ones(s) * (1 + 2j)), ("object", lambda s: np.ones(s, dtype=object)),
             ("<U1", lambda s: np.full(s, "a"))]


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
@pytest.mark.parametrize("dtype,make", BAD_GRADS, ids=[b[0] for b in BAD_GRADS])
def test_non_real_grad_is_refused_and_changes_nothing(name, dtype, make):
    """Before: plain SGD used the real part of a complex gradient silently; with momentum, and in
    Adam, NumPy's casting TypeError came from deep inside the flat-buffer copy."""
    ps = _params(((2, 3), np.float64), ((3,), np.float64))
    opt = OPTIMISERS[name](ps)
    before = [p.data.copy() for p in ps]
    ps[0].grad, ps[1].grad = np.ones((2, 3)), make((3,))
    with pytest.raises(DTypeError) as err:
        opt.step()
    msg = str(err.value)
    assert msg.startswith("%s.step: parameter 1 ((3,) float64)" % opt.__class__.__name__) and dtype in msg
    assert all(np.array_equal(b, p.data) for b, p in zip(before, ps))
    ps[1].grad = np.full(3, 2.0)  # the next valid step is the first step, and right
    opt.step()
    np.testing.assert_allclose(ps[0].data, _first_step(name, before[0], np.ones((2, 3))), rtol=1e-12)
    np.testing.assert_allclose(ps[1].data, _first_step(name, before[1], np.full(3, 2.0)), rtol=1e-12)


@EDGES
@given(name=st.sampled_from(sorted(OPTIMISERS)), form=st.sampled_from(["list", "Tensor", "int", "bool"]),
       values=st.lists(st.integers(-3, 3), min_size=3, max_size=3))
def test_list_tensor_and_integer_grads_step_like_the_float_grad(name, form, values):
    """Before: a Tensor put in .grad was read element by element and failed with a getitem error."""
    g = np.array(values, dtype=np.float64)
    if form == "bool":
        g = (g > 0).astype(np.float64)
    given_grad = {"list": g.tolist(), "Tensor": tb.tensor(g), "int": g.astype(np.int32), "bool": g > 0}[form]
    (p,) = _params(((3,), np.float64))
    p0 = p.data.copy()
    p.grad = given_grad
    OPTIMISERS[name]([p]).step()
    np.testing.assert_allclose(p.data, _first_step(name, p0, g), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_a_bad_grad_in_one_dtype_group_leaves_the_other_group_unchanged(name):
    """Before: the float32 group was updated, then the float64 group's bad gradient raised."""
    ps = _params(((2,), np.float32), ((3,), np.float64))
    opt = OPTIMISERS[name](ps)
    before = [p.data.copy() for p in ps]
    ps[0].grad, ps[1].grad = np.ones(2, np.float32), np.ones(4)
    with pytest.raises(ShapeError, match=r"parameter 1 has shape \(3,\) but .grad has shape \(4,\)"):
        opt.step()
    assert all(np.array_equal(b, p.data) for b, p in zip(before, ps))
    ps[1].grad = np.ones(3)
    opt.step()  # one step, not two, for the float32 parameter
    np.testing.assert_allclose(ps[0].data, _first_step(name, before[0], np.ones(2)), rtol=1e-6)


@pytest.mark.parametrize("name", ["SGD-momentum", "Adam"])
def test_a_parameter_converted_after_the_first_step_is_refused(name):
    """Before: the float32 parameter came back from the next step as float64 (its float64 state
    was subtracted from it), silently turning a float32 model into a mixed one."""
    ps = _params(((2, 3), np.float64))
    opt = OPTIMISERS[name](ps)
    ps[0].grad = np.ones((2, 3))
    opt.step()
    ps[0].data = ps[0].data.astype(np.float32)
    ps[0].grad = np.ones((2, 3), np.float32)
    kept = ps[0].data.copy()
    with pytest.raises(DTypeError, match=r"step: parameter 0 \(\(2, 3\) float32\) was float64 when"):
        opt.step()
    assert ps[0].data.dtype == np.float32 and np.array_equal(ps[0].data, kept)
    fresh = OPTIMISERS[name](ps)  # what the message says to do
    fresh.step()
    assert ps[0].data.dtype == np.float32
    np.testing.assert_allclose(ps[0].data, _first_step(name, kept, np.ones((2, 3))), rtol=1e-6)


@EDGES
@given(values=st.lists(st.integers(-50, 50), min_size=1, max_size=6), max_norm=st.sampled_from([0.5, 1.0, 1e3]))
def test_clip_grad_norm_scales_integer_grads_as_floats(values, max_norm):
    """Before: an int64 gradient was multiplied by int64(coef), which is 0 for any coef < 1."""
    (p,) = _params(((len(values),), np.float64))
    p.grad = np.array(values, dtype=np.int64)
    total = clip_grad_norm_([p], max_norm)
    g = np.array(values, dtype=np.float64)
    norm = float(np.sqrt(np.sum(g * g)))
    assert total == pytest.approx(norm, rel=1e-12)
    coef = min(1.0, max_norm / (norm + 1e-6))
    np.testing.assert_allclose(p.grad, g * coef, rtol=1e-12)


def test_clip_functions_refuse_complex_grads_and_name_bad_arguments():
    (p,) = _params(((2,), np.float64))
    p.grad = np.array([3.0, 4.0j])
    with pytest.raises(DTypeError, match=r"^clip_grad_norm_: parameter 0 \(\(2,\) float64\).*complex128"):
        clip_grad_norm_([p], 1.0)
    with pytest.raises(DTypeError, match=r"^clip_grad_value_: parameter 0 \(\(2,\) float64\).*complex128"):
        clip_grad_value_([p], 1.0)
    p.grad = np.array([3.0, 4.0])
    with pytest.raises(TypeError, match="^clip_grad_norm_: max_norm and norm_type must be numbers, "
                                        "got 1.0 and .fro."):
        clip_grad_norm_([p], 1.0, norm_type="fro")
    with pytest.raises(TypeError, match="^clip_grad_value_: clip_value must be a number, got None"):
        clip_grad_value_([p], None)
    assert clip_grad_norm_([p], 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad, [0.6, 0.8], rtol=1e-6)

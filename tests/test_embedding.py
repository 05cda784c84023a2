"""The embedding lookup: ``F.embedding`` / ``nn.Embedding`` and the kernel behind its backward pass.

* the gradient against finite differences (float64, repeated ids, both backends);
* the kernel ``embedding_backward``: C and the NumPy reference give the same bits, in
  float32 and float64, and both equal a plain Python loop over the ids (the oracle);
  repeated ids are added in the order they appear;
* the gradient against PyTorch's ``F.embedding`` (skipped without torch);
* bad input: a clear tinybptt error naming the op and what is wrong, from both
  kernels and from ``F.embedding``, never a crash.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinybptt as tb
from tinybptt import nn
from tinybptt.errors import DTypeError, ShapeError
from tinybptt.nn import functional as F
from tinybptt.testing import assert_gradients_match
from kernel_cases import KC, KERNELS, KN, needs_c

DTYPES = [np.float32, np.float64]
UINT = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


def summed_rows(ids, grad, num_embeddings):
    """The oracle: a plain loop, ``out[ids[k]] += grad[k]`` for k in the C order of ``ids``, in grad's dtype."""
    flat = np.asarray(ids).reshape(-1)
    E = grad.shape[-1]
    rows = np.asarray(grad).reshape(flat.size, E)
    out = np.zeros((num_embeddings, E), dtype=grad.dtype)
    for k in range(flat.size):
        out[int(flat[k])] += rows[k]
    return out


def bits(a):
    """The array's bit patterns, so that equality means bit for bit (-0.0 is not 0.0)."""
    return a.view(UINT[a.dtype])


def wide_rows(rng, shape, dtype):
    """Gradient values over many magnitudes: their sums depend on the order they are added in."""
    return (rng.standard_normal(shape) * 10.0 ** rng.uniform(-4, 4, shape)).astype(dtype)


# --------------------------------------------------------------------------- the gradient


ID_CASES = {
    "(T, B) with repeats": np.array([[0, 3, 3], [1, 0, 3]]),
    "1-D, one id many times": np.array([2, 2, 2, 0, 2]),
    "0-D": np.array(4),
    "no ids": np.zeros((0, 3), np.int64),
}


@pytest.mark.parametrize("ids", list(ID_CASES.values()), ids=list(ID_CASES))
def test_functional_gradient_matches_finite_differences(backend, ids):
    rng = np.random.default_rng(0)
    w = tb.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    y = F.embedding(ids, w)
    assert y.op == "embedding" and y.shape == ids.shape + (3,)
    np.testing.assert_array_equal(y.data, w.data[ids])
    assert_gradients_match(lambda w: F.embedding(ids, w), [w], names=["weight"], allow_kinks=False)


@pytest.mark.parametrize("ids", list(ID_CASES.values()), ids=list(ID_CASES))
def test_layer_gradient_matches_finite_differences(backend, ids):
    emb = nn.Embedding(5, 2, generator=1)
    assert_gradients_match(lambda w: emb(ids), [emb.weight], names=["weight"], allow_kinks=False)


def test_repeated_ids_gather_every_gradient(backend):
    """d/dweight of sum(c * weight[ids]): row v gets the sum of the rows of c at the positions that read v."""
    ids = np.array([[1, 1], [3, 1]])
    c = np.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]])
    w = tb.tensor(np.zeros((4, 2)), requires_grad=True)
    (F.embedding(ids, w) * c).sum().backward()
    np.testing.assert_array_equal(w.grad, [[0, 0], [1 + 3 + 7, 2 + 4 + 8], [0, 0], [5, 6]])


def test_ids_as_a_tensor_a_list_or_whole_floats_and_a_weight_without_grad(backend):
    rng = np.random.default_rng(1)
    table = rng.standard_normal((6, 4))
    w = tb.tensor(table, requires_grad=True)
    for ids in (tb.tensor([[5.0, 0.0]]), [[5, 0]], np.array([[5.0, 0.0]]), np.array([[5, 0]], np.uint8)):
        y = F.embedding(ids, w)
        np.testing.assert_array_equal(y.data, table[[[5, 0]]])
    y = F.embedding(np.array([2, 2]), table)  # a plain array: no graph
    assert not y.requires_grad
    np.testing.assert_array_equal(y.data, table[[2, 2]])
    emb = nn.Embedding(6, 4, dtype=np.float32)
    y = emb(np.array([1, 1]))
    y.backward(np.ones((2, 4), np.float32))
    assert y.dtype == np.float32 and emb.weight.grad.dtype == np.float32
    np.testing.assert_array_equal(emb.weight.grad[1], [2, 2, 2, 2])


def test_editing_the_ids_after_the_forward_pass_does_not_move_the_gradient(backend):
    ids = np.array([0, 1])
    w = tb.tensor(np.zeros((3, 2)), requires_grad=True)
    y = F.embedding(ids, w)
    ids[:] = 2
    y.backward(np.ones((2, 2)))
    np.testing.assert_array_equal(w.grad, [[1, 1], [1, 1], [0, 0]])


# --------------------------------------------------------------------------- the kernel, C against NumPy


def negative_strides(a):
    """An array equal to ``a`` whose every axis runs backwards in memory (a 0-D array: a copy)."""
    if a.ndim == 0:
        return a.copy()
    rev = (slice(None, None, -1),) * a.ndim
    return np.ascontiguousarray(a[rev])[rev]


@st.composite
def kernel_case(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    V = draw(st.integers(1, 9))  # few rows: ids repeat
    E = draw(st.integers(0, 6))
    shape = draw(st.one_of(st.just((23, 64)), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))
    ids = draw(hnp.arrays(draw(st.sampled_from([np.int64, np.int32, np.uint8, np.uint64])), shape,
                          elements=st.integers(0, V - 1)))
    grad = wide_rows(np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1))), shape + (E,), dtype)
    layout = draw(st.sampled_from(["c", "fortran", "negative"]))
    if layout == "fortran":
        ids, grad = np.asfortranarray(ids), np.asfortranarray(grad)
    elif layout == "negative":
        ids, grad = negative_strides(ids), negative_strides(grad)
    return ids, grad, V


@needs_c
@given(case=kernel_case())
def test_c_kernel_gives_the_bits_of_the_numpy_reference(case):
    ids, grad, V = case
    ids0, grad0 = ids.copy(), grad.copy()
    expected = summed_rows(ids, grad, V)
    rc, rn = KC.embedding_backward(ids, grad, V), KN.embedding_backward(ids, grad, V)
    for r in (rc, rn):
        assert r.shape == (V, grad.shape[-1]) and r.dtype == grad.dtype and r.flags.c_contiguous
    np.testing.assert_array_equal(bits(rn), bits(expected))
    np.testing.assert_array_equal(bits(rc), bits(rn))
    np.testing.assert_array_equal(ids, ids0)  # inputs untouched
    np.testing.assert_array_equal(grad, grad0)


@needs_c
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(23, 64), (1472,), (64, 23)], ids=["(T, B)", "1-D", "(B, T)"])
def test_c_kernel_gives_the_bits_of_the_numpy_reference_at_the_training_size(dtype, shape):
    """The agreement task's batch: 1472 ids in [0, 83), about 18 per row, E = 32, with values whose
    sums depend on the order of addition (added backwards they differ: checked first)."""
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 83, shape)
    grad = wide_rows(rng, shape + (32,), dtype)
    expected = summed_rows(ids, grad, 83)
    reordered = summed_rows(ids.reshape(-1)[::-1], grad.reshape(-1, 32)[::-1], 83)
    assert np.any(bits(reordered) != bits(expected))  # (so the comparison below can tell orders apart)
    np.testing.assert_array_equal(bits(KN.embedding_backward(ids, grad, 83)), bits(expected))
    np.testing.assert_array_equal(bits(KC.embedding_backward(ids, grad, 83)), bits(expected))


BIG = [(np.float32, 1e8), (np.float64, 1e17)]  # 1 + BIG rounds to BIG


@pytest.mark.parametrize("K", KERNELS)
@pytest.mark.parametrize("dtype, big", BIG)
def test_repeated_ids_are_added_in_the_order_they_appear(K, dtype, big):
    """Rows 0 and 1 are read in turn, three times each.  Row 0 gets 1, big, -big: (1 + big) - big = 0,
    the 1 lost to rounding; row 1 gets -big, big, 1: (-big + big) + 1 = 1.  Added backwards, the
    two rows would swap their values."""
    ids = np.array([[0, 1], [0, 1], [0, 1]])
    g = np.array([[1, -big], [big, big], [-big, 1]], dtype)[..., None]  # (3, 2, E = 1)
    np.testing.assert_array_equal(K.embedding_backward(ids, g, 2), np.array([[0], [1]], dtype))


@pytest.mark.parametrize("K", KERNELS)
@pytest.mark.parametrize("dtype, big", BIG)
def test_the_order_is_that_of_the_ids_not_of_their_memory(K, dtype, big):
    """One id four times, ids and grad Fortran-ordered: in the C order of the ids the values come as
    big, -big, 1, 0 (sum 1); in memory as big, 1, -big, 0 (sum 0)."""
    ids = np.asfortranarray(np.zeros((2, 2), np.int64))
    g = np.asfortranarray(np.array([[big, -big], [1, 0]], dtype)[..., None])
    np.testing.assert_array_equal(K.embedding_backward(ids, g, 1), np.array([[1]], dtype))


@pytest.mark.parametrize("K", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_edge_sizes(K, dtype):
    """No ids gives zeros; E = 1; one row; a row never read stays zero."""
    z = K.embedding_backward(np.zeros((0,), np.int64), np.zeros((0, 4), dtype), 3)
    assert z.shape == (3, 4) and z.dtype == dtype and not np.any(z)
    z = K.embedding_backward(np.zeros((2, 0), np.int64), np.zeros((2, 0, 1), dtype), 2)
    assert z.shape == (2, 1) and not np.any(z)
    r = K.embedding_backward(np.array([0, 0, 0]), np.array([[1], [2], [4]], dtype), 1)
    np.testing.assert_array_equal(r, np.array([[7]], dtype))
    r = K.embedding_backward(np.array(1), np.array([3, 5], dtype), 3)  # one 0-D id, grad (E,)
    np.testing.assert_array_equal(r, np.array([[0, 0], [3, 5], [0, 0]], dtype))
    r = K.embedding_backward(np.array([1, 1]), np.ones((2, 0), dtype), 3)  # E = 0
    assert r.shape == (3, 0) and r.dtype == dtype


# --------------------------------------------------------------------------- against PyTorch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(23, 64), (9,), ()], ids=["(T, B)", "1-D", "0-D"])
def test_gradient_matches_torch(backend, dtype, shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    V, E = 83, 32
    ids = rng.integers(0, V, shape)
    table = rng.standard_normal((V, E)).astype(dtype)
    g = rng.standard_normal(shape + (E,)).astype(dtype)
    tw = torch.tensor(table, requires_grad=True)
    t_out = torch.nn.functional.embedding(torch.from_numpy(np.asarray(ids)), tw)
    t_out.backward(torch.from_numpy(g))
    w = tb.tensor(table, requires_grad=True)
    y = F.embedding(ids, w)
    y.backward(g)
    np.testing.assert_array_equal(y.data, t_out.detach().numpy())  # a gather: exact
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w.grad, tw.grad.numpy(), **tol)  # (PyTorch may add repeats in another order)


# --------------------------------------------------------------------------- bad input


def raises(exc, fragments, call):
    """``call()`` raises ``exc`` (with no NumPy warning on the way) whose message holds every fragment."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(exc) as info:
            call()
    msg = str(info.value)
    missing = [f for f in fragments if f not in msg]
    assert not missing, "message %r lacks %s" % (msg, missing)


IDS23 = np.zeros((2, 3), np.int64)
G23 = np.ones((2, 3, 4))

KERNEL_BAD = [
    ("ids-float", lambda: (np.array([[0.0, 1.0]]), np.ones((1, 2, 4)), 5), DTypeError, ["ids", "float64"]),
    ("ids-bool", lambda: (np.array([True]), np.ones((1, 4)), 5), DTypeError, ["ids", "bool"]),
    ("ids-list", lambda: ([0, 1], np.ones((2, 4)), 5), DTypeError, ["ids", "list"]),
    ("ids-too-big", lambda: (np.array([[0, 5]]), np.ones((1, 2, 4)), 5), ShapeError,
     ["[0, 5)", "from 0 to 5", "(1, 2) int64"]),
    ("ids-negative", lambda: (np.array([3, -1], np.int32), np.ones((2, 4)), 5), ShapeError,
     ["[0, 5)", "from -1 to 3", "(2,) int32"]),
    ("ids-beyond-int64", lambda: (np.array([2 ** 63], np.uint64), np.ones((1, 4)), 5), ShapeError,
     ["[0, 5)", "9223372036854775808"]),
    ("grad-shape", lambda: (IDS23, np.ones((2, 4)), 5), ShapeError, ["grad", "(2, 3) + (E,)", "(2, 4) float64"]),
    ("grad-transposed", lambda: (IDS23, np.ones((3, 2, 4)), 5), ShapeError, ["grad", "(3, 2, 4) float64"]),
    ("grad-int", lambda: (IDS23, np.ones((2, 3, 4), np.int64), 5), DTypeError, ["int64", "float32 or float64"]),
    ("grad-float16", lambda: (IDS23, np.ones((2, 3, 4), np.float16), 5), DTypeError, ["float16"]),
    ("grad-list", lambda: (np.array([0]), [[1.0]], 5), DTypeError, ["list"]),
    ("V-zero", lambda: (IDS23, G23, 0), ShapeError, ["num_embeddings", ">= 1", "got 0"]),
    ("V-float", lambda: (IDS23, G23, 5.0), ShapeError, ["num_embeddings", "5.0"]),
    ("V-bool", lambda: (IDS23, G23, True), ShapeError, ["num_embeddings", "True"]),
    ("V-none", lambda: (IDS23, G23, None), ShapeError, ["num_embeddings", "None"]),
]


@pytest.mark.parametrize("K", KERNELS)
@pytest.mark.parametrize("args, exc, fragments", [pytest.param(*c[1:], id=c[0]) for c in KERNEL_BAD])
def test_kernel_bad_input_is_a_clear_error(K, args, exc, fragments):
    raises(exc, ["embedding_backward: "] + fragments, lambda: K.embedding_backward(*args()))


W43 = np.ones((4, 3))

FUNCTIONAL_BAD = [
    ("ids-fraction", lambda: F.embedding(np.array([0.5]), W43), DTypeError, ["ids must be integers", "float64"]),
    ("ids-inf", lambda: F.embedding(np.array([np.inf]), W43), DTypeError, ["ids must be integers", "non-finite"]),
    ("ids-str", lambda: F.embedding(np.array(["a"]), W43), DTypeError, ["ids must be integers", "<U1"]),
    ("ids-bool", lambda: F.embedding(np.array([True, False]), W43), DTypeError, ["ids must be integers", "bool"]),
    ("ids-too-big", lambda: F.embedding(np.array([[0, 4]]), W43), ShapeError, ["[0, 4)", "from 0 to 4", "(1, 2)"]),
    ("ids-negative", lambda: F.embedding([-2], W43), ShapeError, ["[0, 4)", "from -2 to -2"]),
    ("weight-1d", lambda: F.embedding([0], np.ones(4)), ShapeError, ["weight", "2-D", "(4,) float64"]),
    ("weight-3d", lambda: F.embedding([0], np.ones((2, 2, 2))), ShapeError, ["weight", "(2, 2, 2) float64"]),
    ("weight-no-rows", lambda: F.embedding(np.zeros(0, np.int64), np.ones((0, 3))), ShapeError,
     ["weight", "at least one row", "(0, 3)"]),
    ("weight-complex", lambda: F.embedding([0], np.ones((2, 2), complex)), DTypeError, ["weight", "complex"]),
]


@pytest.mark.parametrize("call, exc, fragments", [pytest.param(*c[1:], id=c[0]) for c in FUNCTIONAL_BAD])
def test_functional_bad_input_is_a_clear_error(backend, call, exc, fragments):
    raises(exc, ["embedding: "] + fragments, call)


def test_the_layer_names_itself_in_the_same_errors():
    emb = nn.Embedding(4, 3)
    raises(ShapeError, ["Embedding(4, 3): ids must lie in [0, 4)", "from 0 to 4"], lambda: emb(np.array([0, 4])))
    raises(DTypeError, ["Embedding(4, 3): ids must be integers", "float64"], lambda: emb(np.array([1.5])))

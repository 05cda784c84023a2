"""Every bad argument is a clear Python exception that names the function and the argument.

"Clear" means: one of tinybptt's errors (ShapeError, DTypeError, BackendError, ...), or a
``ValueError`` or ``TypeError``, but not a raw internal error (ZeroDivisionError, OverflowError from
cffi, NumPy's AxisError or IndexError, a bare ``'float' object is not iterable``), whose
message names the function (``set_num_threads``, ``sum``, ``split``, ...) and the bad
argument (its name or its value); and the call changes nothing (the thread count stays
what it was).  Calls that may crash the interpreter today run in a subprocess, which must
end with such a clear error (or accept the value and compute correctly), never with a
signal, an abort from the OpenMP runtime or a raw error.

Each entry of ``CASES`` is one bad input; the table is the count.
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn, optim
from tinybptt.errors import TinyBPTTError
from tinybptt.nn import functional as F


class Bad:
    """One bad call: ``call()`` must raise a clear error mentioning ``names`` (all) and one of ``args``."""

    def __init__(self, label, call, names, args):
        self.label, self.call = label, call
        self.names = (names,) if isinstance(names, str) else tuple(names)
        self.args = (args,) if isinstance(args, str) else tuple(args)

    def __repr__(self):
        return self.label


def x23(dtype=np.float64):
    return tb.tensor(np.arange(6, dtype=dtype).reshape(2, 3), requires_grad=True)


def x4():
    return tb.tensor(np.arange(4.0), requires_grad=True)


CASES = []


def bad(label, call, names, args):
    CASES.append(Bad(label, call, names, args))


# ---------------------------------------------------------------- thread counts
for n, shown in [(0, "0"), (-1, "-1"), (2 ** 40, str(2 ** 40)), (2 ** 31, str(2 ** 31)), (1.5, "1.5"), (True, "True"),
                 ("2", "'2'"), (None, "None"), (float("nan"), "nan"), (np.int64(-3), "-3"), (2.0, "2.0"), ([2], "[2]")]:
    bad("set_num_threads(%r)" % (n,), (lambda n=n: tb.set_num_threads(n)), "set_num_threads", (shown, "num_threads"))

# ---------------------------------------------------------------- axis arguments
for op in ("sum", "mean"):
    for axis, shown in [(1.0, "1.0"), (2, "2"), (-3, "-3"), ((0, 0), "(0, 0)"), ((1, -1), "(1, -1)"), ("0", "'0'"),
                        ((0, 1.0), "1.0"), ([0, 5], "5")]:
        bad("Tensor.%s(axis=%r)" % (op, axis), (lambda op=op, axis=axis: getattr(x23(), op)(axis=axis)), op,
            ("axis",))
for axis in (1.5, 2, -3, "1"):
    bad("concat(axis=%r)" % (axis,), (lambda axis=axis: tb.concat([x23(), x23()], axis=axis)), "concat", "axis")
for axis in (1.0, 3, -4, "0"):
    bad("stack(axis=%r)" % (axis,), (lambda axis=axis: tb.stack([x23(), x23()], axis=axis)), "stack", "axis")
for axis in (1.0, 2, -3):
    bad("split(axis=%r)" % (axis,), (lambda axis=axis: tb.split(x23(), 1, axis=axis)), "split", "axis")
for axis in (2, 1.0, "1"):
    bad("log_softmax(axis=%r)" % (axis,), (lambda axis=axis: F.log_softmax(x23(), axis=axis)), "log_softmax", "axis")
    bad("softmax(axis=%r)" % (axis,), (lambda axis=axis: F.softmax(x23(), axis=axis)), "softmax", "axis")
for perm in [(0, 0), (0, 1, 2), (0, 2), (0, 1.0)]:
    bad("Tensor.transpose(%r)" % (perm,), (lambda perm=perm: x23().transpose(perm)), "transpose", ("axes", str(perm)))

# ---------------------------------------------------------------- dtypes
for data, shown in [(np.array([1 + 2j]), "complex128"), (np.array([1j], np.complex64), "complex64"), (1 + 2j, "complex"),
                    (np.array(["a"]), "<U1"), (np.array([object()]), "object"),
                    (np.array(["2020-01-01"], dtype="datetime64[D]"), "datetime64")]:
    bad("tensor(%s data)" % shown, (lambda data=data: tb.tensor(data)), "tensor", shown)
for dtype in (np.float16, np.int32, np.int64, bool, np.complex128, np.uint8, "float80"):
    bad("tensor(dtype=%s)" % (dtype if isinstance(dtype, str) else np.dtype(dtype).name),
        (lambda dtype=dtype: tb.tensor([1.0, 2.0], dtype=dtype)), "tensor", ("dtype",))
for dtype in (np.int32, bool, np.complex64, np.float16):
    bad("Tensor.astype(%s)" % np.dtype(dtype).name, (lambda dtype=dtype: x23().astype(dtype)), "astype",
        np.dtype(dtype).name)
for op, fn in [("add", lambda a, b: a + b), ("mul", lambda a, b: a * b), ("sub", lambda a, b: b - a),
               ("div", lambda a, b: a / b), ("pow", lambda a, b: a ** b)]:
    for other, kind, shown in [(np.complex128(1 + 2j), "NumPy scalar", "complex128"),
                               (np.complex64(2j), "NumPy scalar", "complex64"),
                               (np.array([1j, 2, 3]), "array", "complex128"), (1 + 2j, "Python", "complex"),
                               (np.array(["a"] * 3), "array", "<U1")]:
        bad("Tensor %s %s %s" % (op, kind, shown), (lambda fn=fn, other=other: fn(x23(), other)), op, shown)
bad("matmul(float32, float64)", lambda: tb.matmul(x23(np.float32), tb.tensor(np.ones((3, 2)))), "matmul",
    ("float32",))
bad("linear(x float64, w float32)", lambda: tb.linear(x23(), tb.tensor(np.ones((3, 2), np.float32))), "linear",
    ("float32",))
for cls in (nn.Linear, nn.LSTM, nn.GRU, nn.RNN):
    for dtype in (np.float16, np.int32, np.complex128):
        bad("%s(dtype=%s)" % (cls.__name__, np.dtype(dtype).name),
            (lambda cls=cls, dtype=dtype: cls(3, 4, dtype=dtype)), cls.__name__, ("dtype",))
bad("LSTM(float32) on a float64 Tensor", lambda: nn.LSTM(3, 4, dtype=np.float32)(tb.tensor(np.ones((2, 1, 3)))),
    "LSTM", ("float64",))
bad("LSTM on complex data", lambda: nn.LSTM(3, 4)(np.ones((2, 1, 3), complex)), "LSTM", ("complex",))
bad("Linear on complex data", lambda: nn.Linear(3, 4)(np.ones((2, 3), complex)), "Linear", ("complex",))

# ---------------------------------------------------------------- split sections
for sections, shown in [(0, "0"), (-1, "-1"), (3, "3"), (1.5, "1.5"), ("2", "'2'"), (None, "None"), ([1.5], "1.5"),
                        (np.float64(2.0), "2.0")]:
    bad("split(x (4,), %r)" % (sections,), (lambda s=sections: tb.split(x4(), s)), "split", (shown, "sections"))

# ---------------------------------------------------------------- reshape
for shape, shown in [((5,), "5"), ((4, 2), "(4, 2)"), ((-1, -1), "-1, -1"), ((4, -1), "4, -1"), ((-2, 3), "-2"),
                     ((1.5, 4), "1.5"), (("2", 3), "'2'"), ((None,), "None")]:
    bad("Tensor.reshape%r" % (shape,), (lambda shape=shape: x23().reshape(shape)), "reshape", (shown, "shape"))

# ---------------------------------------------------------------- indexing, matmul shapes, backward
for idx, shown in [(1.5, "1.5"), (5, "5"), (-3, "-3"), ("a", "'a'"), ((0, 0, 0), "(0, 0, 0)"),
                   (np.array([1.5]), "float"), (np.array([True, False, True]), "True")]:
    bad("Tensor[%s]" % shown, (lambda idx=idx: x23()[idx]), "getitem", (shown, "index"))
bad("matmul (2, 3) @ (4, 2)", lambda: x23() @ tb.tensor(np.ones((4, 2))), "matmul", "(4, 2)")
bad("matmul () @ (3, 2)", lambda: tb.tensor(1.0) @ tb.tensor(np.ones((3, 2))), "matmul", "()")
# (2, 3) @ (2, 3, 2) is a valid product ((2, 2, 2): @ broadcasts batch dims as NumPy does); batch
# dims that do not broadcast, and a batched inner-size mismatch, are the bad ones
bad("matmul (2, 2, 3) @ (3, 3, 2)", lambda: tb.tensor(np.ones((2, 2, 3))) @ tb.tensor(np.ones((3, 3, 2))), "matmul",
    "(3, 3, 2)")
bad("matmul (2, 3) @ (2, 4, 2)", lambda: x23() @ tb.tensor(np.ones((2, 4, 2))), "matmul", "(2, 4, 2)")
bad("backward(grad of the wrong shape)", lambda: (x23() * 2).backward(np.ones(3)), "backward", "(3,)")
bad("backward() on a non-scalar", lambda: (x23() * 2).backward(), "backward", "(2, 3)")

# ---------------------------------------------------------------- losses, layers, optimisers, backends
bad("cross_entropy(target 1.5)", lambda: F.cross_entropy(x23(), np.array([0, 1.5])), "cross_entropy", "target")
bad("cross_entropy(target 3 of 3 classes)", lambda: F.cross_entropy(x23(), np.array([0, 3])), "cross_entropy",
    "target")
bad("cross_entropy(reduction='avg')", lambda: F.cross_entropy(x23(), np.array([0, 1]), reduction="avg"),
    "cross_entropy", "'avg'")
bad("mse_loss(shape mismatch)", lambda: F.mse_loss(x23(), np.ones(3)), "mse_loss", "(3,)")
for kw, shown in [(dict(input_size=0), "input_size"), (dict(hidden_size=-1), "hidden_size"),
                  (dict(hidden_size=2.5), "hidden_size"), (dict(num_layers=0), "num_layers"),
                  (dict(num_layers=1.5), "num_layers"), (dict(mode="fast"), "'fast'"), (dict(checkpoint=0), "checkpoint")]:
    args = dict(input_size=3, hidden_size=4)
    args.update(kw)
    bad("LSTM(%s)" % kw, (lambda args=args: nn.LSTM(**args)), "LSTM", shown)
bad("LSTM input of the wrong feature size", lambda: nn.LSTM(3, 4)(np.ones((2, 1, 5))), "LSTM", "(2, 1, 5)")
for kw, shown in [(dict(lr=-1.0), "lr"), (dict(lr="a"), "lr"), (dict(lr=float("nan")), "lr"),
                  (dict(betas=(1.0, 0.9)), "betas"), (dict(eps=-1e-8), "eps")]:
    bad("Adam(%s)" % kw, (lambda kw=kw: optim.Adam([x23()], **kw)), "Adam", shown)
bad("SGD(momentum=-0.5)", lambda: optim.SGD([x23()], lr=0.1, momentum=-0.5), "SGD", "momentum")
bad("SGD([])", lambda: optim.SGD([], lr=0.1), "SGD", "empty")
for gen, shown in [("a", "'a'"), (1.5, "1.5"), (True, "True"), (-1, "-1"), (np.random.RandomState(0), "RandomState")]:
    bad("LSTM(generator=%s)" % shown, (lambda gen=gen: nn.LSTM(3, 4, generator=gen)), "LSTM", ("generator",))
    bad("init.uniform_(generator=%s)" % shown, (lambda gen=gen: nn.init.uniform_(np.zeros(3), generator=gen)),
        "uniform_", ("generator",))
bad("Linear(generator=[1])", lambda: nn.Linear(3, 4, generator=[1]), "Linear", ("generator",))
bad("set_backend('cuda')", lambda: tb.set_backend("cuda"), "set_backend", "'cuda'")
bad("set_backend(None)", lambda: tb.set_backend(None), "set_backend", "None")


RAW = (ZeroDivisionError, OverflowError, IndexError, AttributeError, KeyError, np.exceptions.AxisError)


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_bad_input_is_a_clear_error(case):
    threads = tb.get_num_threads()
    backend = tb.get_backend()
    try:
        with pytest.raises(Exception) as info:
            case.call()
        changed = tb.get_num_threads()
    finally:  # a bad value that was accepted must not leak into the tests that follow
        tb.set_num_threads(threads)
        tb.set_backend(backend)
    err = info.value
    msg = str(err)
    assert isinstance(err, TinyBPTTError) or (isinstance(err, (ValueError, TypeError)) and not isinstance(err, RAW)), (
        "%s raised a raw %s: %s" % (case.label, type(err).__name__, msg))
    for name in case.names:
        assert name.lower() in msg.lower(), "%s: the message does not name %r: %s: %s" % (
            case.label, name, type(err).__name__, msg)
    assert any(a.lower() in msg.lower() for a in case.args), (
        "%s: the message names none of %s: %s: %s" % (case.label, case.args, type(err).__name__, msg))
    assert changed == threads, "%s changed the thread count from %d to %d" % (case.label, threads, changed)


# ---------------------------------------------------------------- crash-prone cases, in a subprocess

CRASHY = [
    ("set_num_threads(100000) then a 300x300 matmul", "tb.set_num_threads(100000)"),
    ("set_num_threads(2**40) then a 300x300 matmul", "tb.set_num_threads(2 ** 40)"),
    ("set_num_threads(10**9) then a 300x300 matmul", "tb.set_num_threads(10 ** 9)"),
    ("set_num_threads(-5) then a 300x300 matmul", "tb.set_num_threads(-5)"),
]


@pytest.mark.parametrize("label,setup", CRASHY, ids=[c[0] for c in CRASHY])
def test_crash_prone_thread_counts_end_cleanly(label, setup):
    """In a child process: the call either raises a clear Python error naming set_num_threads, or the
    thread count is accepted (clamped) and a matmul still gives the right answer.  Never a signal."""
    if "c" not in tb.available_backends():
        pytest.skip("needs the C backend")
    script = textwrap.dedent("""
        import numpy as np, tinybptt as tb
        tb.set_backend("c")
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((300, 300)), rng.standard_normal((300, 300))
        try:
            %s
        except (ValueError, TypeError) as exc:
            assert "set_num_threads" in str(exc), exc
            print("CLEAR-ERROR", type(exc).__name__, exc)
            raise SystemExit(0)
        y = (tb.tensor(a) @ tb.tensor(b)).data
        assert np.allclose(y, a @ b), "wrong product"
        print("ACCEPTED", tb.get_num_threads())
    """) % setup
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, "%s: exit code %d (negative: killed by signal %d)\nstdout: %s\nstderr: %s" % (
        label, proc.returncode, -proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])


# ---------------------------------------------------------------- the valid neighbours of the bad inputs


def test_numpy_integers_are_accepted_where_floats_are_refused():
    """Sections, indices, sizes and axes may be NumPy integers; only floats (even 2.0) are refused."""
    x = np.arange(12.0).reshape(3, 4)
    parts = tb.split(tb.tensor(x), np.int64(2), axis=np.int32(-1))
    assert [p.shape for p in parts] == [(3, 2), (3, 2)]
    parts = tb.split(tb.tensor(x), [np.int64(1), 3], axis=1)
    np.testing.assert_array_equal(parts[1].data, x[:, 1:3])
    parts = tb.split(tb.tensor(x), np.array([1, 3]), axis=1)
    np.testing.assert_array_equal(parts[2].data, x[:, 3:])
    assert tb.tensor(x).reshape(np.int64(2), -1).shape == (2, 6)
    y = tb.concat([tb.tensor(x), tb.tensor(x)], axis=np.int64(-1))
    np.testing.assert_array_equal(y.data, np.concatenate([x, x], axis=-1))
    z = tb.stack([tb.tensor(x), tb.tensor(x)], axis=np.int64(2))
    np.testing.assert_array_equal(z.data, np.stack([x, x], axis=2))
    np.testing.assert_array_equal(tb.tensor(x).transpose((np.int64(1), 0)).data, x.T)


def test_a_valid_batched_product_that_once_looked_bad():
    """(2, 3) @ (2, 3, 2) broadcasts the matrix over the batch, as NumPy and torch do."""
    a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(2, 3, 2)
    np.testing.assert_array_equal((tb.tensor(a) @ tb.tensor(b)).data, a @ b)

"""PyTorch as a second oracle: random programs, layers, losses and optimisers against torch.

Finite differences (``tinybptt.gradcheck``) are the first oracle for every gradient; this
file is the second.  Hypothesis builds one random program and runs it twice, step by step,
in tinybptt and in torch: elementwise ops with broadcasting, values used several times,
every indexing form (ints, slices with steps, negative indices, None, Ellipsis, integer
arrays and lists, boolean masks, negative steps), sums and means over axes, reshape,
transpose, concat/stack/split, matmul and linear, tanh/sigmoid/relu/exp/log on safe
domains, casts, 0-size and 1-size dimensions, leaves that are non-contiguous NumPy views,
float32 and float64, on both kernel backends.  Every intermediate value and every leaf's
gradient must match torch within a tolerance per dtype.  The layers (every mode), the
losses and the optimisers get the same treatment with torch's own modules in
test_torch_oracle_layers.py, which shares this file's helpers and knob.

A failure prints the program that disagreed, one line per step, ready to paste.

Example counts are bounded and the runs derandomized, so the default run is short and
reproducible.  For a long campaign with fresh random programs, set
``TINYBPTT_FUZZ_EXAMPLES=<n>`` (examples per test and backend), e.g.::

    TINYBPTT_FUZZ_EXAMPLES=5000 python -m pytest -q tests/test_torch_oracle.py tests/test_torch_oracle_layers.py

Not compared: a mean over no elements (tinybptt raises ShapeError on purpose; torch gives
NaN), and a binary op between a 0-D float64 and an n-D float32 operand (NumPy's promotion
gives float64, torch's float32; tinybptt has not chosen yet).
"""
import math
import operator
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import tinybptt as tb  # noqa: E402
from tinybptt import Tensor  # noqa: E402

torch.set_num_threads(1)  # the machines running the suite are shared

_CAMPAIGN = int(os.environ.get("TINYBPTT_FUZZ_EXAMPLES", "0") or 0)


_NO_SHRINK = tuple(p for p in Phase if p is not Phase.shrink)


def fuzz(default):
    """Hypothesis settings: ``default`` examples, derandomized, unless a campaign asks for more.

    The default run does not shrink a failing example (shrinking these programs can take
    minutes; the failure message already prints the whole program).  A campaign shrinks.
    """
    if _CAMPAIGN:
        return settings(max_examples=_CAMPAIGN, derandomize=False)
    return settings(max_examples=default, derandomize=True, phases=_NO_SHRINK)


TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
# (rtol, atol relative to the largest magnitude compared): float32 programs chain up to a
# dozen rounded ops, float64 ones agree to a few ulps of each step
TOL = {np.dtype(np.float32): (2e-4, 2e-5), np.dtype(np.float64): (1e-9, 1e-11)}


def to_np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def assert_match(got, want, what, dtype=None, log=None):
    """``got`` (tinybptt/NumPy) equals ``want`` (torch): shape, dtype, values (NaN == NaN)."""
    got, want = np.asarray(got), to_np(want)
    where = "%s\n%s" % (what, "\n".join(log) if log else "")
    assert got.shape == want.shape, "shape %s, torch %s: %s" % (got.shape, want.shape, where)
    assert got.dtype == want.dtype, "dtype %s, torch %s: %s" % (got.dtype, want.dtype, where)
    rtol, atol = TOL[np.dtype(dtype or want.dtype)]
    finite = np.abs(want[np.isfinite(want)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, equal_nan=True, err_msg=where)


# =========================================================================== random programs


class Value:
    """One value of the program, in both frameworks."""

    __slots__ = ("name", "ours", "theirs")

    def __init__(self, name, ours, theirs):
        self.name, self.ours, self.theirs = name, ours, theirs

    @property
    def np(self):
        return self.ours.data

    @property
    def shape(self):
        return self.ours.shape


LAYOUTS = ("C", "F", "strided", "reversed", "transposed")


def leaf_array(rng, shape, dtype, layout, kind="normal"):
    """Random values of ``shape`` laid out in memory as ``layout`` (a view for all but "C").

    ``kind``: "normal" N(0, 1); "away" from zero (|x| in [0.5, 1.5]); "positive" in [0.5, 1.5]."""
    if kind in ("away", "positive"):
        vals = rng.uniform(0.5, 1.5, shape) * (rng.choice((-1.0, 1.0), shape) if kind == "away" else 1.0)
    else:
        vals = rng.standard_normal(shape)
    vals = np.asarray(vals).astype(dtype)
    nd = len(shape)
    if layout == "F" or (layout == "transposed" and nd >= 2):
        return np.asfortranarray(vals) if layout == "F" else np.ascontiguousarray(np.swapaxes(vals, 0, -1)).swapaxes(0, -1)
    if layout == "strided" and nd >= 1:
        big = np.zeros(shape[:-1] + (2 * shape[-1] + 1,), dtype)
        big[..., 1::2] = vals
        return big[..., 1::2]
    if layout == "reversed" and nd >= 1:
        return np.ascontiguousarray(vals[::-1])[::-1]
    return vals


class Program:
    """A random program grown one op at a time; every step runs in tinybptt and torch."""

    def __init__(self, draw, dtype, seed):
        self.draw = draw
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.pool = []
        self.leaves = []
        self.least = self.dtype
        self.log = ["import numpy as np, tinybptt as tb  # dtype %s, backend %s" % (self.dtype.name, tb.get_backend())]

    # ------------------------------------------------------------------ values
    def leaf(self, shape, dtype=None, kind="normal"):
        dtype = np.dtype(dtype or self.dtype)
        layout = self.draw(st.sampled_from(LAYOUTS))
        arr = leaf_array(self.rng, tuple(shape), dtype, layout, kind)
        name = "x%d" % len(self.leaves)
        ours = tb.tensor(arr, requires_grad=True)
        theirs = torch.tensor(arr.copy(order="C"), requires_grad=True)
        self.log.append("%s = tb.tensor(np.array(%s, dtype=np.%s).reshape(%s), requires_grad=True)  # %s layout"
                        % (name, np.array2string(arr.ravel(), separator=",", threshold=10 ** 6, precision=17,
                                                 floatmode="unique").replace("\n", ""), dtype.name, tuple(shape), layout))
        v = Value(name, ours, theirs)
        if dtype == np.float32:
            self.least = dtype
        self.leaves.append(v)
        self.pool.append(v)
        return v

    def add(self, text, ours, theirs):
        name = "v%d" % len(self.pool)
        self.log.append("%s = %s" % (name, text))
        self.check(ours.data, theirs, "value of %s" % name)
        v = Value(name, ours, theirs)
        self.pool.append(v)
        return v

    def check(self, got, want, what):
        """Compare at the tolerance of the least precise dtype the program has used so far
        (a float32 value anywhere upstream rounds everything computed from it)."""
        if got.dtype == np.float32 or (isinstance(want, torch.Tensor) and want.dtype == torch.float32):
            self.least = np.dtype(np.float32)
        assert_match(got, want, what, self.least, log=self.log)

    def pick(self, pred=lambda v: True):
        cands = [v for v in self.pool if pred(v)]
        return self.draw(st.sampled_from(cands)) if cands else None

    def shape(self, min_dims=0, max_dims=4):
        nd = self.draw(st.integers(min_dims, max_dims))
        return tuple(self.draw(st.sampled_from((0, 1, 1, 2, 3, 4))) for _ in range(nd))

    def partner_shape(self, shape):
        """A shape that broadcasts with ``shape`` (leading dims dropped or added, some set to 1)."""
        keep = self.draw(st.integers(0, len(shape)))
        out = [1 if self.draw(st.booleans()) else n for n in shape[len(shape) - keep:]]
        if keep == len(shape) and self.draw(st.integers(0, 3)) == 0:  # a new leading axis
            out = [self.draw(st.sampled_from((1, 2)))] + out
        return tuple(out)

    # ------------------------------------------------------------------ the ops
    def op_unary(self):
        name = self.draw(st.sampled_from(("tanh", "sigmoid", "relu", "exp", "log", "neg")))
        if name == "exp":
            v = self.pick(lambda v: v.np.size == 0 or np.abs(v.np).max() < 10)
        elif name == "log":
            v = self.pick(lambda v: v.np.size == 0 or v.np.min() > 1e-2)
        else:
            v = self.pick()
        if v is None:
            return
        if name == "neg":
            return self.add("-%s" % v.name, -v.ours, -v.theirs)
        return self.add("tb.%s(%s)" % (name, v.name), getattr(tb, name)(v.ours), getattr(torch, name)(v.theirs))

    def op_binary(self):
        """``a <op> b`` where b is a value, a new leaf, a itself, a number or a NumPy array, on either side."""
        name = self.draw(st.sampled_from(tuple(BINARY)))
        left = self.draw(st.booleans())  # a on the left; else the other operand is
        need_a = "positive" if (name == "**" and left) else ("away" if (name == "/" and not left) else None)
        a = self.pick(lambda v: _in_domain(v.np, need_a) and (name != "**" or left or _in_domain(v.np, "small")))
        if a is None:
            return
        need_b = "positive" if (name == "**" and not left) else ("away" if (name == "/" and left) else "normal")
        how = self.draw(st.sampled_from(("pool", "leaf", "self", "number", "array")))
        if how == "self" and _in_domain(a.np, need_b):
            b = a.ours, a.theirs, a.name
        elif how == "number":
            n = self.draw(st.sampled_from(NUMBERS[need_b]))
            b = n, n, repr(n)
        elif how == "array":
            c = leaf_array(self.rng, self.partner_shape(a.shape), a.np.dtype, "C", need_b)
            b = c, torch.tensor(c), "np.array(%s)" % c.tolist()
        else:
            v = self.pick(lambda v: _broadcasts(v.shape, a.shape) and _in_domain(v.np, need_b)) if how == "pool" else None
            v = v or self.leaf(self.partner_shape(a.shape), kind=need_b)
            b = v.ours, v.theirs, v.name
        x, y = ((a.ours, a.theirs, a.name), b) if left else (b, (a.ours, a.theirs, a.name))
        if any(isinstance(o, Tensor) for o in (x[0], y[0])) and _mixes_0d_dtypes(x[0], y[0]):
            return  # 0-D float64 with n-D float32: NumPy's rule gives float64, torch's float32 (undecided)
        fn = BINARY[name]
        return self.add("%s %s %s" % (x[2], name, y[2]), fn(x[0], y[0]), fn(x[1], y[1]))

    def op_index(self):
        v = self.pick(lambda v: v.ours.ndim >= 1)
        if v is None:
            return
        ours_idx, theirs_idx, text = self.index(v.shape)
        parts = theirs_idx if isinstance(theirs_idx, tuple) else (theirs_idx,)
        if any(isinstance(p, _Flip) for p in parts):
            out_t = _flip_index(v.theirs, parts)
        else:
            out_t = v.theirs[theirs_idx]
        return self.add("%s[%s]" % (v.name, text), v.ours[ours_idx], out_t)

    def index(self, shape):
        """A random index for ``shape``: (tinybptt index, torch index, source text)."""
        nd = len(shape)
        form = self.draw(st.sampled_from(("basic", "basic", "array", "list", "mask", "negstep")))
        n_used = self.draw(st.integers(1 if form != "basic" else 0, nd))
        dims = list(range(nd))
        ellipsis_at = self.draw(st.integers(-1, n_used)) if n_used < nd or self.draw(st.booleans()) else -1
        used = dims[:ellipsis_at] + dims[nd - (n_used - ellipsis_at):] if ellipsis_at >= 0 else dims[:n_used]
        special = self.draw(st.sampled_from(used)) if form != "basic" and used else None
        ours, theirs, text = [], [], []
        for k, d in enumerate(used):
            if k == ellipsis_at:
                ours.append(Ellipsis), theirs.append(Ellipsis), text.append("...")
            if self.draw(st.integers(0, 4)) == 0:
                ours.append(None), theirs.append(None), text.append("None")
            n = shape[d]
            if d == special:
                o, t, s = self.advanced(form, n)
            elif form == "basic" and n > 0 and self.draw(st.booleans()):
                i = self.draw(st.integers(-n, n - 1))
                o, t, s = i, i, str(i)
            else:
                sl = slice(self.draw(st.one_of(st.none(), st.integers(-n - 1, n + 1))),
                           self.draw(st.one_of(st.none(), st.integers(-n - 1, n + 1))),
                           self.draw(st.sampled_from((None, 1, 2, 3))))
                o, t, s = sl, sl, _slice_text(sl)
            ours.append(o), theirs.append(t), text.append(s)
        if ellipsis_at == len(used):
            ours.append(Ellipsis), theirs.append(Ellipsis), text.append("...")
        if len(ours) == 1 and self.draw(st.booleans()):
            return ours[0], theirs[0], text[0]
        return tuple(ours), tuple(theirs), ", ".join(text) + ("," if len(text) == 1 else "")

    def advanced(self, form, n):
        if form == "mask":
            m = np.array([self.draw(st.booleans()) for _ in range(n)], dtype=bool)
            return m, torch.as_tensor(m), "np.array(%s)" % m.tolist()
        if form == "negstep":
            sl = slice(self.draw(st.one_of(st.none(), st.integers(-n - 1, n + 1))),
                       self.draw(st.one_of(st.none(), st.integers(-n - 1, n + 1))),
                       self.draw(st.sampled_from((-1, -2))))
            return sl, _Flip(np.arange(n)[sl]), _slice_text(sl)
        if n == 0:
            a = np.zeros((0,), np.int64)
        else:
            shape = self.draw(st.sampled_from(((0,), (1,), (3,), (2, 2))))
            a = np.array([self.draw(st.integers(-n, n - 1)) for _ in range(math.prod(shape))], np.int64).reshape(shape)
        if form == "list" and a.ndim == 1:
            return a.tolist(), torch.as_tensor(a), repr(a.tolist())
        return a, torch.as_tensor(a), "np.array(%s)" % a.tolist()

    def op_reduce(self):
        v = self.pick()
        if v is None:
            return
        name = self.draw(st.sampled_from(("sum", "mean")))
        nd = v.ours.ndim
        kind = self.draw(st.sampled_from(("none", "int", "tuple")))
        keep = self.draw(st.booleans())
        if kind == "none" or nd == 0:
            axis = None
        elif kind == "int":
            axis = self.draw(st.integers(-nd, nd - 1))
        else:
            axis = tuple(self.draw(st.permutations(range(nd)))[: self.draw(st.integers(1, nd))])
            axis = tuple(a - nd if self.draw(st.booleans()) else a for a in axis)
        count = v.np.size if axis is None else math.prod(v.shape[a] for a in np.atleast_1d(axis))
        if name == "mean" and count == 0:
            return  # a mean of nothing: tinybptt raises ShapeError on purpose (torch gives NaN)
        ours = getattr(v.ours, name)(axis=axis, keepdims=keep)
        if axis is None:
            theirs = getattr(v.theirs, name)()
            if keep:
                theirs = theirs.reshape((1,) * nd)
        else:
            theirs = getattr(v.theirs, name)(dim=axis, keepdim=keep)
        return self.add("%s.%s(axis=%r, keepdims=%r)" % (v.name, name, axis, keep), ours, theirs)

    def op_reshape(self):
        v = self.pick()
        if v is None:
            return
        shape = self.factor(v.np.size)
        if v.np.size and shape and self.draw(st.booleans()):
            shape[self.draw(st.integers(0, len(shape) - 1))] = -1
        shape = tuple(shape)
        return self.add("%s.reshape(%r)" % (v.name, shape), v.ours.reshape(shape), v.theirs.reshape(shape))

    def factor(self, size):
        if size == 0:
            dims = [self.draw(st.sampled_from((1, 2, 3))) for _ in range(self.draw(st.integers(0, 2)))]
            dims.insert(self.draw(st.integers(0, len(dims))), 0)
            return dims
        primes, n, p = [], size, 2
        while n > 1:
            while n % p == 0:
                primes.append(p)
                n //= p
            p += 1
        dims = []
        for f in self.draw(st.permutations(primes)):
            if dims and self.draw(st.booleans()):
                dims[-1] *= f
            else:
                dims.append(f)
        for _ in range(self.draw(st.integers(0, 2))):
            dims.insert(self.draw(st.integers(0, len(dims))), 1)
        return dims

    def op_transpose(self):
        v = self.pick(lambda v: v.ours.ndim >= 1)
        if v is None:
            return
        nd = v.ours.ndim
        if self.draw(st.booleans()):
            theirs = v.theirs.T if nd == 2 else v.theirs.permute(*reversed(range(nd)))
            return self.add("%s.T" % v.name, v.ours.T, theirs)
        perm = tuple(self.draw(st.permutations(range(nd))))
        return self.add("%s.transpose(%r)" % (v.name, perm), v.ours.transpose(perm), v.theirs.permute(*perm))

    def op_join(self):
        v = self.pick(lambda v: v.ours.ndim >= 1)
        if v is None:
            return
        nd = v.ours.ndim
        stack_it = self.draw(st.booleans())
        axis = self.draw(st.integers(-nd - 1, nd)) if stack_it else self.draw(st.integers(-nd, nd - 1))
        parts = [v]
        for _ in range(self.draw(st.integers(0, 2))):
            if self.draw(st.booleans()):
                parts.append(v)  # the same value twice: its gradient gathers from both places
            else:
                shape = list(v.shape)
                if not stack_it:
                    shape[axis] = self.draw(st.sampled_from((0, 1, 2)))
                parts.append(self.leaf(tuple(shape)))
        names = "[%s]" % ", ".join(p.name for p in parts)
        if stack_it:
            return self.add("tb.stack(%s, axis=%d)" % (names, axis), tb.stack([p.ours for p in parts], axis=axis),
                            torch.stack([p.theirs for p in parts], dim=axis))
        return self.add("tb.concat(%s, axis=%d)" % (names, axis), tb.concat([p.ours for p in parts], axis=axis),
                        torch.cat([p.theirs for p in parts], dim=axis))

    def op_split(self):
        v = self.pick(lambda v: v.ours.ndim >= 1)
        if v is None:
            return
        nd = v.ours.ndim
        axis = self.draw(st.integers(-nd, nd - 1))
        n = v.shape[axis]
        if self.draw(st.booleans()):
            divisors = [k for k in range(1, 5) if n % k == 0]
            sections = self.draw(st.sampled_from(divisors))
        else:
            sections = sorted(self.draw(st.lists(st.integers(0, n), max_size=3)))
        ours = tb.split(v.ours, sections, axis=axis)
        theirs = torch.tensor_split(v.theirs, sections, dim=axis)
        assert len(ours) == len(theirs), "split into %d parts, torch %d" % (len(ours), len(theirs))
        keep = self.draw(st.lists(st.booleans(), min_size=len(ours), max_size=len(ours)))
        out = None
        for k, (o, t) in enumerate(zip(ours, theirs)):
            if keep[k]:  # unused parts receive no gradient: backward must cope with the gap
                out = self.add("tb.split(%s, %r, axis=%d)[%d]" % (v.name, sections, axis, k), o, t)
        return out

    def op_matmul(self):
        a = self.pick(lambda v: v.ours.ndim >= 1)
        if a is None:
            return
        K = a.shape[-1]
        b = self.pick(lambda v: v.ours.ndim == 2 and v.shape[0] == K and v.np.dtype == a.np.dtype)
        if b is None or self.draw(st.booleans()):
            b = self.leaf((K, self.draw(st.sampled_from((0, 1, 2, 3)))), dtype=a.np.dtype)
        if self.draw(st.booleans()):
            return self.add("%s @ %s" % (a.name, b.name), a.ours @ b.ours, a.theirs @ b.theirs)
        bias = self.leaf((b.shape[1],), dtype=a.np.dtype) if self.draw(st.booleans()) else None
        if bias is None:
            return self.add("tb.linear(%s, %s)" % (a.name, b.name), tb.linear(a.ours, b.ours), a.theirs @ b.theirs)
        return self.add("tb.linear(%s, %s, %s)" % (a.name, b.name, bias.name), tb.linear(a.ours, b.ours, bias.ours),
                        a.theirs @ b.theirs + bias.theirs)

    def op_cast(self):
        v = self.pick()
        if v is None:
            return
        other = np.dtype(np.float32) if v.np.dtype == np.float64 else np.dtype(np.float64)
        return self.add("%s.astype(np.%s)" % (v.name, other.name), v.ours.astype(other), v.theirs.to(TORCH_DTYPE[other]))

    OPS = ("op_unary", "op_unary", "op_binary", "op_binary", "op_binary", "op_index", "op_index", "op_reduce",
           "op_reshape", "op_transpose", "op_join", "op_split", "op_matmul", "op_matmul", "op_cast")

    def run(self, steps):
        for _ in range(self.draw(st.integers(1, 2))):
            self.leaf(self.shape(0, 4))
        for _ in range(steps):
            getattr(self, self.draw(st.sampled_from(self.OPS)))()
        # the loss weighs every value with fixed random numbers, so every value (leaves too) gets a gradient
        loss_o, loss_t = None, None
        for v in self.pool:
            r = self.rng.standard_normal(v.shape).astype(v.np.dtype)
            lo, lt = (v.ours * r).sum(), (v.theirs * torch.tensor(r)).sum()
            loss_o, loss_t = (lo, lt) if loss_o is None else (loss_o + lo, loss_t + lt)
        self.log.append("loss = sum((v * r_v).sum() for every value v, fixed random r_v); loss.backward()")
        self.check(loss_o.data, loss_t, "loss")
        twice = self.draw(st.integers(0, 4)) == 0  # backward twice through a retained graph: gradients add up
        if twice:
            self.log.append("loss.backward(retain_graph=True); loss.backward()")
            loss_o.backward(retain_graph=True)
            loss_t.backward(retain_graph=True)
        loss_o.backward()
        loss_t.backward()
        for leaf in self.leaves:
            assert leaf.ours.grad is not None, "%s.grad is None\n%s" % (leaf.name, "\n".join(self.log))
            self.check(leaf.ours.grad, leaf.theirs.grad, "gradient of %s" % leaf.name)


class _Flip:
    """A negative-step slice, given to torch (which has none) as the index list it selects."""

    def __init__(self, idx):
        self.idx = torch.as_tensor(np.array(idx), dtype=torch.int64)


def _flip_index(t, idx):
    """``t[idx]`` where one part of ``idx`` is a _Flip: slice the rest, then index_select that axis."""
    nd, out_dim, plain = t.ndim, 0, []
    consumed = sum(1 for p in idx if p is not None and p is not Ellipsis)
    target = None
    for p in idx:
        if p is Ellipsis:
            out_dim += nd - consumed
            plain.append(p)
        elif isinstance(p, _Flip):
            target = (out_dim, p.idx)
            plain.append(slice(None))
            out_dim += 1
        else:
            plain.append(p)
            out_dim += 0 if isinstance(p, int) else 1
    out = t[tuple(plain)]
    return out.index_select(target[0], target[1])


def _slice_text(sl):
    return "%s:%s%s" % ("" if sl.start is None else sl.start, "" if sl.stop is None else sl.stop,
                        "" if sl.step is None else ":%d" % sl.step)


BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow}
# Python numbers for each domain: anything, divisors away from 0, bases > 0, exponents of modest size
NUMBERS = {"normal": (2.0, -0.5, 3.0, 0.0, 1.5), "away": (2.0, -0.5, 3.0, -1.5), "positive": (0.5, 1.5, 2.0, 3.0),
           "small": (2.0, -1.0, 0.5, 3.0)}


def _in_domain(x, kind):
    """``x`` (array) fits ``kind``: None/"normal" anything, "away" |x| > 0.2, "positive" in (0.2, 5), "small" |x| <= 3."""
    x = np.asarray(x)
    if kind in (None, "normal") or x.size == 0:
        return True
    if kind == "away":
        return np.abs(x).min() > 0.2
    if kind == "positive":
        return x.min() > 0.2 and x.max() < 5
    return np.abs(x).max() <= 3


def _mixes_0d_dtypes(a, b):
    a, b = (o.data if isinstance(o, Tensor) else o for o in (a, b))
    return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype != b.dtype and (a.ndim == 0) != (b.ndim == 0)


def _broadcasts(s, t):
    return all(x == y or x == 1 or y == 1 for x, y in zip(reversed(s), reversed(t)))


@fuzz(100)
@given(data=st.data(), dtype=st.sampled_from((np.float64, np.float32)), seed=st.integers(0, 2 ** 32 - 1),
       steps=st.integers(1, 8))
def test_random_programs_match_torch(backend, data, dtype, seed, steps):
    Program(data.draw, dtype, seed).run(steps)


# the shapes of the failures seen with matmul and linear when an axis is empty: (a shape, b shape)
EMPTY_PRODUCTS = [((2, 3, 4), (4, 0)), ((4,), (4, 0)), ((3, 4), (4, 0)), ((2, 3, 0), (0, 2)), ((0, 4), (4, 2)),
                  ((2, 0, 4), (4, 3)), ((0,), (0, 3)), ((4,), (4, 2)), ((2, 3, 4), (4, 1))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("op", ["matmul", "linear", "linear+bias"])
@pytest.mark.parametrize("a_shape,b_shape", EMPTY_PRODUCTS,
                         ids=["%s@%s" % ("x".join(map(str, a)) or "()", "x".join(map(str, b))) for a, b in EMPTY_PRODUCTS])
def test_matmul_and_linear_with_empty_and_one_sized_axes_match_torch(backend, op, a_shape, b_shape, dtype):
    """``(a @ w).sum().backward()`` with a 0-sized axis: zero gradients of the right shapes, as torch gives."""
    rng = np.random.default_rng(0)
    a, w, bias = (rng.standard_normal(s).astype(dtype) for s in (a_shape, b_shape, b_shape[1:]))
    ga, gw, gb = (tb.tensor(v, requires_grad=True) for v in (a, w, bias))
    ta, tw, tbias = (torch.tensor(v, requires_grad=True) for v in (a, w, bias))
    if op == "matmul":
        y, ty = ga @ gw, ta @ tw
    elif op == "linear":
        y, ty = tb.linear(ga, gw), ta @ tw
    else:
        y, ty = tb.linear(ga, gw, gb), ta @ tw + tbias
    what = "%s(a %s, w %s) %s" % (op, a_shape, b_shape, np.dtype(dtype).name)
    assert_match(y.data, ty, what + ": value")
    r = rng.standard_normal(y.shape).astype(dtype)
    (y * r).sum().backward()
    (ty * torch.tensor(r)).sum().backward()
    assert_match(ga.grad, ta.grad, what + ": d/da")
    assert_match(gw.grad, tw.grad, what + ": d/dw")
    if op == "linear+bias":
        assert_match(gb.grad, tbias.grad, what + ": d/dbias")

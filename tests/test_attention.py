"""MultiheadAttention, positional encodings and the attention classifier.

MultiheadAttention is compared with ``torch.nn.MultiheadAttention`` given the
same weights (loaded from torch's state_dict): outputs, attention weights and
the gradients of the inputs and of every parameter, in float64, for causal and
unmasked attention, one and several heads, batch_first and not, the
need_weights / average_attn_weights variants, padding masks, float masks and
unbatched inputs.  Gradients are also checked against finite differences on
both kernel backends, and the C backend against the NumPy reference.
"""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt import kernels, optim
from tinybptt.errors import DTypeError, ShapeError
from tinybptt.nn import functional as F
from tinybptt.nn import manual_seed
from tinybptt.nn.attention import (AttentionClassifier, LearnedPositionalEncoding, MultiheadAttention,
                                   SinusoidalPositionalEncoding, causal_mask, sinusoidal_table)
from tinybptt.tasks import remember_first
from tinybptt.testing import assert_gradients_match

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

PARAMS = ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]


def inputs(rng, E, L, S, N, batch_first=False, unbatched=False, self_attention=False):
    if unbatched:
        shq, shk = (L, E), (S, E)
    elif batch_first:
        shq, shk = (N, L, E), (N, S, E)
    else:
        shq, shk = (L, N, E), (S, N, E)
    q = rng.standard_normal(shq)
    if self_attention:
        return q, q, q
    return q, rng.standard_normal(shk), rng.standard_normal(shk)


def run_ours(attn, arrays, masks, g_out, g_w, **kw):
    """Forward and backward of <out, g_out> + <weights, g_w>; returns values and gradients."""
    attn.zero_grad()
    q, k, v = (tb.tensor(a, requires_grad=True) for a in arrays)
    out, w = attn(q, k, v, **masks, **kw)
    loss = (out * g_out).sum()
    if w is not None:
        loss = loss + (w * g_w).sum()
    loss.backward()
    grads = [q.grad, k.grad, v.grad] + [p.grad for _, p in attn.named_parameters()]
    return out.data, None if w is None else w.data, grads


def run_torch(attn, arrays, masks, g_out, g_w, **kw):
    attn.zero_grad()
    q, k, v = (torch.tensor(a, requires_grad=True) for a in arrays)
    masks = {name: torch.tensor(m) for name, m in masks.items()}
    out, w = attn(q, k, v, **masks, **kw)
    loss = (out * torch.tensor(g_out)).sum()
    if w is not None:
        loss = loss + (w * torch.tensor(g_w)).sum()
    loss.backward()
    params = dict(attn.named_parameters())
    grads = [q.grad, k.grad, v.grad] + [params[name].grad for name in PARAMS if name in params]
    return out.detach().numpy(), None if w is None else w.detach().numpy(), [g.numpy() for g in grads]


CASES = {
    "plain": dict(),
    "one-head": dict(H=1),
    "causal": dict(causal=True),
    "causal-one-head": dict(causal=True, H=1),
    "batch-first": dict(batch_first=True),
    "batch-first-causal-self": dict(batch_first=True, causal=True, self_attention=True),
    "no-weights": dict(kw=dict(need_weights=False)),
    "per-head-weights": dict(kw=dict(average_attn_weights=False)),
    "causal-per-head": dict(causal=True, kw=dict(average_attn_weights=False)),
    "no-bias": dict(bias=False),
    "cross-attention": dict(S=7),
    "padding-mask": dict(padding=True),
    "padding-and-causal": dict(padding=True, causal=True),
    "float-mask": dict(float_mask=True),
    "3d-mask": dict(mask_3d=True),
    "unbatched": dict(unbatched=True),
    "unbatched-causal-padding-per-head": dict(unbatched=True, causal=True, padding=True,
                                             kw=dict(average_attn_weights=False)),
}


def setup(case, rng):
    """(E, H, arrays, masks, torch-only masks, call kwargs, constructor kwargs) for one case."""
    c = dict(E=8, H=2, L=5, S=5, N=3)
    c.update(case)
    E, H, L, S, N = c["E"], c["H"], c["L"], c["S"], c["N"]
    arrays = inputs(rng, E, L, S, N, c.get("batch_first", False), c.get("unbatched", False),
                    c.get("self_attention", False))
    masks, kw = {}, dict(c.get("kw", {}))
    n = 1 if c.get("unbatched") else N
    if c.get("causal"):
        masks["attn_mask"] = causal_mask(L, S)  # torch needs the mask with its is_causal hint
        kw["is_causal"] = True
    if c.get("float_mask"):
        masks["attn_mask"] = rng.standard_normal((L, S))
    if c.get("mask_3d"):
        masks["attn_mask"] = rng.random((N * H, L, S)) < 0.3
        masks["attn_mask"][..., 0] = False  # every query keeps a key
    if c.get("padding"):
        pad = np.zeros((n, S), bool)
        pad[:, -1] = True
        pad[0, -2] = True
        masks["key_padding_mask"] = pad[0] if c.get("unbatched") else pad
    ctor = dict(bias=c.get("bias", True), batch_first=c.get("batch_first", False))
    return E, H, arrays, masks, kw, ctor


def pair(E, H, **ctor):
    """A torch layer (seeded) and ours with its weights."""
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(E, H, dtype=torch.float64, **ctor)
    ours = MultiheadAttention(E, H, **ctor)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


@needs_torch
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_outputs_weights_and_every_gradient(backend, name):
    rng = np.random.default_rng(0)
    E, H, arrays, masks, kw, ctor = setup(CASES[name], rng)
    ours, theirs = pair(E, H, **ctor)
    g_out, g_w = grads_for(rng, theirs, arrays, masks, kw)
    tout, tw, tgrads = run_torch(theirs, arrays, masks, g_out, g_w, **kw)
    out, w, grads = run_ours(ours, arrays, masks, g_out, g_w, **kw)
    assert out.shape == tout.shape
    np.testing.assert_allclose(out, tout, rtol=1e-10, atol=1e-12)
    if tw is None:
        assert w is None
    else:
        assert w.shape == tw.shape
        np.testing.assert_allclose(w, tw, rtol=1e-10, atol=1e-12)
    names = ["query", "key", "value"] + [n for n, _ in ours.named_parameters()]
    assert len(grads) == len(tgrads) == len(names)
    for n, g, tg in zip(names, grads, tgrads):
        assert g.shape == tg.shape, n
        np.testing.assert_allclose(g, tg, rtol=1e-9, atol=1e-12, err_msg=n)


def grads_for(rng, theirs, arrays, masks, kw):
    """Random weights for the output and the attention weights (shapes from a torch dry run)."""
    with torch.no_grad():
        out, w = theirs(*(torch.tensor(a) for a in arrays), **{k: torch.tensor(m) for k, m in masks.items()}, **kw)
    return rng.standard_normal(tuple(out.shape)), None if w is None else rng.standard_normal(tuple(w.shape))


@needs_torch
def test_state_dict_keys_and_shapes_are_torchs():
    ours, theirs = pair(12, 3)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for k, v in theirs.state_dict().items():
        assert ours.state_dict()[k].shape == tuple(v.shape)
    ours_nb, theirs_nb = pair(12, 3, bias=False)
    assert list(ours_nb.state_dict()) == list(theirs_nb.state_dict()) == ["in_proj_weight", "out_proj.weight"]


@needs_torch
def test_fully_masked_query_is_nan_like_torch():
    rng = np.random.default_rng(1)
    ours, theirs = pair(4, 2)
    q, k, v = inputs(rng, 4, 3, 3, 2)
    pad = np.zeros((2, 3), bool)
    pad[1] = True  # sequence 1 has no key left
    out, w = ours(q, k, v, key_padding_mask=pad)
    tout, tw = theirs(*(torch.tensor(a) for a in (q, k, v)), key_padding_mask=torch.tensor(pad))
    np.testing.assert_array_equal(np.isnan(out.data), np.isnan(tout.detach().numpy()))
    np.testing.assert_array_equal(np.isnan(w.data), np.isnan(tw.detach().numpy()))
    assert np.all(np.isnan(out.data[:, 1])) and not np.any(np.isnan(out.data[:, 0]))


@pytest.mark.parametrize("name", ["plain", "causal-one-head", "batch-first-causal-self", "padding-and-causal",
                                  "float-mask", "unbatched"])
def test_gradcheck_inputs_and_parameters(backend, name):
    rng = np.random.default_rng(2)
    case = dict(CASES[name], E=4, L=3, S=3, N=2)
    E, H, arrays, masks, kw, ctor = setup(case, rng)
    manual_seed(0)
    attn = MultiheadAttention(E, H, **ctor)
    for p in attn.parameters():  # nonzero biases, so their gradients are exercised
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    params = [p for _, p in attn.named_parameters()]
    xs = [tb.tensor(a, requires_grad=True) for a in arrays[:1 if case.get("self_attention") else 3]]

    def fn(*ts):
        q = ts[0]
        k, v = (q, q) if case.get("self_attention") else ts[1:3]
        out, w = attn(q, k, v, **masks, **kw)
        return out, w

    assert_gradients_match(fn, xs + params, names=["query", "key", "value"][:len(xs)] + [n for n, _ in
                                                                                          attn.named_parameters()])


def test_c_backend_matches_numpy_reference():
    if "c" not in kernels.available_backends():
        pytest.skip("the C backend is not built")
    rng = np.random.default_rng(3)
    E, H, arrays, masks, kw, ctor = setup(dict(CASES["causal"], N=4, L=6, S=6, E=12, H=3), rng)
    manual_seed(1)
    attn = MultiheadAttention(E, H, **ctor)
    g_out = rng.standard_normal(arrays[0].shape)
    g_w = rng.standard_normal((4, 6, 6))
    results = {}
    previous = tb.get_backend()
    try:
        for name in ("numpy", "c"):
            tb.set_backend(name)
            results[name] = run_ours(attn, arrays, masks, g_out, g_w, **kw)
    finally:
        tb.set_backend(previous)
    (on, wn, gn), (oc, wc, gc) = results["numpy"], results["c"]
    np.testing.assert_allclose(oc, on, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(wc, wn, rtol=1e-12, atol=1e-13)
    for a, b in zip(gc, gn):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_initialisation_like_torch():
    manual_seed(0)
    attn = MultiheadAttention(16, 4)
    E = 16
    bound = np.sqrt(6.0 / (E + 3 * E))  # Xavier-uniform for a (3E, E) weight
    assert attn.in_proj_weight.shape == (48, 16) and np.abs(attn.in_proj_weight.data).max() <= bound
    assert np.abs(attn.in_proj_weight.data).max() > 0.8 * bound
    assert np.all(attn.in_proj_bias.data == 0) and np.all(attn.out_proj.bias.data == 0)
    assert np.abs(attn.out_proj.weight.data).max() <= 1 / np.sqrt(E)
    assert attn.head_dim == 4


def test_float32_layer():
    attn = MultiheadAttention(8, 2, dtype=np.float32)
    x = np.random.default_rng(4).standard_normal((5, 3, 8)).astype(np.float32)
    out, w = attn(x, x, x, is_causal=True)
    assert out.dtype == np.float32 and w.dtype == np.float32 and out.shape == (5, 3, 8) and w.shape == (3, 5, 5)
    np.testing.assert_allclose(w.data.sum(-1), 1.0, rtol=1e-5)
    assert np.all(w.data[:, causal_mask(5)] == 0)


def test_is_causal_without_mask_applies_the_causal_mask():
    rng = np.random.default_rng(5)
    attn = MultiheadAttention(4, 2)
    q, k, v = inputs(rng, 4, 4, 4, 2)
    out_hint, w_hint = attn(q, k, v, is_causal=True)
    out_mask, w_mask = attn(q, k, v, attn_mask=causal_mask(4))
    np.testing.assert_array_equal(out_hint.data, out_mask.data)
    assert np.all(w_hint.data[:, causal_mask(4)] == 0) and np.all(w_hint.data[:, 0, 0] == 1)


def test_causal_output_does_not_depend_on_later_steps(backend):
    rng = np.random.default_rng(6)
    attn = MultiheadAttention(4, 2)
    x = tb.tensor(rng.standard_normal((5, 2, 4)), requires_grad=True)
    out, _ = attn(x, x, x, is_causal=True, need_weights=False)
    out[2].sum().backward()
    assert np.all(x.grad[3:] == 0) and np.all(np.abs(x.grad[:3]).sum(axis=(1, 2)) > 0)


def test_errors_name_the_layer_shapes_and_dtypes():
    with pytest.raises(ValueError, match="embed_dim \\(10\\) must be divisible by num_heads \\(4\\)"):
        MultiheadAttention(10, 4)
    with pytest.raises(ValueError, match="dropout is not supported"):
        MultiheadAttention(8, 2, 0.1)
    attn = MultiheadAttention(8, 2)
    x = np.ones((5, 3, 8))
    with pytest.raises(ShapeError, match=r"MultiheadAttention\(embed_dim=8, num_heads=2\): expected query "
                                         r"\(L, N, 8\).*\(5, 3, 6\) float64"):
        attn(np.ones((5, 3, 6)), x, x)
    with pytest.raises(ShapeError, match=r"key and value must have the same shape.*\(4, 3, 8\) float64"):
        attn(x, np.ones((4, 3, 8)), x)
    with pytest.raises(ShapeError, match=r"same batch size as query"):
        attn(x, np.ones((5, 2, 8)), np.ones((5, 2, 8)))
    with pytest.raises(ShapeError, match=r"attn_mask must have shape \(L, S\) = \(5, 5\) or "
                                         r"\(N \* num_heads, L, S\) = \(6, 5, 5\), got \(4, 4\) bool"):
        attn(x, x, x, attn_mask=causal_mask(4))
    with pytest.raises(ShapeError, match=r"key_padding_mask must have shape \(N, S\) = \(3, 5\), got \(5, 3\) bool"):
        attn(x, x, x, key_padding_mask=np.zeros((5, 3), bool))
    with pytest.raises(DTypeError, match=r"attn_mask must be boolean .* or float .*, got \(5, 5\) int64"):
        attn(x, x, x, attn_mask=np.zeros((5, 5), np.int64))
    with pytest.raises(DTypeError, match=r"input is \(5, 3, 8\) float32 but the layer's parameters are float64"):
        attn(tb.tensor(x.astype(np.float32)), x, x)


# --------------------------------------------------------------------------- positions


def test_sinusoidal_table_by_the_formula():
    L, E = 7, 5
    table = sinusoidal_table(L, E)
    for p in range(L):
        for j in range(E):
            angle = p / 10000 ** ((j - j % 2) / E)
            assert table[p, j] == pytest.approx(np.sin(angle) if j % 2 == 0 else np.cos(angle), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("batch_first", [False, True])
def test_positional_encodings_add_one_vector_per_step(backend, batch_first):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 6, 4) if batch_first else (6, 2, 4))
    sin = SinusoidalPositionalEncoding(4, batch_first=batch_first)
    learned = LearnedPositionalEncoding(10, 4, batch_first=batch_first)
    for enc, table in [(sin, sinusoidal_table(6, 4)), (learned, learned.embedding.weight.data[:6])]:
        out = enc(x)
        np.testing.assert_allclose(out.data, x + (table[None] if batch_first else table[:, None]), rtol=1e-15)
    assert sin.parameters() == [] and [n for n, _ in learned.named_parameters()] == ["embedding.weight"]
    assert_gradients_match(lambda t, w: learned(t), [tb.tensor(x, requires_grad=True), learned.embedding.weight],
                           names=["x", "embedding.weight"])
    with pytest.raises(ShapeError, match=r"LearnedPositionalEncoding\(10, 4\): inputs must have at most 10 steps"):
        learned(np.ones((2, 11, 4) if batch_first else (11, 2, 4)))


# --------------------------------------------------------------------------- the classifier


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_attention_classifier_learns_remember_first(positional):
    """The first word after 19 distractors, read out at the last step: near-perfect in 80 Adam steps."""
    manual_seed(0)
    T = 20
    model = AttentionClassifier(24, 4, embed_dim=16, num_heads=2, positional=positional, max_len=T, causal=True)
    opt = optim.Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x, y = remember_first(T, 400, np.random.default_rng(1))
    with tb.no_grad():
        before = (model(x).data.argmax(1) == y).mean()
    for _ in range(80):
        xb, yb = remember_first(T, 32, rng)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with tb.no_grad():
        after = (model(x).data.argmax(1) == y).mean()
    assert before < 0.5 and after > 0.95, (before, after)


def test_classifier_takes_ids_or_one_hot_and_reads_out_where_asked(backend):
    manual_seed(1)
    model = AttentionClassifier(6, 3, embed_dim=8, num_heads=2, causal=True, batch_first=True)
    ids = np.random.default_rng(8).integers(0, 6, size=(2, 5))
    one_hot = np.eye(6)[ids]
    np.testing.assert_array_equal(model(ids).data, model(one_hot).data)
    assert model(ids).shape == (2, 3)
    np.testing.assert_array_equal(model.forward_embedded(model.embed(one_hot)).data, model(ids).data)
    x = tb.tensor(one_hot, requires_grad=True)
    model(x, readout=2).sum().backward()  # causal: position 2 sees steps 0..2 only
    assert np.all(x.grad[:, 3:] == 0) and np.all(np.abs(x.grad[:, :3]).sum(axis=2) > 0)
    with pytest.raises(ShapeError, match="word ids must lie in \\[0, 6\\)"):
        model(ids + 6)
    with pytest.raises(ShapeError, match="readout position 5 is outside a sequence of 5 steps"):
        model(ids, readout=5)
    with pytest.raises(ValueError, match="positional='learned' needs max_len"):
        AttentionClassifier(6, 3, positional="learned")

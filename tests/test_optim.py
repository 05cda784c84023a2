"""Adam and SGD against torch.optim on the same gradients, through both ways an update runs.

An optimiser updates all parameters of one dtype at once when every one has a
gradient (and, for Adam, the same step count), and one parameter at a time
otherwise; both must give torch's numbers.  The gradients are set by hand, the
same arrays for both libraries, so nothing but the optimiser is compared.
"""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt import nn, optim

torch = pytest.importorskip("torch")

SHAPES = [(7, 3), (7, 5), (7,), (1, 5), (1,)]


def _pair(shapes, dtypes, seed=0):
    rng = np.random.default_rng(seed)
    ours, theirs = [], []
    for shape, dt in zip(shapes, dtypes):
        w = rng.standard_normal(shape).astype(dt)
        ours.append(nn.Parameter(w.copy(), dtype=dt))
        theirs.append(torch.nn.Parameter(torch.from_numpy(w.copy())))
    return ours, theirs


def _run(ours, theirs, opt, topt, grads_per_step):
    """Apply the same gradients (None: no gradient this step) to both, step, compare every parameter."""
    for k, grads in enumerate(grads_per_step):
        for p, tp, g in zip(ours, theirs, grads):
            p.grad = None if g is None else g.copy()
            tp.grad = None if g is None else torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for j, (p, tp) in enumerate(zip(ours, theirs)):
            want = tp.detach().numpy()
            assert p.data.dtype == want.dtype
            tol = 1e-12 if want.dtype == np.float64 else 2e-6
            np.testing.assert_allclose(p.data, want, rtol=tol, atol=tol,
                                       err_msg="parameter %d after step %d" % (j, k))


def _grads(shapes, dtypes, steps, seed, missing=()):
    """Random gradients per step; ``missing`` lists the (step, parameter) pairs without one."""
    rng = np.random.default_rng(seed)
    return [[None if (k, j) in missing else (rng.standard_normal(s) * 10.0 ** rng.integers(-3, 2)).astype(dt)
             for j, (s, dt) in enumerate(zip(shapes, dtypes))] for k in range(steps)]


ADAM_CASES = [dict(lr=1e-2), dict(lr=0.1, betas=(0.5, 0.9), eps=1e-3), dict(lr=1e-2, weight_decay=0.1)]
SGD_CASES = [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.5, weight_decay=0.01),
             dict(lr=0.1, weight_decay=0.1)]
# (step, parameter) pairs without a gradient: none; one parameter skipped once (the steps then differ, so
# Adam updates one parameter at a time from then on); every parameter skipped at one step
MISSING = {"all present": (), "one skipped": ((1, 2), (2, 2)), "all skipped once": tuple((2, j) for j in range(5))}


@pytest.mark.parametrize("missing", list(MISSING), ids=list(MISSING))
@pytest.mark.parametrize("kw", ADAM_CASES, ids=["default", "betas-eps", "weight-decay"])
def test_adam_matches_torch_float64(kw, missing):
    dtypes = [np.float64] * len(SHAPES)
    ours, theirs = _pair(SHAPES, dtypes)
    _run(ours, theirs, optim.Adam(ours, **kw), torch.optim.Adam(theirs, **kw),
         _grads(SHAPES, dtypes, 6, 1, MISSING[missing]))


@pytest.mark.parametrize("missing", list(MISSING), ids=list(MISSING))
@pytest.mark.parametrize("kw", SGD_CASES, ids=["plain", "momentum", "momentum-decay", "decay"])
def test_sgd_matches_torch_float64(kw, missing):
    dtypes = [np.float64] * len(SHAPES)
    ours, theirs = _pair(SHAPES, dtypes)
    _run(ours, theirs, optim.SGD(ours, **kw), torch.optim.SGD(theirs, **kw),
         _grads(SHAPES, dtypes, 5, 2, MISSING[missing]))


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_mixed_dtypes_each_in_its_own_precision(name):
    """float32 and float64 parameters in one optimiser: each updated in its own dtype, as torch does."""
    dtypes = [np.float32, np.float64, np.float32, np.float64, np.float32]
    ours, theirs = _pair(SHAPES, dtypes, seed=3)
    kw = dict(lr=1e-2, weight_decay=0.01) if name == "Adam" else dict(lr=0.1, momentum=0.9)
    _run(ours, theirs, getattr(optim, name)(ours, **kw), getattr(torch.optim, name)(theirs, **kw),
         _grads(SHAPES, dtypes, 4, 4, ((1, 0),)))


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_a_step_gives_new_arrays_and_leaves_the_gradients_alone(name):
    """A graph recorded before the step keeps the weights it used; the gradients the user set are not
    written into."""
    ours, _ = _pair(SHAPES, [np.float64] * len(SHAPES))
    opt = getattr(optim, name)(ours, lr=0.1, weight_decay=0.1)
    before = [p.data for p in ours]
    copies = [p.data.copy() for p in ours]
    grads = _grads(SHAPES, [np.float64] * len(SHAPES), 1, 5)[0]
    kept = [g.copy() for g in grads]
    for p, g in zip(ours, grads):
        p.grad = g
    opt.step()
    for p, old, copy, g, g0 in zip(ours, before, copies, grads, kept):
        assert p.data is not old
        np.testing.assert_array_equal(old, copy)
        np.testing.assert_array_equal(g, g0)
        assert not np.array_equal(p.data, copy)


def test_adam_state_is_per_parameter_and_shaped_like_it():
    ours, _ = _pair(SHAPES, [np.float64] * len(SHAPES))
    opt = optim.Adam(ours, lr=0.1)
    for p, g in zip(ours, _grads(SHAPES, [np.float64] * len(SHAPES), 1, 6)[0]):
        p.grad = g
    opt.step()
    for p, g in zip(ours, _grads(SHAPES, [np.float64] * len(SHAPES), 1, 6)[0]):
        st = opt.state[id(p)]
        assert st["step"] == 1 and st["m"].shape == p.shape and st["v"].shape == p.shape
        np.testing.assert_allclose(st["m"], 0.1 * g, rtol=1e-15)  # (1 - b1) * g after one step from 0
        np.testing.assert_allclose(st["v"], 0.001 * g * g, rtol=1e-12)


def test_a_parameter_reshaped_after_the_first_step_is_an_error():
    p = nn.Parameter(np.ones((2, 3)))
    opt = optim.Adam([p], lr=0.1)
    p.grad = np.ones((2, 3))
    opt.step()
    p.data = np.ones((3, 2))
    p.grad = np.ones((3, 2))
    with pytest.raises(tb.ShapeError, match=r"Adam.step: parameter 0 has shape \(3, 2\).*\(2, 3\)"):
        opt.step()


def test_an_lstm_trains_the_same_in_both_libraries():
    """A recurrent model end to end: tinybptt's LSTM + Linear with Adam and clipping against torch's,
    float64, 5 steps: the losses and every parameter agree."""
    rng = np.random.default_rng(7)
    t_lstm, t_head = torch.nn.LSTM(3, 8, dtype=torch.float64), torch.nn.Linear(8, 1, dtype=torch.float64)
    lstm, head = nn.LSTM(3, 8), nn.Linear(8, 1)
    for mod, tmod in ((lstm, t_lstm), (head, t_head)):
        for name, tp in tmod.named_parameters():
            dict(mod.named_parameters())[name].data[...] = tp.detach().numpy()
    params = lstm.parameters() + head.parameters()
    tparams = list(t_lstm.parameters()) + list(t_head.parameters())
    opt, topt = optim.Adam(params, lr=0.05), torch.optim.Adam(tparams, lr=0.05)
    for _ in range(5):
        x, y = rng.standard_normal((6, 4, 3)), rng.standard_normal((4, 1))
        loss = tb.nn.functional.mse_loss(head(lstm(x)[0][-1]), y)
        tloss = torch.nn.functional.mse_loss(t_head(t_lstm(torch.from_numpy(x))[0][-1]), torch.from_numpy(y))
        opt.zero_grad()
        topt.zero_grad()
        loss.backward()
        tloss.backward()
        tb.nn.utils.clip_grad_norm_(params, 0.5)
        torch.nn.utils.clip_grad_norm_(tparams, 0.5)
        opt.step()
        topt.step()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-12)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12)

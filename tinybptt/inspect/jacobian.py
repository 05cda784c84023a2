"""Jacobian analysis of a recurrent layer: how dh_T/dh_t shrinks (or grows) with T - t.

For a recurrence s_t = f(s_{t-1}, x_t) the gradient of a loss on the last state
reaches step t through the product of per-step Jacobians

    ds_T/ds_t = J_T J_{T-1} ... J_{t+1},      J_k = ds_k/ds_{k-1}.

The state s is h for RNN and GRU and (h, c) for LSTM.  Everything here is built
analytically from the layer's weights and the states of a forward pass
recomputed in NumPy (an implementation independent of the engine's kernels, with
PyTorch's formulas and gate order):

    RNN   J = diag(act'(a_t)) W_hh
    LSTM  J = [[dh'/dh, dh'/dc], [dc'/dh, diag(f)]]  (2H x 2H)
    GRU   J = diag(1-z) dn/dh + diag(z) + diag(h-n) dz/dh

Products of many Jacobians underflow (or overflow) float64 long before their
logarithm stops being meaningful, so every product here is *renormalised*: after
each multiplication the running matrix (or vector) is divided by its norm and the
log of that norm is added to a running sum.  ``log10`` values therefore stay
finite and exact where the plain product is 0.0 or inf.

The classical bound (Bengio et al. 1994, Pascanu et al. 2013) for a vanilla RNN:
||J_k|| <= ||W_hh||_2 * max|act'| (tanh and ReLU 1, sigmoid 1/4), hence
||dh_T/dh_t|| <= (||W_hh||_2 * max|act'|)^(T-t).
"""
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import ShapeError
from .numerics import blas_threads

#: max |act'(a)| of each activation: the gamma of the classical bound
MAX_DERIVATIVE = {"tanh": 1.0, "relu": 1.0, "sigmoid": 0.25, "identity": 1.0}

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _sigmoid(a):
    out = np.empty_like(a)
    pos = a >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-a[pos]))
    e = np.exp(a[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _act(name, a):
    if name == "tanh":
        return np.tanh(a)
    if name == "relu":
        return np.maximum(a, 0.0)
    if name == "sigmoid":
        return _sigmoid(a)
    if name == "identity":
        return a
    raise ValueError("unknown nonlinearity %r" % name)


def _act_deriv(name, a, y):
    if name == "tanh":
        return 1.0 - y * y
    if name == "relu":
        return (a > 0).astype(a.dtype)
    if name == "sigmoid":
        return y * (1.0 - y)
    return np.ones_like(a)


@dataclass
class CellSpec:
    """The weights of one layer of a recurrent network, in PyTorch's layout."""

    kind: str  # "rnn", "lstm" or "gru"
    weight_ih: np.ndarray  # (G*H, I)
    weight_hh: np.ndarray  # (G*H, H)
    bias_ih: Optional[np.ndarray] = None  # (G*H,)
    bias_hh: Optional[np.ndarray] = None  # (G*H,)
    nonlinearity: str = "tanh"  # RNN only

    @property
    def hidden_size(self):
        return self.weight_hh.shape[1]

    @property
    def state_dim(self):
        return 2 * self.hidden_size if self.kind == "lstm" else self.hidden_size

    def check(self):
        G = GATES.get(self.kind)
        if G is None:
            raise ValueError("CellSpec: kind must be 'rnn', 'lstm' or 'gru', got %r" % self.kind)
        H = self.weight_hh.shape[1]
        if self.weight_hh.shape != (G * H, H) or self.weight_ih.shape[0] != G * H:
            raise ShapeError("CellSpec(%s): weight_hh %s and weight_ih %s do not fit G=%d gates of size H=%d"
                             % (self.kind, self.weight_hh.shape, self.weight_ih.shape, G, H))
        return self


def _np(a):
    if a is None:
        return None
    return np.asarray(getattr(a, "data", a))


def cell_from_layer(layer, index=0):
    """``CellSpec`` of layer ``index`` of a ``tinybptt.nn`` (or ``torch.nn``) RNN/LSTM/GRU.

    The kind is taken from the class name; the weights from ``weight_ih_l{index}`` etc.
    (or ``weight_ih`` for the single-step Cell classes).
    """
    name = type(layer).__name__.lower()
    kind = "lstm" if "lstm" in name else "gru" if "gru" in name else "rnn" if "rnn" in name else None
    if kind is None:
        raise ValueError("cell_from_layer: cannot tell the cell type of %s (expected an RNN, LSTM or GRU)"
                         % type(layer).__name__)
    params = dict(layer.named_parameters())
    sfx = "_l%d" % index if ("weight_ih_l%d" % index) in params else ""
    if ("weight_ih" + sfx) not in params:
        raise ValueError("cell_from_layer: %s has no parameter weight_ih_l%d" % (type(layer).__name__, index))

    def get(n):
        p = params.get(n + sfx)
        if p is None:
            return None
        a = _np(p)
        if hasattr(a, "detach"):  # torch
            a = a.detach().cpu().numpy()
        return np.asarray(a)

    return CellSpec(kind, get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"),
                    getattr(layer, "nonlinearity", "tanh") or "tanh").check()


# --------------------------------------------------------------------------- forward pass (reference)


@dataclass
class Trace:
    """States of a forward pass: ``h`` (T+1, B, H) with h[0] the initial state, ``c`` for LSTM,
    and per-step gate values ``gates`` (T, B, G*H) after their nonlinearities (for RNN: the
    pre-activation is kept in ``pre``)."""

    spec: CellSpec
    h: np.ndarray
    c: Optional[np.ndarray]
    gates: np.ndarray
    pre: Optional[np.ndarray] = None
    hn_lin: Optional[np.ndarray] = None  # GRU: W_hn h + b_hn per step


def run_cell(spec, x, h0=None, c0=None):
    """Run one layer over ``x`` (T, B, I) with NumPy; returns a ``Trace``."""
    spec.check()
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != spec.weight_ih.shape[1]:
        raise ShapeError("run_cell(%s): x must be (T, B, I=%d), got %s"
                         % (spec.kind, spec.weight_ih.shape[1], x.shape))
    T, B, _ = x.shape
    H = spec.hidden_size
    dt = np.float64  # the reference always computes in float64, whatever the layer's dtype
    h = np.zeros((B, H), dt) if h0 is None else np.asarray(h0, dt).reshape(B, H)
    c = None
    if spec.kind == "lstm":
        c = np.zeros((B, H), dt) if c0 is None else np.asarray(c0, dt).reshape(B, H)
    G = GATES[spec.kind]
    b_ih = np.zeros(G * H, dt) if spec.bias_ih is None else spec.bias_ih
    b_hh = np.zeros(G * H, dt) if spec.bias_hh is None else spec.bias_hh
    W_ih, W_hh = spec.weight_ih.astype(dt), spec.weight_hh.astype(dt)
    spec = CellSpec(spec.kind, W_ih, W_hh, None if spec.bias_ih is None else spec.bias_ih.astype(dt),
                    None if spec.bias_hh is None else spec.bias_hh.astype(dt), spec.nonlinearity)
    b_ih = b_ih.astype(dt)
    b_hh = b_hh.astype(dt)
    xs = x.astype(dt) @ spec.weight_ih.T + b_ih  # (T, B, G*H)
    hs = [h]
    cs = [c] if c is not None else None
    gates = np.empty((T, B, G * H), dt)
    pre = np.empty((T, B, H), dt) if spec.kind == "rnn" else None
    hn_lin = np.empty((T, B, H), dt) if spec.kind == "gru" else None
    for t in range(T):
        hh = h @ spec.weight_hh.T + b_hh
        if spec.kind == "rnn":
            a = xs[t] + hh
            pre[t] = a
            h = _act(spec.nonlinearity, a)
            gates[t] = h
        elif spec.kind == "lstm":
            a = xs[t] + hh
            i = _sigmoid(a[:, :H])
            f = _sigmoid(a[:, H:2 * H])
            g = np.tanh(a[:, 2 * H:3 * H])
            o = _sigmoid(a[:, 3 * H:])
            c = f * c + i * g
            h = o * np.tanh(c)
            gates[t] = np.concatenate([i, f, g, o], axis=1)
            cs.append(c)
        else:  # gru
            r = _sigmoid(xs[t][:, :H] + hh[:, :H])
            z = _sigmoid(xs[t][:, H:2 * H] + hh[:, H:2 * H])
            n = np.tanh(xs[t][:, 2 * H:] + r * hh[:, 2 * H:])
            hn_lin[t] = hh[:, 2 * H:]
            h = (1 - z) * n + z * h
            gates[t] = np.concatenate([r, z, n], axis=1)
        hs.append(h)
    return Trace(spec, np.stack(hs), np.stack(cs) if cs is not None else None, gates, pre, hn_lin)


def step_jacobian(tr, t, b=0):
    """J_t = ds_t/ds_{t-1} for step ``t`` in 1..T and batch element ``b``: (D, D), D = H (2H for LSTM)."""
    spec = tr.spec
    H = spec.hidden_size
    W = spec.weight_hh
    k = t - 1
    if spec.kind == "rnn":
        d = _act_deriv(spec.nonlinearity, tr.pre[k, b], tr.h[t, b])
        return d[:, None] * W
    g = tr.gates[k, b]
    if spec.kind == "lstm":
        i, f, gg, o = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
        c_prev, c = tr.c[t - 1, b], tr.c[t, b]
        tc = np.tanh(c)
        di = (i * (1 - i))[:, None] * W[:H]
        df = (f * (1 - f))[:, None] * W[H:2 * H]
        dg = (1 - gg * gg)[:, None] * W[2 * H:3 * H]
        do = (o * (1 - o))[:, None] * W[3 * H:]
        dc_dh = c_prev[:, None] * df + gg[:, None] * di + i[:, None] * dg
        dc_dc = np.diag(f)
        k_ = (o * (1 - tc * tc))[:, None]
        dh_dh = tc[:, None] * do + k_ * dc_dh
        dh_dc = k_ * dc_dc
        return np.block([[dh_dh, dh_dc], [dc_dh, dc_dc]])
    # gru
    r, z, n = g[:H], g[H:2 * H], g[2 * H:]
    h_prev = tr.h[t - 1, b]
    hn = tr.hn_lin[k, b]
    dr = (r * (1 - r))[:, None] * W[:H]
    dz = (z * (1 - z))[:, None] * W[H:2 * H]
    dn = (1 - n * n)[:, None] * (hn[:, None] * dr + r[:, None] * W[2 * H:])
    return (1 - z)[:, None] * dn + np.diag(z) + (h_prev - n)[:, None] * dz


def _spectral(M):
    if M.size == 0:
        return 0.0
    return float(np.linalg.norm(M, 2))


def spectral_norm(M, iters=100, seed=0):
    """||M||_2: exact (SVD) for small matrices, power iteration on M^T M otherwise."""
    M = np.asarray(M, dtype=np.float64)
    if max(M.shape) <= 512:
        return _spectral(M)
    v = np.random.default_rng(seed).standard_normal(M.shape[1])
    v /= np.linalg.norm(v)
    s = 0.0
    for _ in range(iters):
        w = M.T @ (M @ v)
        s = np.linalg.norm(w)
        if s == 0:
            return 0.0
        v = w / s
    return float(math.sqrt(s))


def spectral_radius(M):
    """Largest |eigenvalue| of the square matrix ``M``."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(M, dtype=np.float64)))))


@dataclass
class JacobianReport:
    """||dh_T/dh_t|| for t = 0..T (index t; t = T is the identity, 1), in log10.

    ``log10_norms``         (T+1,) log10 ||dh_T/dh_t||_2 (for LSTM: holding c_t fixed)
    ``log10_state_norms``   (T+1,) log10 ||ds_T/ds_t||_2 of the full state (h, c) for LSTM (= the above otherwise)
    ``log10_step_factors``  (T+1,) log10 ||dh_t/dh_{t-1}||_2 of step t (entry 0 is NaN: no step)
    ``log10_bound``         (T+1,) log10 of the classical bound (vanilla RNN only, else None)
    ``bound_factor``        ||W_hh||_2 * max|act'| (RNN only)
    ``method``              "exact" or "power"
    """

    kind: str
    T: int
    H: int
    method: str
    log10_norms: np.ndarray
    log10_state_norms: np.ndarray
    log10_step_factors: np.ndarray
    log10_bound: Optional[np.ndarray]
    bound_factor: Optional[float]
    w_hh_norm: float

    @property
    def norms(self):
        """The plain norms (10**log10): these underflow to 0.0 where the log10 values do not."""
        with np.errstate(under="ignore", over="ignore"):
            return 10.0 ** self.log10_norms

    @property
    def mean_log10_decay(self):
        """Average log10 change per step from t = T back to t = 0 (negative: vanishing)."""
        v = self.log10_norms[0]
        return float(v / self.T) if self.T and math.isfinite(v) else float("nan") if not math.isinf(v) else -math.inf

    @property
    def mean_decay_factor(self):
        """10**mean_log10_decay: the average factor by which the norm shrinks per step."""
        return 10 ** self.mean_log10_decay

    def to_dict(self):
        def lst(a):
            return None if a is None else [None if not math.isfinite(v) else float(v) for v in a]

        return {"kind": self.kind, "T": self.T, "H": self.H, "method": self.method,
                "log10_norms": lst(self.log10_norms), "log10_state_norms": lst(self.log10_state_norms),
                "log10_step_factors": lst(self.log10_step_factors), "log10_bound": lst(self.log10_bound),
                "bound_factor": self.bound_factor, "w_hh_norm": self.w_hh_norm,
                "mean_log10_decay": self.mean_log10_decay}


def _log10_safe(x):
    return math.log10(x) if x > 0 else -math.inf


def _single_blas_thread(fn):
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **k):
        with blas_threads(1):
            return fn(*a, **k)
    return wrapper


@_single_blas_thread
def jacobian_norms(layer_or_spec, x, h0=None, c0=None, layer_index=0, batch_index=0, method="auto",
                   exact_max_dim=256, probes=8, seed=0):
    """Norms of dh_T/dh_t for every t, per-step factors and the classical bound.

    Parameters
    ----------
    layer_or_spec : tinybptt.nn RNN/LSTM/GRU, or a ``CellSpec``
    x : array (T, B, I)
        The input of the layer (of layer 0; the inputs of higher layers are computed).
    h0, c0 : arrays (num_layers, B, H) or (B, H), optional
    layer_index : which layer of a multi-layer network to analyse.
    batch_index : which sequence of the batch.
    method : "exact" builds the (renormalised) product of full Jacobians, O(T D^3);
        "power" propagates a block of ``probes`` orthonormal vectors (Jacobian-vector
        products, O(T D^2 probes)) started from the dominant left singular directions of
        the full product, giving a lower estimate of each norm; "auto" uses exact up to
        state dimension ``exact_max_dim``.
    """
    x = np.asarray(getattr(x, "data", x))
    if x.ndim != 3:
        raise ShapeError("jacobian_norms: x must be (T, B, I), got %s" % (x.shape,))
    if isinstance(layer_or_spec, CellSpec):
        spec = layer_or_spec.check()
        inp = x
        h0l = _np(h0)
        c0l = _np(c0)
    else:
        layer = layer_or_spec
        inp = x
        h0a, c0a = _np(h0), _np(c0)
        for l in range(layer_index + 1):
            sp = cell_from_layer(layer, l)
            hl = None if h0a is None else (h0a[l] if h0a.ndim == 3 else h0a)
            cl = None if c0a is None else (c0a[l] if c0a.ndim == 3 else c0a)
            if l == layer_index:
                spec, h0l, c0l = sp, hl, cl
                break
            inp = run_cell(sp, inp, hl, cl).h[1:]
    tr = run_cell(spec, inp, h0l, c0l)
    T = inp.shape[0]
    H = spec.hidden_size
    D = spec.state_dim
    b = batch_index
    if method == "auto":
        method = "exact" if D <= exact_max_dim else "power"
    if method not in ("exact", "power"):
        raise ValueError("jacobian_norms: method must be 'auto', 'exact' or 'power', got %r" % method)

    log_h = np.full(T + 1, np.nan)
    log_s = np.full(T + 1, np.nan)
    step_f = np.full(T + 1, np.nan)
    log_h[T] = 0.0
    log_s[T] = 0.0
    jac = [None] + [step_jacobian(tr, t, b) for t in range(1, T + 1)]
    for t in range(1, T + 1):
        Jh = jac[t][:H, :H]
        step_f[t] = _log10_safe(_spectral(Jh) if method == "exact" else spectral_norm(Jh, iters=30))

    if method == "exact":
        P = np.eye(D)
        scale = 0.0  # log10 of the factor divided out of P so far
        for t in range(T - 1, -1, -1):
            P = P @ jac[t + 1]
            f = float(np.linalg.norm(P))
            if f == 0.0 or not math.isfinite(f):
                log_h[:t + 1] = -math.inf if f == 0.0 else math.inf
                log_s[:t + 1] = log_h[:t + 1]
                break
            P /= f
            scale += math.log10(f)
            log_h[t] = scale + _log10_safe(_spectral(P[:H, :H]))
            log_s[t] = scale + _log10_safe(_spectral(P))
    else:
        log_h, log_s = _power_estimate(jac, T, H, D, probes, seed)

    bound = factor = None
    wn = spectral_norm(spec.weight_hh[:H] if spec.kind == "rnn" else spec.weight_hh)
    if spec.kind == "rnn":
        factor = wn * MAX_DERIVATIVE.get(spec.nonlinearity, 1.0)
        lf = _log10_safe(factor)
        bound = np.array([(T - t) * lf if t < T else 0.0 for t in range(T + 1)])
    return JacobianReport(spec.kind, T, H, method, log_h, log_s, step_f, bound, factor, wn)


def _power_estimate(jac, T, H, D, probes, seed):
    """Lower estimates of log10||dh_T/dh_t|| from a block of vectors pushed back through J^T.

    Pass 1 runs k random vectors backward (v <- J^T v) from T to 0 and pass 2 forward
    (v <- J v) from 0 to T with QR re-orthonormalisation: that is one sweep of subspace
    iteration on P_0 P_0^T, whose result approximates the dominant left singular
    directions at h_T.  Pass 3 pushes those back again, accumulating the k x k triangular
    factors in log space; the largest singular value of the accumulated block is the estimate.
    """
    rng = np.random.default_rng(seed)
    k = min(probes, D)
    Q = np.linalg.qr(rng.standard_normal((D, k)))[0]
    for t in range(T, 0, -1):
        Q = np.linalg.qr(jac[t].T @ Q)[0]
    for t in range(1, T + 1):
        Q = np.linalg.qr(jac[t] @ Q)[0]
    log_h = np.full(T + 1, np.nan)
    log_s = np.full(T + 1, np.nan)
    log_h[T] = log_s[T] = 0.0
    # probes for the h-block: the h-part of the dominant directions, re-orthonormalised, with c = 0
    U = np.linalg.qr(Q[:H])[0] if D > H else Q
    Uf = np.zeros((D, U.shape[1]))
    Uf[:H] = U
    V, scale = Uf, 0.0
    Vs, scale_s = Q, 0.0
    for t in range(T - 1, -1, -1):
        V = jac[t + 1].T @ V
        f = float(np.linalg.norm(V))
        if f == 0.0 or not math.isfinite(f):
            log_h[:t + 1] = -math.inf if f == 0.0 else math.inf
            break
        V /= f
        scale += math.log10(f)
        log_h[t] = scale + _log10_safe(_spectral(V[:H]))
    for t in range(T - 1, -1, -1):
        Vs = jac[t + 1].T @ Vs
        f = float(np.linalg.norm(Vs))
        if f == 0.0 or not math.isfinite(f):
            log_s[:t + 1] = -math.inf if f == 0.0 else math.inf
            break
        Vs /= f
        scale_s += math.log10(f)
        log_s[t] = scale_s + _log10_safe(_spectral(Vs))
    return log_h, log_s


@_single_blas_thread
def logspace_backprop(layer_or_spec, x, g_T, h0=None, c0=None, layer_index=0):
    """log10 ||dL/dh_t|| for t = 0..T when L depends only on the last hidden state with dL/dh_T = ``g_T``.

    The gradient is pushed back through the analytic step Jacobians one step at a
    time, renormalised after every step, so the result stays exact in log space
    where the float gradient has underflowed to 0.  ``g_T`` is (B, H) (or (H,) for B = 1).
    Returns (log10_h, log10_c) arrays of shape (T+1,) (log10_c is None except for LSTM);
    the norms are over the whole batch.
    """
    x = np.asarray(getattr(x, "data", x))
    if isinstance(layer_or_spec, CellSpec):
        spec, inp, hl, cl = layer_or_spec.check(), x, _np(h0), _np(c0)
    else:
        inp = x
        h0a, c0a = _np(h0), _np(c0)
        for l in range(layer_index + 1):
            sp = cell_from_layer(layer_or_spec, l)
            hl = None if h0a is None else (h0a[l] if h0a.ndim == 3 else h0a)
            cl = None if c0a is None else (c0a[l] if c0a.ndim == 3 else c0a)
            if l == layer_index:
                spec = sp
                break
            inp = run_cell(sp, inp, hl, cl).h[1:]
    tr = run_cell(spec, inp, hl, cl)
    T, B = inp.shape[0], inp.shape[1]
    H, D = spec.hidden_size, spec.state_dim
    g = np.asarray(g_T, dtype=np.float64).reshape(B, H)
    V = np.zeros((B, D))
    V[:, :H] = g
    log_h = np.full(T + 1, np.nan)
    log_c = np.full(T + 1, np.nan) if spec.kind == "lstm" else None
    scale = 0.0
    f = float(np.linalg.norm(V))
    if f == 0:
        return np.full(T + 1, -math.inf), (None if log_c is None else np.full(T + 1, -math.inf))
    V /= f
    scale = math.log10(f)

    def record(t):
        log_h[t] = scale + _log10_safe(float(np.linalg.norm(V[:, :H])))
        if log_c is not None:
            log_c[t] = scale + _log10_safe(float(np.linalg.norm(V[:, H:])))

    record(T)
    for t in range(T, 0, -1):
        for b in range(B):
            V[b] = step_jacobian(tr, t, b).T @ V[b]
        f = float(np.linalg.norm(V))
        if f == 0.0 or not math.isfinite(f):
            log_h[:t] = -math.inf if f == 0.0 else math.inf
            if log_c is not None:
                log_c[:t] = log_h[:t]
            break
        V /= f
        scale += math.log10(f)
        record(t - 1)
    return log_h, log_c

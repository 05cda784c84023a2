"""Jacobian analysis of a recurrent layer: how dh_{T-1}/dh_t shrinks (or grows) with T-1-t.

Time steps are numbered t = 0..T-1 as everywhere in tinybptt (``out[t]`` is h_t);
the initial state is h_{-1}.  For a recurrence s_t = f(s_{t-1}, x_t) the gradient
of a loss on the last state reaches step t through the product of per-step Jacobians

    ds_{T-1}/ds_t = J_{T-1} J_{T-2} ... J_{t+1},      J_t = ds_t/ds_{t-1}.

Arrays over the states have T+1 entries, for t = -1..T-1 (``report.steps``):
entry k belongs to time step t = k - 1, entry 0 to the initial state.

The state s is h for RNN and GRU and (h, c) for LSTM.  The forward pass is
recomputed in float64 by the NumPy reference kernel (``kernels/numpy_rnn.py``,
PyTorch's formulas and gate order), and each J_t comes from that kernel's
backward of one step, run on the unit vectors of the state (``step_jacobian``);
for example

    RNN   J = diag(act'(a_t)) W_hh
    LSTM  J = [[dh'/dh, dh'/dc], [dc'/dh, diag(f)]]  (2H x 2H)
    GRU   J = diag(1-z) dn/dh + diag(z) + diag(h-n) dz/dh

Products of many Jacobians underflow (or overflow) float64 long before their
logarithm stops being meaningful, so every product here is *renormalised*: after
each multiplication the running matrix (or vector) is divided by its norm and the
log of that norm is added to a running sum.  ``log10`` values therefore stay
finite and exact where the plain product is 0.0 or inf.

The classical bound (Bengio et al. 1994, Pascanu et al. 2013) for a vanilla RNN:
||J_t|| <= ||W_hh||_2 * max|act'| (tanh and ReLU 1, sigmoid 1/4), hence
||dh_{T-1}/dh_t|| <= (||W_hh||_2 * max|act'|)^(T-1-t).
"""
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import ShapeError, describe
from ..kernels import numpy_rnn
from ..kernels.cells import GATES, cell_kind, check_cell
from ..kernels.recurrent import RecurrentSaved
from .numerics import blas_threads

#: max |act'(a)| of each activation: the gamma of the classical bound
MAX_DERIVATIVE = {"tanh": 1.0, "relu": 1.0, "sigmoid": 0.25}


@dataclass
class CellSpec:
    """The weights of one layer of a recurrent network, in PyTorch's layout.

    ``kind`` is a cell of ``tinybptt.kernels.cells``: "rnn_tanh", "rnn_relu", "lstm" or "gru".
    """

    kind: str
    weight_ih: np.ndarray  # (G*H, I)
    weight_hh: np.ndarray  # (G*H, H)
    bias_ih: Optional[np.ndarray] = None  # (G*H,)
    bias_hh: Optional[np.ndarray] = None  # (G*H,)

    @property
    def hidden_size(self):
        return self.weight_hh.shape[1]

    @property
    def state_dim(self):
        return 2 * self.hidden_size if self.kind == "lstm" else self.hidden_size

    @property
    def nonlinearity(self):
        """The RNN's activation ("tanh" or "relu"); None for LSTM and GRU."""
        return self.kind[4:] if self.kind.startswith("rnn_") else None

    def check(self):
        G = check_cell("CellSpec", self.kind)
        H = self.weight_hh.shape[1]
        if self.weight_hh.shape != (G * H, H) or self.weight_ih.shape[0] != G * H:
            raise ShapeError("CellSpec(%s): weight_hh %s and weight_ih %s do not fit G=%d gates of size H=%d"
                             % (self.kind, self.weight_hh.shape, self.weight_ih.shape, G, H))
        return self

    def float64(self):
        """The same weights in float64 (the analysis always computes in float64)."""
        return CellSpec(self.kind, *(None if a is None else np.asarray(a, np.float64)
                                     for a in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)))


def _np(a):
    if a is None:
        return None
    return np.asarray(getattr(a, "data", a))


def _layer_kind(layer):
    """The cell kind of a ``tinybptt.nn`` or ``torch.nn`` recurrent layer or cell."""
    kind = getattr(layer, "cell_type", None)  # tinybptt
    if kind in GATES:
        return kind
    name = type(layer).__name__.lower()
    for short in ("lstm", "gru", "rnn"):
        if short in name:
            return cell_kind(short, getattr(layer, "nonlinearity", "tanh") or "tanh")
    raise ValueError("cell_from_layer: cannot tell the cell type of %s (expected an RNN, LSTM or GRU)"
                     % type(layer).__name__)


def cell_from_layer(layer, index=0):
    """``CellSpec`` of layer ``index`` of a ``tinybptt.nn`` (or ``torch.nn``) RNN/LSTM/GRU.

    The weights come from ``weight_ih_l{index}`` etc. (or ``weight_ih`` for the
    single-step Cell classes).
    """
    kind = _layer_kind(layer)
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

    return CellSpec(kind, get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")).check()


# --------------------------------------------------------------------------- forward pass (reference)


@dataclass
class Trace:
    """States of a forward pass: ``h`` (T+1, B, H) holds h_{-1} (the initial state), h_0, ...,
    h_{T-1} (row k is time step t = k - 1), ``c`` likewise for the LSTM (else None), and
    ``saved``: what the NumPy reference kernel kept for its backward (gates, tanh(c), ...),
    from which ``step_jacobian`` builds each step's Jacobian."""

    spec: CellSpec
    h: np.ndarray
    c: Optional[np.ndarray]
    saved: RecurrentSaved


def run_cell(spec, x, h0=None, c0=None):
    """Run one layer over ``x`` (T, B, I) with the NumPy reference kernel, in float64; returns a ``Trace``."""
    spec = spec.check().float64()
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != spec.weight_ih.shape[1]:
        raise ShapeError("run_cell(%s): x must be (T, B, I=%d), got %s"
                         % (spec.kind, spec.weight_ih.shape[1], x.shape))
    B, H = x.shape[1], spec.hidden_size
    h = np.zeros((B, H)) if h0 is None else np.asarray(h0, np.float64).reshape(B, H)
    c = None
    if spec.kind == "lstm":
        c = np.zeros((B, H)) if c0 is None else np.asarray(c0, np.float64).reshape(B, H)
    out, c_out, saved = numpy_rnn.seq_forward(spec.kind, x.astype(np.float64), h, c, spec.weight_ih,
                                              spec.weight_hh, spec.bias_ih, spec.bias_hh)
    hs = np.concatenate([h[None], out])
    cs = None if c is None else np.concatenate([c[None], c_out])
    return Trace(spec, hs, cs, saved)


def _step_saved(tr, k, rows=None):
    """The reference kernel's record of the step that makes ``tr.h[k]`` (k = 1..T) alone.

    ``rows``: batch indices to take (with repeats), or None for the whole batch."""
    s, t = tr.saved, k - 1  # time step t = k - 1: the kernel's arrays hold steps 0..T-1

    def pick(a):
        return None if a is None else (a if rows is None else a[rows])

    return RecurrentSaved("step", s.cell, pick(s.x[t]), pick(tr.h[k - 1]), None if tr.c is None else pick(tr.c[k - 1]),
                          s.w_ih, s.w_hh, s.b_ih, s.b_hh, pick(s.out[t]),
                          None if s.c_out is None else pick(s.c_out[t]), None if s.gates is None else pick(s.gates[t]),
                          None if s.tanh_c is None else pick(s.tanh_c[t]), None if s.hn is None else pick(s.hn[t]))


def step_vjp(tr, k, u, rows=None):
    """``u J`` for row vectors ``u`` (B, D) on the state ``tr.h[k]`` (k = 1..T: time step t = k - 1).

    This is one step of backpropagation through time, done by the NumPy reference
    kernel's step backward; the result (B, D) is the gradient on the state before
    the step.  ``rows``: which batch element each row of ``u`` belongs to (default:
    row b is batch element b)."""
    H = tr.spec.hidden_size
    lstm = tr.spec.kind == "lstm"
    g = numpy_rnn.step_backward(tr.spec.kind, _step_saved(tr, k, rows), u[:, :H], u[:, H:] if lstm else None,
                                need_dx=False)
    return np.concatenate([g["dh"], g["dc"]], axis=1) if lstm else g["dh"]


def step_jacobian(tr, t, b=0):
    """J_t = ds_t/ds_{t-1}, the Jacobian of time step t = 0..T-1 (the step that makes
    ``out[t]``, i.e. ``tr.h[t + 1]``), for batch element ``b``: (D, D), D = H (2H for LSTM).

    Row i is the derivative of component i of the new state (h, then c for the LSTM)
    with respect to the previous state: ``step_vjp`` of the i-th unit vector, all D
    of them at once as a batch.
    """
    T = tr.h.shape[0] - 1
    if not 0 <= t < T:
        raise IndexError("step_jacobian: time step t must be in 0..%d (T = %d), got %r" % (T - 1, T, t))
    D = tr.spec.state_dim
    return step_vjp(tr, t + 1, np.eye(D), rows=np.full(D, b))


def layer_input(layer_or_spec, x, h0, c0, layer_index):
    """``(spec, input, h0, c0)`` of the layer to analyse: a ``CellSpec`` as given, or layer
    ``layer_index`` of a network, whose input is computed through the layers below."""
    x = np.asarray(getattr(x, "data", x))
    if x.ndim != 3:
        raise ShapeError("jacobian analysis: x must be (T, B, I), got %s" % (x.shape,))
    h0a, c0a = _np(h0), _np(c0)
    if isinstance(layer_or_spec, CellSpec):
        return layer_or_spec.check(), x, h0a, c0a
    inp = x
    for l in range(layer_index + 1):
        spec = cell_from_layer(layer_or_spec, l)
        hl = None if h0a is None else (h0a[l] if h0a.ndim == 3 else h0a)
        cl = None if c0a is None else (c0a[l] if c0a.ndim == 3 else c0a)
        if l < layer_index:
            inp = run_cell(spec, inp, hl, cl).h[1:]
    return spec, inp, hl, cl


def _spectral(M):
    if M.size == 0:
        return 0.0
    if not np.isfinite(M).all():  # LAPACK's SVD does not converge on NaN/inf; the norm is NaN (or inf)
        return math.nan if np.isnan(M).any() else math.inf
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
    """Largest |eigenvalue| of the square matrix ``M`` (NaN if ``M`` holds NaN or inf)."""
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ShapeError("spectral_radius: M must be a square matrix, got %s" % describe(M))
    if M.size == 0:
        return 0.0
    if not np.isfinite(M).all():  # eigvals refuses them; the eigenvalues are undefined
        return math.nan
    return float(np.max(np.abs(np.linalg.eigvals(M))))


@dataclass
class JacobianReport:
    """||dh_{T-1}/dh_t|| for t = -1..T-1, in log10: entry k is time step t = k - 1 (``steps``).

    ``log10_norms``         (T+1,) log10 ||dh_{T-1}/dh_t||_2 (for LSTM: holding c_t fixed);
                            the last entry (t = T-1, the identity) is 0
    ``log10_state_norms``   (T+1,) log10 ||ds_{T-1}/ds_t||_2 of the full state (h, c) for LSTM (= the above otherwise)
    ``log10_step_factors``  (T+1,) log10 ||dh_t/dh_{t-1}||_2 of step t (entry 0, t = -1, is NaN: no step)
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
    def steps(self):
        """The time step of each entry: -1 (the initial state), 0, ..., T-1."""
        return np.arange(-1, self.T)

    @property
    def norms(self):
        """The plain norms (10**log10): these underflow to 0.0 where the log10 values do not."""
        with np.errstate(under="ignore", over="ignore"):
            return 10.0 ** self.log10_norms

    @property
    def mean_log10_decay(self):
        """Average log10 change per step from t = T-1 back to t = -1 (negative: vanishing)."""
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
                "mean_log10_decay": self.mean_log10_decay, "steps": self.steps.tolist()}

    def plot(self, title=None):
        """A matplotlib figure: log10 ||dh_{T-1}/dh_t|| against t, the step factors and the bound."""
        from .plot import jacobian_figure

        return jacobian_figure(self, title)

    def _repr_png_(self):
        from .plot import png_of

        return png_of(self.plot)


def _log10_safe(x):
    """log10 of a norm: -inf for 0, and NaN stays NaN."""
    return math.log10(x) if x > 0 else (-math.inf if x == 0 else math.nan)


def single_blas_thread(fn):
    """Run ``fn`` with one BLAS thread: small products are faster that way, and results reproducible."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **k):
        with blas_threads(1):
            return fn(*a, **k)
    return wrapper


@single_blas_thread
def jacobian_norms(layer_or_spec, x, h0=None, c0=None, layer_index=0, batch_index=0, method="auto",
                   exact_max_dim=256, probes=8, seed=0):
    """Norms of dh_{T-1}/dh_t for every t = -1..T-1, per-step factors and the classical bound.

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
    spec, inp, h0l, c0l = layer_input(layer_or_spec, x, h0, c0, layer_index)
    tr = run_cell(spec, inp, h0l, c0l)
    T = inp.shape[0]
    H = spec.hidden_size
    D = spec.state_dim
    b = batch_index
    if method == "auto":
        method = "exact" if D <= exact_max_dim else "power"
    if method not in ("exact", "power"):
        raise ValueError("jacobian_norms: method must be 'auto', 'exact' or 'power', got %r" % method)

    step_f = np.full(T + 1, np.nan)
    jac = [None] + [step_jacobian(tr, t, b) for t in range(T)]  # jac[k]: time step k - 1
    for t in range(1, T + 1):
        Jh = jac[t][:H, :H]
        step_f[t] = _log10_safe(_spectral(Jh) if method == "exact" else spectral_norm(Jh, iters=30))

    if method == "exact":
        log_h, log_s = _exact_products(jac, T, H, D)
    else:
        log_h, log_s = _power_estimate(jac, T, H, D, probes, seed)

    bound = factor = None
    wn = spectral_norm(spec.weight_hh)
    if spec.nonlinearity is not None:  # a vanilla RNN
        factor = wn * MAX_DERIVATIVE[spec.nonlinearity]
        lf = _log10_safe(factor)
        bound = np.array([(T - t) * lf if t < T else 0.0 for t in range(T + 1)])
    return JacobianReport(spec.kind, T, H, method, log_h, log_s, step_f, bound, factor, wn)


def renormalised_products(jac, T):
    """``(k, P, scale)`` for k = T-1, ..., 0: the product J_T ... J_{k+1} of ``jac[T], ..., jac[k+1]``
    is ``P * 10**scale`` with ||P||_F = 1 (``jac[k]`` is the Jacobian of time step t = k - 1).

    If the product becomes exactly 0 (or inf/NaN), the last item is ``(k, None, -inf)``
    (or ``+inf``/NaN) and the products of all earlier entries are that too."""
    P = np.eye(jac[T].shape[0])
    scale = 0.0  # log10 of the factor divided out of P so far
    for k in range(T - 1, -1, -1):
        P = P @ jac[k + 1]
        f = float(np.linalg.norm(P))
        if f == 0.0 or not math.isfinite(f):
            yield k, None, (-math.inf if f == 0.0 else f)  # f: inf or NaN, whose log10 it is too
            return
        P /= f
        scale += math.log10(f)
        yield k, P, scale


def _exact_products(jac, T, H, D):
    """log10 ||dh_{T-1}/dh_t|| and log10 ||ds_{T-1}/ds_t|| from the renormalised products of full Jacobians."""
    log_h = np.full(T + 1, np.nan)
    log_s = np.full(T + 1, np.nan)
    log_h[T] = log_s[T] = 0.0
    for k, P, scale in renormalised_products(jac, T):
        if P is None:
            log_h[:k + 1] = log_s[:k + 1] = scale
            break
        log_h[k] = scale + _log10_safe(_spectral(P[:H, :H]))
        log_s[k] = scale + _log10_safe(_spectral(P))
    return log_h, log_s


def _power_estimate(jac, T, H, D, probes, seed):
    """Lower estimates of log10||dh_{T-1}/dh_t|| from a block of vectors pushed back through J^T.

    Pass 1 runs k random vectors backward (v <- J^T v) from T to 0 and pass 2 forward
    (v <- J v) from 0 to T with QR re-orthonormalisation: that is one sweep of subspace
    iteration on P_0 P_0^T, whose result approximates the dominant left singular
    directions at the last state.  Pass 3 pushes those back again, accumulating the k x k triangular
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
            log_h[:t + 1] = -math.inf if f == 0.0 else f  # inf or NaN
            break
        V /= f
        scale += math.log10(f)
        log_h[t] = scale + _log10_safe(_spectral(V[:H]))
    for t in range(T - 1, -1, -1):
        Vs = jac[t + 1].T @ Vs
        f = float(np.linalg.norm(Vs))
        if f == 0.0 or not math.isfinite(f):
            log_s[:t + 1] = -math.inf if f == 0.0 else f
            break
        Vs /= f
        scale_s += math.log10(f)
        log_s[t] = scale_s + _log10_safe(_spectral(Vs))
    return log_h, log_s


@single_blas_thread
def logspace_backprop(layer_or_spec, x, g_T, h0=None, c0=None, layer_index=0):
    """log10 ||dL/dh_t|| for t = -1..T-1 when L depends only on the last state, dL/dh_{T-1} = ``g_T``.

    The gradient is pushed back one step at a time (``step_vjp``), renormalised
    after every step, so the result stays exact in log space where the float
    gradient has underflowed to 0.  ``g_T`` is (B, H) (or (H,) for B = 1).
    Returns (log10_h, log10_c) arrays of shape (T+1,), entry k for time step t = k - 1
    (entry 0: the initial state); log10_c is None except for LSTM.  The norms are over
    the whole batch.
    """
    spec, inp, hl, cl = layer_input(layer_or_spec, x, h0, c0, layer_index)
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
        V = step_vjp(tr, t, V)
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

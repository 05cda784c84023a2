"""Singular values of the step Jacobians dh_t/dh_{t-1} and of their products.

``jacobian_norms`` reports the largest singular value of dh_{T-1}/dh_t; the whole
spectrum says more.  Pascanu et al. (2013) argue from it: if every step's largest
singular value stays below 1/gamma (gamma = max |act'|), the product shrinks
geometrically, whatever the direction; a step with singular values above 1 can
make some directions grow.  ``jacobian_spectra`` gives, in log10:

``step``     (T, H)    singular values of dh_t/dh_{t-1} for t = 0..T-1 (for the LSTM,
                       the h-block of the (h, c) Jacobian: c_{t-1} held fixed);
``product``  (T+1, H)  singular values of dh_{T-1}/dh_t for t = -1..T-1 (entry k is
                       step t = k - 1; for the LSTM the h-block of the product of full
                       (h, c) Jacobians, so the paths through c are included);
``log10_bound_step`` and ``log10_bound_product``: the classical bound
                       ||W_hh||_2 * gamma per step and its power (T-1-t) (vanilla RNN only).

The products are renormalised as in ``jacobian_norms``: the log10 values stay exact
where the plain product underflows.  A singular value more than about 15 decades
below the largest of the same product is at the floating-point floor of that
product and carries no information.
"""
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .jacobian import (MAX_DERIVATIVE, layer_input, renormalised_products, run_cell, single_blas_thread,
                       spectral_norm, step_jacobian)


def _log10_sv(M):
    """log10 of the singular values of ``M``, largest first (-inf for exact zeros; all NaN, or all
    inf, if ``M`` holds NaN or inf, on which LAPACK's SVD does not converge)."""
    if not np.isfinite(M).all():
        return np.full(min(M.shape), np.nan if np.isnan(M).any() else np.inf)
    with np.errstate(divide="ignore"):
        return np.log10(np.linalg.svd(M, compute_uv=False))


@dataclass
class JacobianSpectra:
    """What ``jacobian_spectra`` returns (see the module docstring); all values in log10."""

    kind: str
    T: int
    H: int
    step: np.ndarray
    product: np.ndarray
    log10_bound_step: Optional[float]
    log10_bound_product: Optional[np.ndarray]

    @property
    def steps(self):
        """Time step of each row of ``step``: 0..T-1."""
        return np.arange(self.T)

    @property
    def product_steps(self):
        """Time step of each row of ``product``: -1 (the initial state), 0, ..., T-1."""
        return np.arange(-1, self.T)

    def to_dict(self):
        """Plain lists (None for -inf/NaN), JSON-safe."""
        def lst(a):
            if a is None:
                return None
            return [lst(v) if np.ndim(v) else (float(v) if math.isfinite(v) else None) for v in a]

        return {"kind": self.kind, "T": self.T, "H": self.H, "steps": self.steps.tolist(),
                "product_steps": self.product_steps.tolist(), "log10_step_singular_values": lst(self.step),
                "log10_product_singular_values": lst(self.product), "log10_bound_step": self.log10_bound_step,
                "log10_bound_product": lst(self.log10_bound_product)}

    def plot(self):
        """A matplotlib figure: the step spectra and the product spectra against t, with the bound."""
        from .plot import spectra_figure

        return spectra_figure(self)

    def _repr_png_(self):
        from .plot import png_of

        return png_of(self.plot)


@single_blas_thread
def jacobian_spectra(layer_or_spec, x, h0=None, c0=None, layer_index=0, batch_index=0):
    """Singular values of dh_t/dh_{t-1} and of dh_{T-1}/dh_t, beside the classical bound.

    Arguments as for ``jacobian_norms``: a ``tinybptt.nn`` (or ``torch.nn``)
    RNN/LSTM/GRU or a ``CellSpec``, its input ``x`` (T, B, I), optional initial
    states, which layer and which sequence of the batch.  Returns ``JacobianSpectra``.
    """
    spec, inp, hl, cl = layer_input(layer_or_spec, x, h0, c0, layer_index)
    tr = run_cell(spec, inp, hl, cl)
    T, H = inp.shape[0], spec.hidden_size
    jac = [None] + [step_jacobian(tr, t, batch_index) for t in range(T)]  # jac[k]: time step k - 1
    step = np.array([_log10_sv(jac[k][:H, :H]) for k in range(1, T + 1)]).reshape(T, H)
    product = np.full((T + 1, H), np.nan)
    product[T] = 0.0  # dh_{T-1}/dh_{T-1} = I
    for k, P, scale in renormalised_products(jac, T):
        if P is None:
            product[:k + 1] = scale
            break
        product[k] = scale + _log10_sv(P[:H, :H])
    bound_step = bound_product = None
    if spec.nonlinearity is not None:  # a vanilla RNN
        factor = spectral_norm(spec.weight_hh) * MAX_DERIVATIVE[spec.nonlinearity]
        bound_step = math.log10(factor) if factor > 0 else -math.inf
        bound_product = np.array([(T - k) * bound_step if k < T else 0.0 for k in range(T + 1)])
    return JacobianSpectra(spec.kind, T, H, step, product, bound_step, bound_product)

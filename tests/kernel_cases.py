"""Helpers shared by the kernel-level tests: both kernel modules as parameters, and
random arguments for the recurrent kernels.  (Not a test module: nothing here is
collected.)"""
import numpy as np
import pytest

from tinybptt.kernels import numpy as KN
from tinybptt.kernels.cells import GATES

try:
    from tinybptt.kernels import c as KC
except ImportError:  # the C extension is not built
    KC = None

needs_c = pytest.mark.skipif(KC is None, reason="C extension not built")
KERNELS = [pytest.param(KN, id="numpy"), pytest.param(KC, id="c", marks=needs_c)]
CELLS = list(GATES)


def rnn_args(rng, cell, T, B, I, H, dtype=np.float64, bias=True, scale=0.5):
    """Inputs of seq_forward (x is (B, I) when T is None), as a dict."""
    G = GATES[cell]

    def r(*shape):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    return dict(x=r(B, I) if T is None else r(T, B, I), h=r(B, H), c=r(B, H) if cell == "lstm" else None,
                w_ih=r(G * H, I), w_hh=r(G * H, H), b_ih=r(G * H) if bias else None, b_hh=r(G * H) if bias else None)


def seq(K, cell, a):
    return K.seq_forward(cell, a["x"], a["h"], a["c"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])

"""What is measured: configurations, the shared problem, FLOP counts and contender names.

The workload of the layer benchmark is forward + backward of one recurrent layer,
loss ``sum(out**2)`` over all outputs, the input not requiring grad, zero-grad
included.  Every contender builds the very same weights and input from one seed
(``make_problem``), in PyTorch's parameter names and gate order.
"""
import importlib.util
import math

import numpy as np

from ..kernels.cells import GATES, cell_kind

#: (T, B, I, H) of the standard configurations.
CONFIGS = {
    "tiny": (50, 1, 32, 32),
    "small": (100, 16, 64, 64),
    "medium": (100, 32, 256, 256),
    "large": (100, 64, 512, 512),
    "long": (1000, 8, 64, 64),
    # the size many published RNN benchmarks time (a 125-wide input, 320 hidden units, batch 64)
    "published": (100, 64, 125, 320),
}
#: Cells by the names a user types; the vanilla RNN is the tanh one.
CELLS = ("lstm", "gru", "rnn")
MODES = ("sequence", "cell", "ops")
#: Contenders that are not tinybptt.  "numpy" is a baseline, not a peer: it calls tinybptt's own NumPy
#: reference kernels directly (no autograd graph), so it never counts as the peer a target is measured against.
PEERS = ("torch", "jax", "torch-ops", "numpy")
#: The independent libraries a target ratio is taken against.
EXTERNAL_PEERS = ("torch", "jax", "torch-ops")
#: What to tell a user who has none of them.
INSTALL_HINT = ('install the peers with: pip install "tinybptt[bench]"  '
                '(or: pip install torch==2.13.0 jax)')
#: Short column names for the tables.
SHORT = {
    "tinybptt:sequence": "seq",
    "tinybptt:cell": "cell",
    "tinybptt:ops": "ops",
    "tinybptt:numpy": "np-backend",
    "torch": "torch",
    "jax": "jax",
    "torch-ops": "torch-ops",
    "numpy": "numpy-ref",
}
#: Which worker process family runs a contender.
FAMILY = {"torch": "torch", "torch-ops": "torch", "jax": "jax", "numpy": "tinybptt"}
#: Python packages a peer needs (checked without importing them in the parent).
NEEDS = {"torch": "torch", "torch-ops": "torch", "jax": "jax", "numpy": "numpy"}

PARAM_NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def gates(cell):
    """G, the gate count of a cell name as the bench spells it ("rnn" is the tanh RNN)."""
    return GATES[cell_kind(cell, "tanh")]


def is_tinybptt(contender):
    return contender.startswith("tinybptt:")


def is_external_peer(contender):
    """True for the contenders a target ratio may be taken against (torch, jax, torch-ops)."""
    return contender in EXTERNAL_PEERS


def family_of(contender):
    return "tinybptt" if is_tinybptt(contender) else FAMILY[contender]


def peer_available(peer):
    return importlib.util.find_spec(NEEDS[peer]) is not None


def contenders_for(modes, backends, peers):
    out = []
    if "c" in backends:
        out += ["tinybptt:%s" % m for m in modes]
    if "numpy" in backends:
        out.append("tinybptt:numpy")
    out += list(peers)
    return out


def parse_config(name):
    """``"small"`` or ``"100x16x64x64"`` (T x B x I x H) -> (name, (T, B, I, H))."""
    if name in CONFIGS:
        return name, CONFIGS[name]
    parts = name.lower().replace(",", "x").split("x")
    if len(parts) == 4 and all(p.isdigit() and int(p) > 0 for p in parts):
        return name, tuple(int(p) for p in parts)
    raise ValueError("bench: unknown config %r; use one of %s or TxBxIxH such as 100x16x64x64"
                     % (name, ", ".join(CONFIGS)))


def workload_flops(cell, T, B, I, H):
    """GEMM FLOPs of one forward + backward (input not requiring grad).

    forward  2*T*B*G*H*(I + H)   (input and recurrent projections)
    backward 2*T*B*G*H*(I + 2H)  (dW_ih, dW_hh and dh = dgates @ W_hh; no dx)
    Elementwise work is O(T*B*G*H) and left out.
    """
    G = gates(cell)
    return 2.0 * T * B * G * H * (I + H) + 2.0 * T * B * G * H * (I + 2 * H)


def make_problem(cell, T, B, I, H, dtype="float32", seed=0):
    """Input and weights every contender uses, in PyTorch's names, shapes and gate order.

    Weights are uniform in (-1/sqrt(H), 1/sqrt(H)) like ``torch.nn``; the input is
    standard normal.  Generated in float64 and cast, so every process builds the
    very same arrays from the same seed.
    """
    G = gates(cell)
    rng = np.random.default_rng(seed)
    k = 1.0 / math.sqrt(H)
    params = {
        "weight_ih_l0": rng.uniform(-k, k, (G * H, I)),
        "weight_hh_l0": rng.uniform(-k, k, (G * H, H)),
        "bias_ih_l0": rng.uniform(-k, k, (G * H,)),
        "bias_hh_l0": rng.uniform(-k, k, (G * H,)),
    }
    x = rng.standard_normal((T, B, I))
    dt = np.dtype(dtype)
    return x.astype(dt), {n: p.astype(dt) for n, p in params.items()}

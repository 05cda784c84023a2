"""Layers, losses and training utilities, with PyTorch's names, shapes and calling conventions.

Train a small LSTM to recall the first input of a sequence, then look at how
strongly the loss reaches back to each time step::

    import numpy as np
    import tinybptt as tb
    from tinybptt import nn, optim
    from tinybptt.nn import functional as F

    nn.manual_seed(0)
    T, B, I, H = 10, 16, 3, 16
    lstm, head = nn.LSTM(I, H, forget_bias=1.0), nn.Linear(H, I)
    params = lstm.parameters() + head.parameters()
    opt = optim.Adam(params, lr=0.02)
    rng = np.random.default_rng(0)
    for it in range(300):
        x = rng.standard_normal((T, B, I))
        out, (h_n, c_n) = lstm(x)              # out (T, B, H)
        loss = F.mse_loss(head(h_n[-1]), x[0])  # recall the first input at the end
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    print("loss", loss.item())
    print("dL/dh_t norms", np.round(lstm.grad_trace.norms()[0], 4))   # (num_layers, T) -> layer 0

``mode="ops"`` builds the same LSTM from primitive ops (every gate a node,
tagged with its time step), ``mode="cell"`` makes one node per step, and the
default ``mode="sequence"`` one node per layer; all three agree to rounding.
``checkpoint=k`` trades recomputation for O(T/k + k) activation memory,
``checkpoint="auto", checkpoint_budget=s`` stores at most s states (binomial
checkpointing, ``revolve_sequence``), and
``tinybptt.bptt.truncated_bptt`` trains on long sequences in k1/k2 windows.

Contents: ``Module``, ``Parameter``, ``Linear``, ``Embedding``, ``RNNCell``,
``LSTMCell``, ``GRUCell``, ``RNN``, ``LSTM``, ``GRU``, ``GradTrace``,
``MultiheadAttention`` (PyTorch's), positional encodings, ``AttentionClassifier``,
``functional`` (losses), ``init`` (initialisers, ``manual_seed``), ``utils``
(clipping, ``detach_state``, ``saved_bytes``), ``save``/``load`` (``.npz``).
"""
from . import functional, init, utils  # noqa: F401
from .init import manual_seed  # noqa: F401
from .layers import Embedding, Linear  # noqa: F401
from .module import Module, Parameter, load, save  # noqa: F401
from .attention import (AttentionClassifier, LearnedPositionalEncoding, MultiheadAttention,  # noqa: F401
                        SinusoidalPositionalEncoding, causal_mask)
from .checkpoint import CheckpointStats  # noqa: F401
from .rnn import GRU, LSTM, RNN  # noqa: F401
from .rnn_cells import GRUCell, LSTMCell, RNNCell  # noqa: F401
from .revolve import RevolveStats, revolve_cost, revolve_schedule, revolve_sequence  # noqa: F401
from .trace import GradTrace  # noqa: F401

__all__ = ["Module", "Parameter", "Linear", "Embedding", "RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU",
           "GradTrace", "CheckpointStats", "MultiheadAttention", "AttentionClassifier", "SinusoidalPositionalEncoding",
           "LearnedPositionalEncoding", "causal_mask", "RevolveStats", "revolve_cost", "revolve_schedule",
           "revolve_sequence", "functional", "init", "utils", "save", "load", "manual_seed"]

"""The NumPy reference backend: every kernel written the obvious way.

This module only gathers the backend's functions under one name; they are written
in ``numpy_ops.py`` (matmul, bmm, tanh, sigmoid, relu and their backward passes,
the embedding's backward pass) and ``numpy_rnn.py`` (the RNN, LSTM and GRU cells,
a step and a whole sequence).
The C backend (``kernels/c.py``) exposes the same functions with the same
signatures and must agree with these to rounding.
"""
from .numpy_ops import (bmm, embedding_backward, matmul, relu, relu_backward, sigmoid,  # noqa: F401
                        sigmoid_backward, tanh, tanh_backward)
from .numpy_rnn import seq_backward, seq_forward, step_backward, step_forward  # noqa: F401

NAME = "numpy"

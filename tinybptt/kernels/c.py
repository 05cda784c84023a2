"""The C backend: the same functions as ``kernels/numpy.py``, each validating its
inputs and then making one call into the compiled C library (csrc/).

This module only gathers the backend's functions under one name; they are written
in ``c_ops.py`` (matmul, bmm, tanh, sigmoid, relu and their backward passes, the
embedding's backward pass), ``c_rnn.py`` (the RNN, LSTM and GRU cells, a step and
a whole sequence) and ``c_runtime.py`` (threads, flush-to-zero, build
information), all of which reach C through the binding in ``_ffi.py``.
"""
from .c_ops import (bmm, embedding_backward, matmul, relu, relu_backward, sigmoid,  # noqa: F401
                    sigmoid_backward, tanh, tanh_backward)
from .c_rnn import seq_backward, seq_forward, step_backward, step_forward  # noqa: F401
from .c_runtime import (build_info, get_flush_to_zero, get_num_threads, set_flush_to_zero,  # noqa: F401
                        set_num_threads)

NAME = "c"

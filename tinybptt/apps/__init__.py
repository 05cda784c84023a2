"""The applications built on the library: the ``tinybptt`` command and its subcommands.

``cli``     the ``tinybptt`` command: one parser, one subcommand per application.
``vanish``  watch the gradient shrink through an unrolled RNN, LSTM and GRU.
``train``   train a recurrent model on a long-range task and watch its gradients.
"""

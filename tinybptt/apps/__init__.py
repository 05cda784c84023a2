"""The applications built on the library: the ``tinybptt`` command and its subcommands.

``cli``        the ``tinybptt`` command: one parser, one subcommand per application.
``vanish``     watch the gradient shrink through an unrolled RNN, LSTM and GRU (and not through attention).
``train``      train a recurrent model on a long-range task and watch its gradients while it learns.
``graph``      draw an unrolled graph coloured by the gradient at each node (folded for long unrolls).
``agreement``  subject-verb agreement: which words each model's decision reaches.
``reproduce``  classic results about learning across time, re-run at a laptop's size.

Time steps are t = 0..T-1 (``out[t]`` is h_t); the initial state is t = -1.

Every application module has ``build_parser(parser=None)`` and ``main(argv=None)``;
the helpers below are the options and parsing they share.
"""


def cell_list(text):
    """The cells named in a comma-separated option value: ``"rnn, LSTM"`` -> ``["rnn", "lstm"]``."""
    return [c.strip().lower() for c in text.split(",") if c.strip()]


def add_cell_options(parser, dtype="float32", H=64):
    """The options of the recurrent cell an application builds: --H, --dtype, --nonlinearity, --forget-bias."""
    parser.add_argument("--H", type=int, default=H, help="hidden size (default %d)" % H)
    parser.add_argument("--dtype", default=dtype, choices=("float32", "float64"), help="default %s" % dtype)
    parser.add_argument("--nonlinearity", default="tanh", choices=("tanh", "relu"), help="RNN activation (default tanh)")
    parser.add_argument("--forget-bias", type=float, default=None, help="LSTM forget-gate bias (e.g. 1.0)")


def add_output_options(parser, json_help):
    """``--json FILE`` (what it writes: ``json_help``) and ``--quiet``."""
    parser.add_argument("--json", metavar="FILE", help=json_help)
    parser.add_argument("--quiet", action="store_true", help="no progress display and no periodic lines")


def write_plot(draw, path, lead=""):
    """``draw(path)`` (a figure function) and say so; without matplotlib, say that instead.

    Returns True if the plot was written.  ``lead`` is printed before each message
    (e.g. a blank line)."""
    import sys

    try:
        draw(path)
    except ImportError:
        print(lead + "--plot needs matplotlib (pip install matplotlib, or tinybptt[plot]); no plot written",
              file=sys.stderr)
        return False
    print(lead + "wrote %s" % path)
    return True

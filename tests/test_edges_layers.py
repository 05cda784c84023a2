"""Recurrent layers at the edges of their arguments: ``layer.forward_revolve`` checks its budget
and segment as ``checkpoint="auto"`` does, names the layer, and the layer works afterwards."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinybptt import nn

EDGES = settings(derandomize=True, database=None, deadline=None, max_examples=30)
LAYERS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
BAD_COUNTS = [0, -1, 2.0, 2.5, True, None, "3"]


@EDGES
@given(kind=st.sampled_from(sorted(LAYERS)), what=st.sampled_from(["budget", "segment"]),
       bad=st.sampled_from(BAD_COUNTS))
def test_forward_revolve_refuses_bad_budget_and_segment(kind, what, bad):
    """Before: segment=0 raised ZeroDivisionError, budget=None a TypeError from int(), and
    budget=2.0 / True / "3" and segment=2.5 / True were accepted (cut or converted silently),
    where the constructor's checkpoint="auto", checkpoint_budget= refuses them."""
    if what == "segment" and bad is None:
        bad = 0  # segment=None means the default segment
    layer = LAYERS[kind](3, 4, generator=0)
    x = np.random.default_rng(0).standard_normal((7, 2, 3))
    kwargs = {"budget": 2, "segment": None}
    kwargs[what] = bad
    with pytest.raises(ValueError) as err:
        layer.forward_revolve(x, **kwargs)
    msg = str(err.value)
    assert msg.startswith("%s(input_size=3, hidden_size=4): %s must be an integer >= 1, got %r"
                          % (kind, what, bad))
    out, state = layer.forward_revolve(x, budget=2, segment=3)  # the next valid call is full BPTT's result
    ref, ref_state = layer(x)
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-12, atol=1e-15)  # C: another GEMM blocking
    if kind == "LSTM":
        state, ref_state = state[1], ref_state[1]
    np.testing.assert_allclose(state.data, ref_state.data, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("call,message", [
    (lambda: nn.attention.causal_mask(-1), "causal_mask: L must be an integer >= 0, got -1"),
    (lambda: nn.attention.causal_mask(2.5), "causal_mask: L must be an integer >= 0, got 2.5"),
    (lambda: nn.attention.causal_mask(3, -2), "causal_mask: S must be an integer >= 0, got -2"),
    (lambda: nn.attention.sinusoidal_table(-1, 4), "sinusoidal_table: length must be an integer >= 0, got -1"),
    (lambda: nn.attention.sinusoidal_table(3, 0), "sinusoidal_table: embed_dim must be an integer >= 1, got 0"),
])
def test_attention_helpers_name_bad_sizes(call, message):
    """Before: NumPy's "negative dimensions are not allowed" or "'float' object cannot be
    interpreted as an integer"; embed_dim=0 gave an empty table."""
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_sinusoidal_table_refuses_integer_dtypes():
    """Before: dtype=int rounded every sine and cosine to -1, 0 or 1, silently."""
    from tinybptt.errors import DTypeError
    with pytest.raises(DTypeError, match="^sinusoidal_table: dtype must be float32 or float64, got int64"):
        nn.attention.sinusoidal_table(3, 4, dtype=np.int64)
    table = nn.attention.sinusoidal_table(3, 4, dtype=np.float32)
    assert table.dtype == np.float32
    np.testing.assert_allclose(table[1], [np.sin(1.0), np.cos(1.0), np.sin(0.01), np.cos(0.01)], rtol=1e-6)


def test_assigning_an_array_to_a_parameter_is_refused_and_keeps_the_parameter():
    """Before: ``lstm.weight_hh_l0 = array`` silently replaced the Parameter by a plain attribute:
    it vanished from parameters() (so from the optimiser and state_dict) and the next forward
    failed with KeyError 'weight_hh_l0'."""
    lstm = nn.LSTM(3, 4, generator=0)
    w = lstm.weight_hh_l0
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    ref, _ = lstm(x)
    with pytest.raises(TypeError, match="^LSTM: cannot assign a ndarray to the parameter 'weight_hh_l0'; "
                                        "assign a Parameter or None"):
        lstm.weight_hh_l0 = np.zeros((16, 4))
    assert lstm.weight_hh_l0 is w and any(p is w for p in lstm.parameters())
    np.testing.assert_array_equal(lstm(x)[0].data, ref.data)
    lstm.weight_hh_l0 = nn.Parameter(np.zeros((16, 4)))  # a Parameter is still accepted
    assert "weight_hh_l0" in lstm.state_dict() and not np.array_equal(lstm(x)[0].data, ref.data)


def test_assigning_a_non_module_to_a_sub_module_is_refused():
    clf = nn.AttentionClassifier(3, 4, embed_dim=8, num_heads=2, generator=0)
    name, sub = next(iter(clf._modules.items()))
    with pytest.raises(TypeError, match="^AttentionClassifier: cannot assign a int to the sub-module %r" % name):
        setattr(clf, name, 3)
    assert getattr(clf, name) is sub


@pytest.mark.parametrize("name", ["a.b", "", 3])
def test_parameter_names_that_state_dict_could_not_hold_are_refused(name):
    """Before: a name with '.' made a state_dict key that looks like a sub-module's parameter."""
    lin = nn.Linear(2, 3, generator=0)
    with pytest.raises(KeyError, match="the name must be a non-empty string without '.'"):
        lin.register_parameter(name, nn.Parameter(np.ones(2)))
    assert sorted(lin.state_dict()) == ["bias", "weight"]

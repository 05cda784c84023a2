"""Where initial weights come from: ``generator=`` on the initialisers and the layer constructors.

None draws from the global generator (``nn.manual_seed``); an int seed is a fresh
``numpy.random.default_rng(seed)``; a Generator is drawn from and advanced.  Models
built in several threads at once, each from its own seed or generator, get exactly
the weights they get when built alone, and leave the global generator untouched.
"""
import threading

import numpy as np
import pytest

from tinybptt import nn
from tinybptt.nn import init

LAYERS = {
    "Linear": lambda g: nn.Linear(5, 3, generator=g),
    "Embedding": lambda g: nn.Embedding(7, 3, generator=g),
    "RNNCell": lambda g: nn.RNNCell(3, 4, nonlinearity="relu", generator=g),
    "LSTMCell": lambda g: nn.LSTMCell(3, 4, generator=g),
    "GRUCell": lambda g: nn.GRUCell(3, 4, generator=g),
    "RNN": lambda g: nn.RNN(3, 4, num_layers=2, generator=g),
    "LSTM": lambda g: nn.LSTM(3, 4, num_layers=2, forget_bias=1.0, generator=g),
    "GRU": lambda g: nn.GRU(3, 4, num_layers=2, bias=False, generator=g),
    "MultiheadAttention": lambda g: nn.MultiheadAttention(4, 2, generator=g),
    "AttentionClassifier": lambda g: nn.AttentionClassifier(3, 2, embed_dim=4, num_heads=2, positional="learned",
                                                            max_len=5, generator=g),
}


def weights(module):
    return {name: p.data.copy() for name, p in module.named_parameters()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def global_state():
    return init.get_rng().bit_generator.state


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_a_seed_gives_the_same_weights_as_manual_seed_and_leaves_the_global_generator_alone(name):
    make = LAYERS[name]
    nn.manual_seed(123)
    before = global_state()
    seeded = weights(make(7))
    assert global_state() == before, "a seeded constructor drew from the global generator"
    assert_same(seeded, weights(make(7)))
    assert_same(seeded, weights(make(np.random.default_rng(7))))
    nn.manual_seed(7)
    assert_same(seeded, weights(make(None)))  # the seed argument is the manual_seed path, minus the global
    other = weights(make(8))
    assert any(not np.array_equal(seeded[k], other[k]) for k in seeded if seeded[k].size > 1
               and np.ptp(seeded[k]) > 0), "seeds 7 and 8 gave the same weights"


def test_linear_and_lstm_draw_pytorchs_uniform_in_parameter_order():
    """Expected values from NumPy directly: U(-k, k) with k = 1/sqrt(fan), parameters in order."""
    rng = np.random.default_rng(5)
    k = 1 / np.sqrt(5)
    w, b = rng.uniform(-k, k, (3, 5)), rng.uniform(-k, k, 3)
    lin = nn.Linear(5, 3, generator=5)
    np.testing.assert_array_equal(lin.weight.data, w)
    np.testing.assert_array_equal(lin.bias.data, b)

    rng = np.random.default_rng(9)
    k = 1 / np.sqrt(4)
    expected = {}
    for l, n_in in enumerate((3, 4)):
        for name, shape in [("weight_ih", (16, n_in)), ("weight_hh", (16, 4)), ("bias_ih", (16,)),
                            ("bias_hh", (16,))]:
            expected["%s_l%d" % (name, l)] = rng.uniform(-k, k, shape)
    assert_same(weights(nn.LSTM(3, 4, num_layers=2, generator=9)), expected)


def test_one_generator_passed_to_several_layers_gives_each_its_own_numbers():
    g = np.random.default_rng(3)
    a, b = nn.Linear(4, 4, generator=g), nn.Linear(4, 4, generator=g)
    assert not np.array_equal(a.weight.data, b.weight.data)
    nn.manual_seed(3)  # the same two draws from the global generator
    np.testing.assert_array_equal(nn.Linear(4, 4).weight.data, a.weight.data)
    np.testing.assert_array_equal(nn.Linear(4, 4).weight.data, b.weight.data)


INITIALISERS = {
    "uniform_": lambda t, g: init.uniform_(t, -2.0, 3.0, generator=g),
    "normal_": lambda t, g: init.normal_(t, 1.0, 0.5, generator=g),
    "xavier_uniform_": lambda t, g: init.xavier_uniform_(t, generator=g),
    "xavier_normal_": lambda t, g: init.xavier_normal_(t, gain=2.0, generator=g),
    "orthogonal_": lambda t, g: init.orthogonal_(t, gates=4, generator=g),
    "kaiming_uniform_": lambda t, g: init.kaiming_uniform_(t, generator=g),
}


@pytest.mark.parametrize("name", sorted(INITIALISERS))
def test_initialisers_take_a_seed_or_a_generator(name):
    fill = INITIALISERS[name]
    nn.manual_seed(0)
    before = global_state()
    a = fill(np.empty((12, 3)), 11)
    assert global_state() == before
    np.testing.assert_array_equal(a, fill(np.empty((12, 3)), 11))
    np.testing.assert_array_equal(a, fill(np.empty((12, 3)), np.random.default_rng(11)))
    nn.manual_seed(11)
    np.testing.assert_array_equal(a, fill(np.empty((12, 3)), None))
    assert not np.array_equal(a, fill(np.empty((12, 3)), 12))


def test_uniform_from_a_seed_is_numpys_uniform():
    np.testing.assert_array_equal(init.uniform_(np.empty((2, 3)), -1.0, 1.0, generator=4),
                                  np.random.default_rng(4).uniform(-1.0, 1.0, (2, 3)))


def test_orthogonal_gate_blocks_from_one_seed_differ():
    """A seed is resolved once per call: the four gate blocks are four different matrices."""
    w = init.orthogonal_(np.empty((12, 3)), gates=4, generator=1)
    blocks = [w[3 * k:3 * (k + 1)] for k in range(4)]
    for k, blk in enumerate(blocks):
        np.testing.assert_allclose(blk @ blk.T, np.eye(3), atol=1e-12)
        for other in blocks[k + 1:]:
            assert not np.allclose(blk, other)


def _build(seed):
    """A small model from one generator: an LSTM, an attention layer and a head."""
    g = np.random.default_rng(seed)
    parts = [nn.LSTM(3, 8, num_layers=2, generator=g), nn.MultiheadAttention(8, 2, generator=g),
             nn.Linear(8, 2, generator=g), nn.GRUCell(2, 3, generator=seed)]
    return [weights(p) for p in parts]


def test_models_built_in_threads_get_exactly_what_they_get_alone():
    seeds = [11, 12, 13, 14]
    repeats = 15  # many builds per thread, so that the threads' draws interleave
    alone = {s: _build(s) for s in seeds}
    nn.manual_seed(0)
    before = global_state()
    results = {s: [] for s in seeds}
    barrier = threading.Barrier(len(seeds))
    errors = []

    def work(seed):
        try:
            barrier.wait()
            for _ in range(repeats):
                results[seed].append(_build(seed))
        except Exception as exc:  # reported below: an exception in a thread would otherwise be lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert global_state() == before, "seeded builds in threads drew from the global generator"
    for s in seeds:
        assert len(results[s]) == repeats
        for built in results[s]:
            for got, want in zip(built, alone[s]):
                assert_same(got, want)
    assert not np.array_equal(alone[11][0]["weight_ih_l0"], alone[12][0]["weight_ih_l0"])

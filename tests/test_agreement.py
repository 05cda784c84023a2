"""The agreement grammar (exact distance and attractor counts, labels, closed vocabulary) and its app."""
import json

import numpy as np
import pytest

from tinybptt.errors import ShapeError
from tinybptt.tasks import agreement as A

# The word lists, read straight from the shipped file: the counts below are checked against
# these, not against the generator's own bookkeeping.
with open(A.VOCAB_FILE) as _f:
    SPEC = json.load(_f)
NOUN_NUMBER = {pair[k]: k for pair in SPEC["nouns"] for k in (0, 1)}
VERB_NUMBER = {pair[k]: k for pair in SPEC["verbs"] for k in (0, 1)}


@pytest.fixture(scope="module")
def g():
    return A.load_grammar()


def recount(words):
    """(subject, verb, label, distance, attractors) recomputed from the words alone."""
    subject = next(i for i, w in enumerate(words) if w in NOUN_NUMBER)
    verb = next(i for i, w in enumerate(words) if w in VERB_NUMBER)
    between = [w for w in words[subject + 1:verb] if w in NOUN_NUMBER]
    attractors = sum(1 for w in between if NOUN_NUMBER[w] != NOUN_NUMBER[words[subject]])
    return subject, verb, VERB_NUMBER[words[verb]], verb - subject - 1, attractors


def test_distance_and_attractors_exactly_as_requested(g):
    rng = np.random.default_rng(0)
    checked = 0
    for d in range(0, 25):
        for a in range(0, 6):
            if not g.feasible(d, a):
                continue
            for _ in range(3):
                s = g.sentence(d, a, rng)
                subject, verb, label, dist, attr = recount(s.words)
                assert (dist, attr) == (d, a), s.text()
                assert (s.distance, s.attractors, s.subject, s.verb) == (d, a, subject, verb)
                # the verb agrees with the subject, and the label says so
                assert label == NOUN_NUMBER[s.words[subject]] == s.label
                # nothing between subject and verb is a number-marked verb: only the nouns carry number
                assert not any(w in VERB_NUMBER for w in s.words[subject + 1:verb])
                assert s.words[-1] == "."
                checked += 1
    assert checked > 150


def test_feasibility(g):
    # each attractor needs a phrase of >= 3 words; 0..2 words fit only adverbs
    assert g.feasible(0, 0) and g.feasible(2, 0) and g.feasible(3, 1) and g.feasible(20, 4)
    assert not g.feasible(2, 1) and not g.feasible(5, 2) and not g.feasible(-1, 0)
    with pytest.raises(ValueError, match="distance 2 with 1 attractors"):
        g.sentence(2, 1, 0)


def test_both_numbers_and_forced_number(g):
    rng = np.random.default_rng(1)
    labels = {g.sentence(6, 1, rng).label for _ in range(40)}
    assert labels == {0, 1}
    assert all(g.sentence(9, 2, rng, number=A.PLURAL).label == A.PLURAL for _ in range(10))


def test_vocabulary_is_closed_and_round_trips(g):
    rng = np.random.default_rng(2)
    listed = {w for pair in SPEC["nouns"] + SPEC["verbs"] for w in pair}
    for _ in range(200):
        s = g.sentence(int(rng.integers(0, 21)), 0, rng)
        assert all(w in g.index for w in s.words)
        assert g.decode(g.encode(s.words)) == s.words
    assert listed <= set(g.words)
    assert g.words[0] == A.PAD and len(set(g.words)) == len(g.words) == g.vocab_size
    with pytest.raises(ValueError, match="'zebra'"):
        g.encode(["the", "zebra"])


def test_deterministic_given_a_seed(g):
    a = g.batch(32, 7)
    b = g.batch(32, 7)
    c = g.batch(32, 8)
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.labels, b.labels)
    assert [s.text() for s in a.sentences] == [s.text() for s in b.sentences]
    assert [s.text() for s in a.sentences] != [s.text() for s in c.sentences]


def test_batch_layout(g):
    b = g.batch(50, 3, distances=(0, 12), max_attractors=2)
    T, B = b.ids.shape
    assert B == 50 and T == max(s.verb for s in b.sentences)
    for k, s in enumerate(b.sentences):
        assert b.positions[k] == s.verb - 1
        assert list(b.ids[:s.verb, k]) == list(g.encode(s.words[:s.verb]))  # the prefix, verb excluded
        assert np.all(b.ids[s.verb:, k] == 0)  # then padding
        assert b.labels[k] == s.label and b.distance[k] == s.distance and b.attractors[k] == s.attractors
    assert b.distance.min() >= 0 and b.distance.max() <= 12 and b.attractors.max() <= 2
    with pytest.raises(ShapeError):
        g.batch(0, 0)


def test_batch_with_pairs_and_weights(g):
    b = g.batch(4, 0, pairs=[(3, 1), (0, 0), (12, 3), (7, 2)])
    assert list(b.distance) == [3, 0, 12, 7] and list(b.attractors) == [1, 0, 3, 2]
    only_zero = g.batch(60, 0, attractor_weights=(1.0, 0.0, 0.0))
    assert np.all(only_zero.attractors == 0)
    grid = g.grid(2, 0, distances=range(0, 7), attractors=range(0, 3))
    pairs = {(int(d), int(a)) for d, a in zip(grid.distance, grid.attractors)}
    assert pairs == {(d, a) for d in range(7) for a in range(3) if g.feasible(d, a)}


def test_parse_counts_a_sentence_of_your_own(g):
    s = g.parse("The cat near the dogs that the farmer saw sits on the mat.")
    # the(0) cat(1) near the dogs(4) that the farmer(7) saw sits(9)
    assert (s.subject, s.verb, s.label, s.distance, s.attractors, s.nouns) == (1, 9, 0, 7, 1, [4, 7])
    d = g.parse("The cat, which had been missing and had finally been found near the old barn by the river, "
                "sits on the mat.")
    assert (d.distance, d.attractors, d.label, d.words[d.verb]) == (18, 0, 0, "sits")
    with pytest.raises(ValueError, match="main verb"):
        g.parse("the cat near the dogs")


def test_accuracy_by():
    acc = A.accuracy_by([True, False, True, True], [0, 0, 2, 2])
    assert acc == {0: (0.5, 2), 2: (1.0, 2)}
    with pytest.raises(ShapeError):
        A.accuracy_by([True], [0, 1])


# --------------------------------------------------------------------------- models and the app


def test_models_and_a_short_training_run(g):
    from tinybptt.apps import agreement as ag

    pool = g.batch(1500, 0, distances=(0, 8), max_attractors=2)
    test = g.grid(6, 1, distances=range(0, 9), attractors=range(0, 3))
    model = ag.build_model("gru", g.vocab_size, embed_dim=16, hidden_size=24, seed=0)
    ids, pos, labels = ag._slice(test, np.arange(5))
    assert model(ids, pos).shape == (5, 2)
    before = ag.evaluate(model, test)["accuracy"]
    ag.train_model(model, pool, steps=150, batch=32, lr=1e-2, progress=False)
    after = ag.evaluate(model, test)
    assert after["accuracy"] > 0.9 and after["accuracy"] > before
    assert set(after["by_attractors"]) == {"0", "1", "2"}
    with pytest.raises(ValueError, match="unknown model"):
        ag.build_model("transformer", g.vocab_size)


def test_app_runs_small(tmp_path, capsys):
    from tinybptt.apps import agreement as ag

    out = tmp_path / "a.json"
    png = tmp_path / "a.png"
    rc = ag.main(["--models", "rnn,lstm", "--steps", "5", "--pool", "200", "--per-cell", "1", "--quiet",
                  "--json", str(out), "--plot", str(png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "test accuracy by distance" in text and "lstm after" in text and "'sits'" in text
    data = json.loads(out.read_text())
    assert set(data["models"]) == {"rnn", "lstm"}
    m = data["models"]["rnn"]
    assert len(m["before"]["log10"]) == data["sentence"]["verb"] and "verdict" in m
    assert all("monitor" in h for h in m["history"]) and "steps_to_90" in m
    assert png.stat().st_size > 1000


def test_steps_to_learn():
    from tinybptt.apps.agreement import steps_to_learn

    h = [{"step": 50, "monitor": 0.5}, {"step": 100, "monitor": 0.95}, {"step": 150, "monitor": 0.8}]
    assert steps_to_learn(h) == 100 and steps_to_learn(h, 0.99) is None and steps_to_learn([{"step": 50}]) is None


def test_app_rejects_unknown_words_and_models(capsys):
    from tinybptt.apps import agreement as ag

    assert ag.main(["--sentence", "the zebra sits", "--steps", "1"]) == 2
    assert "'zebra'" in capsys.readouterr().err
    assert ag.main(["--models", "rnn,banana", "--steps", "1"]) == 2


def test_attention_model_when_available():
    from tinybptt.apps import agreement as ag
    from tinybptt.inspect.connectivity import connectivity

    if not ag.attention_available():
        pytest.skip("tinybptt.nn.attention is not in this build")
    g = A.load_grammar()
    model = ag.build_model("attention", g.vocab_size, embed_dim=8, seed=0)
    b = g.batch(6, 0, distances=(0, 6), max_attractors=1)
    ids, pos, labels = ag._slice(b, np.arange(6))
    logits = model(ids, pos)
    assert logits.shape == (6, 2)
    # each sequence read out at its own step equals reading that sequence alone, cut after its step
    for k in range(6):
        alone = model(ids[: pos[k] + 1, k:k + 1])
        np.testing.assert_allclose(logits.data[k], alone.data[0], rtol=1e-5, atol=1e-6)
    c = connectivity(model, ids[: pos[0] + 1, :1])
    assert c.T == pos[0] + 1 and np.all(np.isfinite(c.log10))

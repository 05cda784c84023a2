"""tinybptt.tasks: shapes, the structure of each task, seeding, and the adding problem's 1/6 baseline."""
import math

import numpy as np
import pytest

from tinybptt import tasks
from tinybptt.errors import ShapeError


def test_adding_problem_structure():
    T, B = 50, 64
    x, y = tasks.adding_problem(T, B, rng=0)
    assert x.shape == (T, B, 2) and y.shape == (B, 1) and x.dtype == np.float64
    marks = x[:, :, 1]
    assert np.all(marks.sum(axis=0) == 2)
    assert np.all(marks[: T // 2].sum(axis=0) == 1) and np.all(marks[T // 2:].sum(axis=0) == 1)
    assert np.all((x[:, :, 0] >= 0) & (x[:, :, 0] < 1))
    for b in range(B):
        idx = np.flatnonzero(marks[:, b])
        assert y[b, 0] == pytest.approx(x[idx, b, 0].sum())


def test_adding_baseline_is_one_sixth_empirically():
    _, y = tasks.adding_problem(20, 200_000, rng=123)
    mse = float(np.mean((y - 1.0) ** 2))
    # standard error of this mean is about 0.0004
    assert mse == pytest.approx(1 / 6, abs=0.003)
    assert tasks.ADDING_BASELINE_MSE == pytest.approx(1 / 6)
    assert float(np.mean(y)) == pytest.approx(1.0, abs=0.005)


def test_seeding_is_deterministic_and_generators_advance():
    a = tasks.adding_problem(10, 4, rng=7)
    b = tasks.adding_problem(10, 4, rng=7)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    g = np.random.default_rng(7)
    c = tasks.adding_problem(10, 4, rng=g)
    d = tasks.adding_problem(10, 4, rng=g)
    assert np.array_equal(c[0], a[0]) and not np.array_equal(c[0], d[0])


def test_copy_memory_structure():
    T, B, K, L = 30, 8, 8, 10
    x, y = tasks.copy_memory(T, B, rng=1, n_symbols=K, length=L)
    assert x.shape == (T + 2 * L, B, K + 2) and y.shape == (T + 2 * L, B) and y.dtype == np.int64
    assert np.all(x.sum(axis=2) == 1)  # one-hot
    ids = x.argmax(axis=2)
    assert np.all((ids[:L] >= 1) & (ids[:L] <= K))
    assert np.all(ids[L:L + T - 1] == 0) and np.all(ids[L + T - 1] == K + 1) and np.all(ids[L + T:] == 0)
    assert np.all(y[:-L] == 0) and np.array_equal(y[-L:], ids[:L])
    assert tasks.copy_memory_baseline(T, K, L) == pytest.approx(L * math.log(K) / (T + 2 * L))


def test_remember_first_structure():
    T, B = 25, 32
    x, y = tasks.remember_first(T, B, rng=2, n_subjects=4)
    vocab = tasks.remember_first_vocab(4)
    assert x.shape == (T, B, len(vocab)) and y.shape == (B,)
    ids = x.argmax(axis=2)
    assert np.array_equal(ids[0], y) and np.all(ids[0] < 4) and np.all(ids[1:] >= 4)
    words = tasks.decode(x, vocab, b=0)
    assert words[0] in tasks.SUBJECTS and all(w in tasks.DISTRACTORS for w in words[1:])
    assert set(np.unique(tasks.remember_first(5, 4000, rng=3)[1])) == {0, 1, 2, 3}


def test_task_table_matches_generators():
    for name, info in tasks.TASKS.items():
        x, y = tasks.make_batch(name, 12, 3, rng=0, dtype=np.float32)
        assert x.shape[2] == info.input_size and x.dtype == np.float32
        if info.loss == "mse":
            assert y.shape == (3, info.output_size)
        else:
            assert int(np.max(y)) < info.output_size
    assert tasks.TASKS["adding"].baseline(100) == pytest.approx(1 / 6)


@pytest.mark.parametrize("fn", [tasks.adding_problem, tasks.copy_memory, tasks.remember_first])
def test_bad_sizes_raise(fn):
    with pytest.raises(ShapeError):
        fn(0, 4)
    with pytest.raises(ShapeError):
        fn(10, 0)
    with pytest.raises(ValueError):
        tasks.make_batch("nope", 10, 2)

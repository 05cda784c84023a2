"""The task generators given odd sizes, seeds and dtypes: an error naming the generator and the
argument (never NumPy's, never a silently truncated batch), and the next valid call works."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinybptt import tasks
from tinybptt.errors import DTypeError, ShapeError
from tinybptt.tasks import agreement

EDGES = settings(derandomize=True, database=None, deadline=None, max_examples=40)
GENERATORS = ["adding_problem", "copy_memory", "remember_first"]
# argument -> (bad values, the error, a phrase the message must hold)
BAD = {
    "T": ([5.0, None, "5", True, np.float64(6.0)], ShapeError, "T must be an integer"),
    "B": ([2.0, True, None, 0], ShapeError, "the batch size B must be an integer >= 1"),
    "rng": (["seed", -1, 1.5], TypeError, "rng must be None, a non-negative integer seed"),
    "dtype": ([np.int64, np.complex128, "int32", np.float16], DTypeError, "dtype must be float32 or float64"),
}


@EDGES
@given(name=st.sampled_from(GENERATORS), arg=st.sampled_from(sorted(BAD)), k=st.integers(0, 4))
def test_bad_size_seed_or_dtype_names_the_generator(name, arg, k):
    """Before: T=5.0 passed the check and failed in NumPy ('float' object cannot be interpreted as
    an integer), B=True and rng='seed' raised NumPy errors, and dtype=int64 returned inputs whose
    uniform values were truncated to 0."""
    values, error, phrase = BAD[arg]
    kwargs = dict(T=12, B=3, rng=0, dtype=np.float64)
    kwargs[arg] = values[k % len(values)]
    fn = getattr(tasks, name)
    with pytest.raises(error) as err:
        fn(**kwargs)
    assert str(err.value).startswith(name + ":") and phrase in str(err.value)
    x, y = fn(T=12, B=3, rng=0, dtype=np.float32)  # the generator still works
    assert x.dtype == np.float32 and x.shape[1] == 3


@pytest.mark.parametrize("kwargs,phrase", [
    (dict(length=0), "length must be an integer >= 1, got 0"),
    (dict(length=2.5), "length must be an integer >= 1, got 2.5"),
    (dict(n_symbols=0), "n_symbols must be an integer >= 1, got 0"),
    (dict(n_symbols=2.5), "n_symbols must be an integer >= 1, got 2.5"),
])
def test_copy_memory_sizes(kwargs, phrase):
    """Before: length=0 failed in a NumPy broadcast, n_symbols=0 in Generator.integers, and
    length=2.5 / n_symbols=2.5 were silently cut to 2."""
    with pytest.raises(ValueError, match="^copy_memory: " + phrase):
        tasks.copy_memory(10, 2, rng=0, **kwargs)
    with pytest.raises(ValueError, match="^copy_memory_baseline: " + phrase):
        tasks.copy_memory_baseline(10, **kwargs)
    x, y = tasks.copy_memory(10, 2, rng=0, n_symbols=3, length=2)
    assert x.shape == (14, 2, 5) and y.shape == (14, 2)


def test_remember_first_n_subjects_must_be_an_integer():
    with pytest.raises(ValueError, match="^remember_first: n_subjects must be an integer >= 2, got 2.5"):
        tasks.remember_first(5, 2, rng=0, n_subjects=2.5)


def test_decode_checks_the_batch_index_and_the_vocabulary():
    x, _ = tasks.remember_first(5, 2, rng=0)
    vocab = tasks.remember_first_vocab()
    with pytest.raises(ShapeError, match=r"^decode: b must be a sequence index of the batch "
                                         r"\(5, 2, 24\) float64, got 5"):
        tasks.decode(x, vocab, b=5)
    with pytest.raises(ShapeError, match=r"^decode: x must be a one-hot batch \(T, B, V\) with V <= len\(vocab\) = 3"):
        tasks.decode(x, vocab[:3])
    assert tasks.decode(x, vocab, b=-1) == tasks.decode(x, vocab, b=1)


def test_agreement_batch_size_and_seed():
    g = agreement.load_grammar()
    with pytest.raises(ShapeError, match="^agreement batch: the batch size B must be an integer >= 1, got 4.0"):
        g.batch(4.0, rng=0)
    with pytest.raises(TypeError, match="^agreement batch: rng must be None"):
        g.batch(4, rng="seed")
    assert len(g.batch(4, rng=0).sentences) == 4

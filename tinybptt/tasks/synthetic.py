"""Long-range synthetic tasks: problems a recurrent network can only solve if gradients survive T steps.

Every generator takes the sequence length ``T``, the batch size ``B`` and a
seed or ``numpy.random.Generator``, and returns NumPy arrays: inputs of shape
(T, B, I) (time first, as the recurrent layers expect) and targets.

``adding_problem``   x (T, B, 2): a random value in [0, 1) and a 0/1 marker at every step,
                     exactly two markers (one in each half); y (B, 1): the sum of the two
                     marked values.  Predicting the mean (1.0) gives MSE Var(u1 + u2) = 1/6.
``copy_memory``      x (T + 2*L, B, K + 2) one-hot: L random symbols, T - 1 blanks, a
                     delimiter, L blanks; y (T + 2*L, B) int: blanks, then the L symbols.
                     Guessing blanks, then uniformly, costs L log K / (T + 2L) cross-entropy.
``remember_first``   x (T, B, V) one-hot: a subject word ("cat", "dog", ...), then T - 1
                     distractor words; y (B,) int: which subject came first.  Chance
                     accuracy 1/K, cross-entropy log K.

``TASKS[name]`` describes each task for ``tinybptt train`` (input size, output size,
loss, what the baseline is), and ``make_batch(name, T, B, rng)`` draws a batch.
"""
import math
from dataclasses import dataclass

import numpy as np

from ..autograd import float_dtype
from ..errors import ShapeError, describe, integer_at_least, is_index


def _rng(name, seed_or_rng):
    """A numpy Generator from ``seed_or_rng`` (None, a seed, or a Generator), or an error naming the task."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    try:
        return np.random.default_rng(seed_or_rng)
    except (TypeError, ValueError):
        raise TypeError("%s: rng must be None, a non-negative integer seed or a numpy.random.Generator, got %r"
                        % (name, seed_or_rng)) from None


def _check(name, T, B, dtype, min_T=2):
    """``(T, B, dtype)`` checked: sizes are integers, the dtype float32 or float64 (an integer dtype
    would truncate the inputs, a complex one no layer takes)."""
    return (integer_at_least(name, "T", T, min_T, ShapeError), integer_at_least(name, "the batch size B", B, 1, ShapeError), float_dtype(name, dtype))


def adding_problem(T, B, rng=None, dtype=np.float64):
    """The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015's form).

    Returns ``x`` (T, B, 2) with x[:, :, 0] uniform in [0, 1) and x[:, :, 1] the marker
    (1 at exactly two steps: one in the first half, one in the second), and ``y`` (B, 1),
    the sum of the two marked values.
    """
    T, B, dtype = _check("adding_problem", T, B, dtype)
    g = _rng("adding_problem", rng)
    x = np.zeros((T, B, 2), dtype=dtype)
    x[:, :, 0] = g.random((T, B))
    half = T // 2
    first = g.integers(0, half, size=B)
    second = g.integers(half, T, size=B)
    cols = np.arange(B)
    x[first, cols, 1] = 1.0
    x[second, cols, 1] = 1.0
    y = (x[first, cols, 0] + x[second, cols, 0]).reshape(B, 1).astype(dtype)
    return x, y


#: MSE of always predicting 1.0 on the adding problem: Var(U1 + U2) = 2/12
ADDING_BASELINE_MSE = 1.0 / 6.0


def copy_memory(T, B, rng=None, n_symbols=8, length=10, dtype=np.float64):
    """The copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016's form).

    Symbols are 1..n_symbols, 0 is the blank and n_symbols + 1 the delimiter.  The
    sequence has ``T + 2*length`` steps: ``length`` symbols, ``T - 1`` blanks, the
    delimiter, then ``length`` blanks during which the network must output the symbols.
    Returns ``x`` one-hot (T + 2L, B, n_symbols + 2) and ``y`` (T + 2L, B) int64 targets.
    """
    T, B, dtype = _check("copy_memory", T, B, dtype, min_T=1)
    L, K = _copy_sizes("copy_memory", n_symbols, length)
    g = _rng("copy_memory", rng)
    total = T + 2 * L
    seq = g.integers(1, K + 1, size=(L, B))
    ids = np.zeros((total, B), dtype=np.int64)
    ids[:L] = seq
    ids[L + T - 1] = K + 1
    y = np.zeros((total, B), dtype=np.int64)
    y[-L:] = seq
    x = np.zeros((total, B, K + 2), dtype=dtype)
    np.put_along_axis(x, ids[:, :, None], 1.0, axis=2)
    return x, y


def copy_memory_baseline(T, n_symbols=8, length=10):
    """Cross-entropy per step of the memoryless strategy: blanks, then uniform over the symbols."""
    L, K = _copy_sizes("copy_memory_baseline", n_symbols, length)
    return L * math.log(K) / (integer_at_least("copy_memory_baseline", "T", T, 1, ShapeError) + 2 * L)


def _copy_sizes(name, n_symbols, length):
    """``(length, n_symbols)`` of the copy task, each an integer >= 1."""
    return integer_at_least(name, "length", length, 1), integer_at_least(name, "n_symbols", n_symbols, 1)


SUBJECTS = ("cat", "dog", "bird", "fish", "horse", "mouse", "goat", "owl")
DISTRACTORS = ("the", "a", "that", "sat", "on", "mat", "quietly", "near", "old", "red", "house", "and",
               "was", "warm", "by", "window", "sun", "all", "day", "long")


def remember_first(T, B, rng=None, n_subjects=4, dtype=np.float64):
    """Recall the first word after ``T - 1`` distractors: "cat the sat on a mat ... -> cat".

    The vocabulary is ``SUBJECTS[:n_subjects] + DISTRACTORS``; step 0 holds a subject,
    every later step a distractor word.  Returns ``x`` one-hot (T, B, V) and ``y`` (B,)
    int64, the index of the subject (0..n_subjects-1).
    """
    T, B, dtype = _check("remember_first", T, B, dtype, min_T=1)
    if integer_at_least("remember_first", "n_subjects", n_subjects, 2) > len(SUBJECTS):
        raise ValueError("remember_first: n_subjects must be in 2..%d, got %r" % (len(SUBJECTS), n_subjects))
    g = _rng("remember_first", rng)
    V = n_subjects + len(DISTRACTORS)
    ids = np.empty((T, B), dtype=np.int64)
    y = g.integers(0, n_subjects, size=B)
    ids[0] = y
    ids[1:] = n_subjects + g.integers(0, len(DISTRACTORS), size=(T - 1, B))
    x = np.zeros((T, B, V), dtype=dtype)
    np.put_along_axis(x, ids[:, :, None], 1.0, axis=2)
    return x, y.astype(np.int64)


def remember_first_vocab(n_subjects=4):
    """The words behind the one-hot indices of ``remember_first``."""
    return list(SUBJECTS[:n_subjects]) + list(DISTRACTORS)


def decode(x, vocab, b=0):
    """The words of sequence ``b`` of a one-hot batch ``x`` (T, B, V)."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] > len(vocab):
        raise ShapeError("decode: x must be a one-hot batch (T, B, V) with V <= len(vocab) = %d, got %s"
                         % (len(vocab), describe(x)))
    if not is_index(b, x.shape[1]):
        raise ShapeError("decode: b must be a sequence index of the batch %s, got %r" % (describe(x), b))
    return [vocab[k] for k in x[:, b].argmax(axis=1)]


@dataclass(frozen=True)
class TaskInfo:
    """How ``tinybptt train`` sets up a task."""

    name: str
    input_size: int
    output_size: int
    loss: str  # "mse" (last step), "ce_last" (class at the last step) or "ce_all" (class at every step)
    baseline_name: str
    description: str

    def baseline(self, T):
        """The score of the best memoryless strategy (MSE, or cross-entropy per prediction)."""
        if self.name == "adding":
            return ADDING_BASELINE_MSE
        if self.name == "copy":
            return copy_memory_baseline(T)
        return math.log(4)


TASKS = {
    "adding": TaskInfo("adding", 2, 1, "mse", "MSE of predicting 1 (=1/6)",
                       "sum of the two marked values among T random numbers"),
    "copy": TaskInfo("copy", 10, 9, "ce_all", "cross-entropy of blanks then a uniform guess",
                     "reproduce 10 symbols after T blanks"),
    "first": TaskInfo("first", 4 + len(DISTRACTORS), 4, "ce_last", "cross-entropy of a uniform guess (log 4)",
                      "name the first word after T-1 distractor words"),
}


def make_batch(name, T, B, rng=None, dtype=np.float64):
    """Draw a batch of task ``name`` ("adding", "copy" or "first"): (x, y)."""
    if name == "adding":
        return adding_problem(T, B, rng, dtype=dtype)
    if name == "copy":
        return copy_memory(T, B, rng, dtype=dtype)
    if name == "first":
        return remember_first(T, B, rng, dtype=dtype)
    raise ValueError("unknown task %r; choose one of %s" % (name, sorted(TASKS)))

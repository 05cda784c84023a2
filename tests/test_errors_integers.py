"""What counts as an integer size, count or index: one definition in tinybptt.errors, used everywhere.

An int or a NumPy integer is one; a bool is not (``True`` would pass as 1), nor a
float such as 2.0.  Each check once had its own copy of this rule, and one copy
(``num_layers``) let ``True`` through as one layer.
"""
import numpy as np
import pytest

import tinybptt as tb
from tinybptt import factories
from tinybptt import nn
from tinybptt.errors import ShapeError, integer_at_least, is_index, is_integer, is_integer_at_least


@pytest.mark.parametrize("v", [0, 3, -2, np.int8(3), np.uint64(7), np.int64(-1)])
def test_ints_and_numpy_integers_are_integers(v):
    assert is_integer(v)


@pytest.mark.parametrize("v", [True, False, np.bool_(True), 2.0, np.float32(1), "3", None, 1 + 0j, [1]])
def test_bools_floats_and_others_are_not(v):
    assert not is_integer(v)
    assert not is_integer_at_least(v, 0)
    assert not is_index(v, 5)


def test_bounds():
    assert is_integer_at_least(2, 2) and not is_integer_at_least(1, 2)
    assert [v for v in range(-7, 7) if is_index(v, 5)] == list(range(-5, 5))
    assert not is_index(0, 0)
    assert integer_at_least("f", "n", np.int16(4), 1) == 4 and type(integer_at_least("f", "n", np.int16(4), 1)) is int
    with pytest.raises(ShapeError, match=r"^f: n must be an integer >= 1, got True$"):
        integer_at_least("f", "n", True, 1, ShapeError)


def test_the_callers_refuse_a_bool():
    with pytest.raises(ValueError, match="num_layers must be an integer >= 1, got True"):
        nn.GRU(2, 3, num_layers=True)
    with pytest.raises(ValueError, match="input_size must be an integer >= 1, got True"):
        nn.RNNCell(True, 3)
    with pytest.raises(ShapeError, match="transpose: cannot swap dims True and 0"):
        tb.tensor(np.zeros((2, 3))).transpose(True, 0)
    with pytest.raises(ShapeError, match="the shape must be ints >= 0"):
        factories.zeros(2, True)

"""The in-place gradient sums of a backward pass write only into arrays that pass made.

``backprop._InPlaceSums`` remembers, by id, the sums it allocated.  A leaf's first
gradient is copied; the copy, not the array it was copied from, is the pass's own.  When
the wrong id was remembered, an array that later reused the freed id (a read-only
broadcast view, or a gradient some node shares with another input) was taken for one
of the pass's sums and written into: "output array is read-only" from the torch-oracle
fuzzer, or a silently changed gradient.
"""
import numpy as np

from tinybptt.backprop import _InPlaceSums


def test_the_copy_of_a_leafs_first_gradient_is_what_is_remembered():
    sums = _InPlaceSums()
    g = np.ones(3)
    total = sums.add(None, g, keep=True)
    assert total is not g and np.shares_memory(total, g) is False
    assert sums.add(total, np.ones(3)) is total  # the pass's own sum: accumulated in place
    np.testing.assert_array_equal(total, [2.0, 2.0, 2.0])


def test_an_array_the_pass_did_not_make_is_never_written_into():
    """``g`` stands for any later array at the address (id) of the leaf's first gradient."""
    sums = _InPlaceSums()
    g = np.ones(3)
    sums.add(None, g, keep=True)
    g.flags.writeable = False  # e.g. a read-only broadcast view, as Sum's backward makes
    out = sums.add(g, np.full(3, 2.0))
    assert out is not g
    np.testing.assert_array_equal(out, [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(g, [1.0, 1.0, 1.0])
    shared = np.ones(3)  # a gradient a node also gave to another input: writable, and not ours
    sums.add(None, shared, keep=True)
    out = sums.add(shared, np.ones(3))
    assert out is not shared
    np.testing.assert_array_equal(shared, [1.0, 1.0, 1.0])

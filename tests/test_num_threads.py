"""The thread count: every bad argument is a clear error, and no count crashes the kernels.

``set_num_threads(100000)`` followed by a 300 x 300 matmul used to kill the
process (OpenMP sets up a team's threads on the caller's stack); thread counts
are now checked in Python (1 to 256) and clamped in C.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import tinybptt as tb
from tinybptt import kernels
from tinybptt.kernels.validate import MAX_THREADS

needs_c = pytest.mark.skipif(kernels.c_backend is None, reason="the C backend is not built")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def restore_threads():
    before = tb.get_num_threads()
    yield
    tb.set_num_threads(before)


@pytest.mark.parametrize("bad", [100000, 2**40, MAX_THREADS + 1, 0, -1, -2**40])
def test_out_of_range_counts_raise_value_error(bad, restore_threads):
    before = tb.get_num_threads()
    with pytest.raises(ValueError, match=r"set_num_threads: n must be between 1 and %d.*got %d" % (MAX_THREADS, bad)):
        tb.set_num_threads(bad)
    assert tb.get_num_threads() == before  # nothing changed


@pytest.mark.parametrize("bad", [2.0, 2.5, float("nan"), True, np.bool_(True), "4", None, [2], np.float64(2)])
def test_non_integers_raise_type_error(bad, restore_threads):
    with pytest.raises(TypeError, match=r"set_num_threads: n must be an int .*got %s" % type(bad).__name__):
        tb.set_num_threads(bad)


@needs_c
@pytest.mark.parametrize("n", [1, 2, np.int64(3), MAX_THREADS])
def test_valid_counts_are_kept_and_the_kernels_stay_right(n, restore_threads):
    tb.set_num_threads(n)
    assert tb.get_num_threads() == int(n)
    rng = np.random.default_rng(int(n))
    a = rng.standard_normal((300, 300)).astype(np.float32)
    np.testing.assert_allclose(kernels.c_backend.matmul(a, a), a.astype(np.float64) @ a, rtol=1e-4, atol=1e-3)
    x, h0 = rng.standard_normal((20, 16, 64)), np.zeros((16, 128))
    w = [0.1 * rng.standard_normal(s) for s in ((512, 64), (512, 128), (512,), (512,))]
    out_c = kernels.c_backend.seq_forward("lstm", x, h0, h0, *w)[0]
    out_n = kernels.numpy_backend.seq_forward("lstm", x, h0, h0, *w)[0]
    np.testing.assert_allclose(out_c, out_n, rtol=1e-10, atol=1e-12)


@needs_c
def test_the_raw_c_call_clamps_a_huge_count():
    """In a child process, so that a regression fails this test instead of killing the run."""
    code = ("import numpy as np\n"
            "from tinybptt.kernels import c\n"
            "from tinybptt.kernels._ffi import lib\n"
            "lib.tb_set_num_threads(100000)\n"
            "assert lib.tb_get_num_threads() == lib.TB_MAX_THREADS == %d\n"
            "a = np.random.default_rng(0).standard_normal((300, 300)).astype(np.float32)\n"
            "np.testing.assert_allclose(c.matmul(a, a), a.astype(np.float64) @ a, rtol=1e-4, atol=1e-3)\n"
            "print('ok')\n" % MAX_THREADS)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stdout, r.stderr[-2000:])

"""For tests only: make the C kernels' scratch allocations fail on purpose.

The C library counts every request a kernel makes for scratch memory (the one
allocator, csrc/runtime.c).  Inside ``failing_allocation(n)`` the first ``n``
requests succeed and the next one fails, once, as if the machine were out of
memory; the kernel must then release what it took and return an error, which
the binding raises as a MemoryError naming the op, and the next call must work.
tests/test_faults.py walks n = 0, 1, 2, ... through every kernel with it.

Nothing but the test suite should use this: it switches a process-wide state.
"""
from contextlib import contextmanager

from ..errors import integer_at_least
from ._ffi import lib


class Injection:
    """What happened inside ``failing_allocation``: ``fired`` is True when the
    planned failure was reached (the call made more than ``n`` requests)."""

    def __init__(self, n):
        self.n = n
        self.fired = False

    def __repr__(self):
        return "Injection(n=%d, fired=%s)" % (self.n, self.fired)


@contextmanager
def failing_allocation(n):
    """Let ``n`` scratch requests succeed and fail the next one; yields an Injection."""
    n = integer_at_least("failing_allocation", "n", n, 0)
    injection = Injection(n)
    lib.tb_fail_alloc_after(n)
    try:
        yield injection
    finally:
        injection.fired = lib.tb_fail_alloc_pending() < 0
        lib.tb_fail_alloc_after(-1)

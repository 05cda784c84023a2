"""Shared test fixtures: kernel backends and the hypothesis profile.

``backend``: parametrizes a test over the "c" and "numpy" kernel backends
(the "c" case is skipped when the extension is not built), makes it the active
backend for the test, and restores the previous backend afterwards.
``c_backend``: the C backend only.  ``strict_fp``: warnings are errors and NumPy
raises on every floating-point event.  ``isa``: runs a test under each of the C
kernels' instruction sets (``ISAS``), skipping those this CPU lacks.

Hypothesis runs under the "ci" profile by default: no deadline (the machines
are shared and noisy), few examples (gradient checks are expensive),
derandomized so a failure reproduces.  ``HYPOTHESIS_PROFILE=dev`` runs more
examples with random seeds.
"""
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import tinybptt
from tinybptt import kernels

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=25,
    derandomize=True,
    database=None,  # derandomized runs need no example database (and write no .hypothesis/ files)
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ["c", "numpy"]

#: The C kernels' instruction sets, best first.
ISAS = ["avx512", "avx2", "portable"]


@pytest.fixture(params=ISAS)
def isa(request):
    """Run the test under one instruction set (skipped if the CPU lacks it); restore the default after."""
    if "c" not in kernels.available_backends():
        pytest.skip("the C backend is not built (%s)" % (kernels.C_IMPORT_ERROR,))
    from tinybptt.kernels._ffi import ffi, lib
    default = ffi.string(lib.tb_isa_name()).decode()
    if lib.tb_select_isa(request.param.encode()):
        pytest.skip("this CPU cannot run the %s kernels" % request.param)
    assert ffi.string(lib.tb_isa_name()).decode() == request.param
    yield request.param
    assert lib.tb_select_isa(default.encode()) == 0


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The name of the kernel backend made active for this test ("c" or "numpy")."""
    name = request.param
    if name not in kernels.available_backends():
        pytest.skip("the C backend is not built (%s)" % (kernels.C_IMPORT_ERROR,))
    previous = tinybptt.get_backend()
    tinybptt.set_backend(name)
    try:
        yield name
    finally:
        tinybptt.set_backend(previous)


@pytest.fixture
def c_backend():
    """The C backend made active for the test (and the previous one restored)."""
    if "c" not in kernels.available_backends():
        pytest.skip("the C backend is not built (%s)" % (kernels.C_IMPORT_ERROR,))
    previous = tinybptt.get_backend()
    tinybptt.set_backend("c")
    try:
        yield
    finally:
        tinybptt.set_backend(previous)


@pytest.fixture
def strict_fp():
    """Warnings are errors and NumPy raises on every floating-point event (also underflow)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            yield

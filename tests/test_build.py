"""The C extension was built and is the default backend.

tinybptt installs even without a C compiler (it then runs on the NumPy
reference backend and warns once).  That fallback must never hide a broken
build on a machine that should have one, so this file fails loudly when the
extension is missing -- unless ``TINYBPTT_ALLOW_NO_C=1`` says that is expected.
"""
import os
import subprocess
import sys

import pytest

import tinybptt
from tinybptt import kernels

ALLOW_NO_C = os.environ.get("TINYBPTT_ALLOW_NO_C") == "1"


def _env(**overrides):
    env = {k: v for k, v in os.environ.items() if k != "TINYBPTT_BACKEND"}
    env.update(overrides)
    return env


def _backend_in_subprocess(**env):
    code = "import tinybptt; print(tinybptt.get_backend())"
    out = subprocess.run([sys.executable, "-c", code], env=_env(**env), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1], out.stderr


def test_c_extension_imports():
    try:
        import tinybptt._tinybptt_c as ext
    except ImportError as exc:
        if ALLOW_NO_C:
            pytest.skip("C extension not built and TINYBPTT_ALLOW_NO_C=1: %s" % exc)
        pytest.fail(
            "The C backend silently did not build: importing tinybptt._tinybptt_c failed (%s). "
            "tinybptt fell back to the slow NumPy reference kernels. Rebuild with "
            "`python csrc/build_ffi.py` (or reinstall with a working C compiler; TINYBPTT_REQUIRE_C=1 makes "
            "the install fail instead of falling back). Set TINYBPTT_ALLOW_NO_C=1 if running without "
            "C is intended." % (exc,)
        )
    assert hasattr(ext, "ffi") and hasattr(ext, "lib")
    assert kernels.c_backend is not None
    assert "c" in tinybptt.available_backends()
    assert isinstance(kernels.c_backend.build_info(), str) and kernels.c_backend.build_info()


@pytest.mark.skipif(ALLOW_NO_C and kernels.c_backend is None, reason="no C extension (TINYBPTT_ALLOW_NO_C=1)")
def test_c_is_the_default_backend():
    name, stderr = _backend_in_subprocess()
    assert name == "c", "a fresh `import tinybptt` chose %r, not the C backend. stderr:\n%s" % (name, stderr)
    assert "not built" not in stderr
    if "TINYBPTT_BACKEND" not in os.environ:
        assert tinybptt.get_backend() == "c"


def test_env_var_selects_numpy_backend():
    name, _ = _backend_in_subprocess(TINYBPTT_BACKEND="numpy")
    assert name == "numpy"


def test_set_backend_bogus_raises_and_keeps_the_current_backend():
    before = tinybptt.get_backend()
    with pytest.raises(tinybptt.BackendError) as info:
        tinybptt.set_backend("bogus")
    msg = str(info.value)
    assert "bogus" in msg and "numpy" in msg  # names the bad choice and the valid ones
    assert isinstance(info.value, RuntimeError)
    assert tinybptt.get_backend() == before


def test_set_backend_switches_and_get_backend_reports_it():
    before = tinybptt.get_backend()
    try:
        for name in tinybptt.available_backends():
            tinybptt.set_backend(name)
            assert tinybptt.get_backend() == name
            assert kernels.backend.NAME == name
    finally:
        tinybptt.set_backend(before)


def test_missing_extension_falls_back_to_numpy_with_a_warning():
    """What a user without a compiler gets: NumPy kernels and one clear RuntimeWarning."""
    code = ("import sys, warnings; sys.modules['tinybptt._tinybptt_c'] = None\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    import tinybptt\n"
            "print(tinybptt.get_backend()); print(len([x for x in w if 'not built' in str(x.message)]))\n"
            "try:\n    tinybptt.set_backend('c')\nexcept tinybptt.BackendError as e:\n    print('BackendError', e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "numpy" and lines[1] == "1"
    assert lines[2].startswith("BackendError") and "numpy" in lines[2]


@pytest.mark.skipif(kernels.c_backend is None, reason="the C backend is not built")
def test_every_typed_kernel_is_declared_for_both_dtypes():
    """tinybptt_typed.h declares each kernel once over `real`; the built library has it
    as _f32 taking float pointers and as _f64 taking double pointers."""
    import re
    from tinybptt.kernels._ffi import ffi, lib
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "csrc", "tinybptt_typed.h")) as f:
        text = f.read()
    assert not [line for line in text.splitlines() if line.lstrip().startswith("#")]  # cffi reads it as it is
    names = re.findall(r"\bFN\((\w+)\)\(", text)
    assert len(names) >= 20 and "tb_bmm" in names and "tb_lstm_seq_backward" in names
    for name in names:
        for suffix, real, other in (("f32", "float", "double"), ("f64", "double", "float")):
            signature = ffi.typeof(getattr(lib, "%s_%s" % (name, suffix))).cname
            assert real + " *" in signature and other + " *" not in signature, (name, suffix, signature)

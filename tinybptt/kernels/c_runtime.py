"""The C library's process-wide settings: threads, flush-to-zero, build information."""
from . import validate as V
from ._ffi import ffi, lib


def build_info():
    """How the extension was built, and the instruction set and GEMM micro-kernel in use."""
    return ffi.string(lib.tb_build_info()).decode()


def set_num_threads(n):
    lib.tb_set_num_threads(V.check_num_threads("set_num_threads", n))


def get_num_threads():
    return lib.tb_get_num_threads()


def set_flush_to_zero(on):
    lib.tb_set_flush_to_zero(1 if on else 0)


def get_flush_to_zero():
    return bool(lib.tb_get_flush_to_zero())

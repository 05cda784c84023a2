"""cffi build script: compiles csrc/*.c into the extension ``tinybptt._tinybptt_c``.

The C API is declared in ``csrc/tinybptt.h`` (what exists once) and
``csrc/tinybptt_typed.h`` (every kernel, written once over the type ``real``).
``cdef()`` reads those same two files -- the first without its preprocessor
lines, the second once per dtype -- so the Python view of the API can never
drift from the C one.

Environment variables read at build time
----------------------------------------
TINYBPTT_NATIVE=1      add ``-march=native`` (faster, not portable to other CPUs).
                       Without it the build is portable and the GEMM picks its
                       AVX2/AVX-512 micro-kernel by run-time CPU dispatch.
TINYBPTT_OPENMP=0      do not try to build with OpenMP (default: use it if the
                       compiler supports ``-fopenmp``).
TINYBPTT_SANITIZE=1    build with ``-fsanitize=address,undefined`` and ``-O1 -g``
                       (the tests then need the ASan runtime preloaded; see .ci/run).
TINYBPTT_CFLAGS="..."  extra compiler flags, appended last.
"""
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "tinybptt.h")
TYPED_HEADER = os.path.join(HERE, "tinybptt_typed.h")
#: (C type of ``real``, suffix FN() appends): the dtypes every kernel exists for
DTYPES = (("float", "f32"), ("double", "f64"))
ROOT = os.path.dirname(HERE)


def _compiler_accepts(flag):
    """True if the C compiler builds and links a trivial program with ``flag``."""
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write("int main(void) { return 0; }\n")
        try:
            r = subprocess.run(
                [cc, flag, src, "-o", os.path.join(tmp, "t")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        except OSError:
            return False
        return r.returncode == 0


def _flags():
    # -fno-trapping-math: we never trap on FP exceptions, and without it GCC will not
    # turn the selects in vmath.h's branch-free exp/tanh/sigmoid into vector blends.
    compile_args = ["-std=c11", "-fno-strict-aliasing", "-fno-trapping-math", "-Wall", "-Wno-unused-function"]
    link_args = []
    if os.environ.get("TINYBPTT_SANITIZE") == "1":
        compile_args += ["-O1", "-g", "-fno-omit-frame-pointer",
                         "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
        link_args += ["-fsanitize=address,undefined"]
    else:
        compile_args += ["-O3"]
    if os.environ.get("TINYBPTT_NATIVE") == "1":
        compile_args.append("-march=native")
    if os.environ.get("TINYBPTT_OPENMP", "1") != "0" and _compiler_accepts("-fopenmp"):
        compile_args.append("-fopenmp")
        link_args.append("-fopenmp")
    extra = os.environ.get("TINYBPTT_CFLAGS")
    if extra:
        compile_args += shlex.split(extra)
    return compile_args, link_args


def _cdef_text():
    """The API as cffi wants it: tinybptt.h without its preprocessor lines, then
    tinybptt_typed.h once per dtype, with ``real`` and ``FN(name)`` spelled out
    (the C compiler does the same through csrc/for_each_dtype.h)."""
    with open(HEADER) as f:
        parts = ["\n".join(line for line in f.read().splitlines() if not line.lstrip().startswith("#"))]
    with open(TYPED_HEADER) as f:
        typed = f.read()
    for real, suffix in DTYPES:
        text = re.sub(r"\bFN\((\w+)\)", r"\1_" + suffix, typed)
        parts.append(re.sub(r"\breal\b", real, text))
    return "\n".join(parts)


def make_builder(absolute_paths=False):
    """The FFI builder.  setuptools wants source paths relative to the project
    root; the in-place developer rebuild compiles elsewhere and needs absolute ones."""
    rel = (lambda p: os.path.abspath(p)) if absolute_paths else (lambda p: os.path.relpath(p, ROOT))
    builder = FFI()
    builder.cdef(_cdef_text())
    compile_args, link_args = _flags()
    builder.set_source(
        "tinybptt._tinybptt_c",
        '#include "tinybptt.h"\n',
        sources=sorted(rel(p) for p in glob.glob(os.path.join(HERE, "*.c"))),
        depends=sorted(rel(p) for p in glob.glob(os.path.join(HERE, "*.h"))),  # an edited *_impl.h rebuilds
        include_dirs=[rel(HERE)],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        libraries=["m"],
    )
    return builder


ffibuilder = make_builder()


def rebuild_inplace():
    """Developer helper: recompile and swap the extension into tinybptt/ atomically.

    ``python csrc/build_ffi.py`` compiles into a private build directory and then
    renames the new shared object over the old one, so a test run that already
    loaded the old library keeps working (rename gives the file a new inode;
    copying over it in place would crash every process that has it mapped).
    """
    import shutil
    os.chdir(ROOT)
    tmp = tempfile.mkdtemp(prefix="tmp-", dir=os.path.join(ROOT, "build") if os.path.isdir(os.path.join(ROOT, "build")) else None)
    try:
        so = make_builder(absolute_paths=True).compile(verbose=False, tmpdir=tmp)
        existing = glob.glob(os.path.join(ROOT, "tinybptt", "_tinybptt_c*.so"))
        dest = existing[0] if existing else os.path.join(ROOT, "tinybptt", os.path.basename(so))
        staged = dest + ".new"
        shutil.copyfile(so, staged)
        os.replace(staged, dest)
        print("rebuilt", os.path.relpath(dest, ROOT))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    rebuild_inplace()
    sys.exit(0)

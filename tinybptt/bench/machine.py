"""The machine a run was made on: CPU, cores, load, library versions, tinybptt's build."""
import datetime
import os
import platform
import subprocess

import numpy as np

#: The repository root when tinybptt runs from a source checkout (benchmarks/ lives there).
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _simd():
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return None
    return " ".join(x for x in ("avx512f", "avx2", "fma", "sse4_2") if x in flags)


def _versions(info):
    from importlib import metadata
    for pkg in ("torch", "jax", "jaxlib"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = "not installed"
    try:
        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = "%s %s" % (blas.get("name", "?"), blas.get("version", ""))
    except Exception:  # noqa: BLE001 - older NumPy
        pass
    try:
        from tinybptt import kernels
        info["tinybptt_build"] = kernels.c_backend.build_info() if kernels.c_backend else "C backend not built"
    except Exception as exc:  # noqa: BLE001
        info["tinybptt_build"] = "unknown (%s)" % exc


def machine_info():
    """CPU, cores, load, library versions and tinybptt's build -- for the top of a report."""
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": platform.python_version(), "platform": platform.platform(),
            "cores": os.cpu_count(), "numpy": np.__version__, "cpu": cpu_model()}
    simd = _simd()
    if simd is not None:
        info["simd"] = simd
    try:
        info["loadavg"] = " ".join("%.2f" % v for v in os.getloadavg())
    except OSError:
        pass
    _versions(info)
    try:
        info["git"] = subprocess.run(["git", "-C", SOURCE_ROOT, "log", "-1", "--format=%h %s"], capture_output=True,
                                     text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        pass
    return info


def machine_text(info, md=False):
    keys = ("date", "cpu", "simd", "cores", "loadavg", "loadavg_end", "platform", "python", "numpy", "numpy_blas",
            "torch", "jax", "jaxlib", "tinybptt_build", "git")
    return "\n".join(("- **%s**: %s" if md else "%-15s %s") % (k if md else k + ":", info[k])
                     for k in keys if k in info)

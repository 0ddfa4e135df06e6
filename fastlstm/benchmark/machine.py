"""What the benchmark ran on: CPU model, thread count, package versions, measured sgemm speed."""
from __future__ import annotations

import os
import platform
import resource
import time
from importlib import metadata

import numpy as np

PACKAGES = ("numpy", "numba", "torch", "onnxruntime", "mkl")


def cpu_model() -> str:
    """The ``model name`` of /proc/cpuinfo (Linux), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def package_versions() -> dict[str, str]:
    """Versions of Python and :data:`PACKAGES` (``"not installed"`` for missing ones),
    read from package metadata without importing the packages."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def gemm_gflops(size: int, threads: int, repeats: int = 5, dtype=np.float32) -> float:
    """Best-of-``repeats`` GFLOP/s of NumPy's (size × size) @ (size × size) in ``dtype``
    (float32 by default: sgemm; float64: dgemm).

    BLAS is limited to ``threads`` threads for the measurement (threadpoolctl).

    Parameters
    ----------
    size : int
    threads : int
    repeats : int
    dtype : numpy dtype, optional

    Returns
    -------
    float
        2·size³ / best time / 1e9.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    out = np.empty_like(a)
    best = float("inf")
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(a, b, out=out)
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best / 1e9


def load_average():
    """The 1-minute load average, or None where the OS does not report one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def machine_info(threads: int, sgemm_sizes=(1024,)) -> dict:
    """CPU model, thread count, load, versions and measured sgemm GFLOP/s for each size.

    Returns
    -------
    dict with keys ``cpu``, ``threads``, ``load_average`` (1 minute, before the run, or
    None), ``versions`` (dict), ``sgemm_gflops`` (dict size -> float), ``kernel_blas`` (the
    library of the cpu backend's BLAS calls, :func:`fastlstm.backends.cpu.blas.library_name`)
    """
    from ..backends.cpu.blas import library_name

    return {
        "cpu": cpu_model(),
        "load_average": load_average(),
        "threads": threads,
        "versions": package_versions(),
        "sgemm_gflops": {int(n): gemm_gflops(n, threads) for n in sgemm_sizes},
        "kernel_blas": library_name(),
    }


def _busy_seconds():
    """CPU seconds all processes have spent busy (every core), from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10])  # already counted in user and nice
    return (sum(fields) - idle - guest) / os.sysconf("SC_CLK_TCK")


def _own_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class OtherLoad:
    """How busy other processes kept the CPUs between :meth:`start` and :meth:`stop`.

    The machine's busy CPU time (/proc/stat) minus this process's own (all its threads),
    over the wall time: the average number of cores used by someone else while we timed.
    ``cores`` is None where /proc/stat is unavailable.
    """

    def __init__(self):
        self.cores = None
        self._start = None

    def start(self):
        self._start = (_busy_seconds(), _own_seconds(), time.perf_counter())
        return self

    def stop(self):
        busy0, own0, wall0 = self._start
        busy1, own1, wall1 = _busy_seconds(), _own_seconds(), time.perf_counter()
        if busy0 is not None and busy1 is not None and wall1 > wall0:
            self.cores = max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0)
        return self.cores

"""Peak memory of one training step, each contender in a fresh process.

The child process imports everything, builds the layer (or peer module) and the full-size
inputs, and runs one warm-up step on a T=2 input of the same batch and sizes (so that
compilation, imports and lazily created pools are part of the baseline). Then it takes
the baseline and runs one full step. The reported number is the growth of peak resident
memory over the baseline:

- ``"VmHWM"`` (Linux ≥ 4.0): writing ``5`` to ``/proc/self/clear_refs`` resets the peak
  (VmHWM) to the current resident size, so the growth is VmHWM after the step minus
  VmRSS at the reset — exact even when compilation left a higher transient peak behind.
- ``"ru_maxrss"`` otherwise: ``getrusage(RUSAGE_SELF).ru_maxrss`` after minus before;
  this undercounts when the baseline's own peak (from compiling) was higher than its
  resident size.

Run by hand: ``python -m fastlstm.benchmark.memory --shape 2 --contender torch``.
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
from dataclasses import dataclass

KIB_PER_MIB = 1024.0
CONTENDERS = ("fastlstm", "torch")


@dataclass(frozen=True)
class MemoryResult:
    """Peak-memory growth of one contender on one shape (None when it could not run)."""

    shape_key: str
    contender: str
    growth_mib: float | None
    method: str = ""
    reason: str = ""


def _status_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _maxrss_kib():
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 1024 if sys.platform == "darwin" else maxrss  # macOS reports bytes


def _reset_peak():
    """Reset VmHWM to the current RSS; returns the baseline RSS in KiB, or None if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        baseline = _status_kib("VmRSS")
        if _status_kib("VmHWM") > baseline + 1024:  # the reset did not take
            return None
        return baseline
    except OSError:
        return None


def measure_here(shape, contender: str) -> dict:
    """Measure in this process (call it in a fresh one: see the module docstring).

    Parameters
    ----------
    shape : BenchShape, a training shape
    contender : {"fastlstm", "torch"}

    Returns
    -------
    dict with ``growth_kib``, ``method`` and, when the contender cannot run, ``reason``
    """
    from .peers import build_fastlstm, build_torch

    builder = {"fastlstm": build_fastlstm, "torch": build_torch}[contender]
    layer = shape.make_layer(seed=0)
    x, dy = shape.make_inputs(0)
    full = builder(shape, layer, x, dy)
    if not full.available:
        return {"growth_kib": None, "method": "", "reason": full.reason}
    tiny_shape = shape.replace(steps=min(2, shape.steps))
    tiny = builder(tiny_shape, layer, *tiny_shape.make_inputs(1))
    tiny.run()
    del tiny
    gc.collect()
    baseline = _reset_peak()
    if baseline is not None:
        full.run()
        return {"growth_kib": _status_kib("VmHWM") - baseline, "method": "VmHWM"}
    before = _maxrss_kib()
    full.run()
    return {"growth_kib": _maxrss_kib() - before, "method": "ru_maxrss"}


def measure(shape, contender: str, timeout: float = 600.0) -> MemoryResult:
    """Peak-memory growth of one training step of ``shape`` by ``contender``, in a fresh
    Python process.

    Parameters
    ----------
    shape : BenchShape
        Any shape of the table, possibly with changed ``steps`` (it is passed by key and T).
    contender : {"fastlstm", "torch"}
    timeout : float, seconds

    Returns
    -------
    MemoryResult
    """
    if contender not in CONTENDERS:
        raise ValueError(f"contender: expected one of {CONTENDERS}, got {contender!r}")
    command = [sys.executable, "-m", "fastlstm.benchmark.memory", "--shape", shape.key,
               "--contender", contender, "--steps", str(shape.steps)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return MemoryResult(shape.key, contender, None, reason=f"child process took over {timeout:g} s")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return MemoryResult(shape.key, contender, None, reason=f"child process failed: {detail}")
    report = json.loads(lines[-1])
    growth = report["growth_kib"]
    return MemoryResult(shape.key, contender, None if growth is None else growth / KIB_PER_MIB,
                        report.get("method", ""), report.get("reason", ""))


def _main(argv=None):
    from .shapes import SHAPES

    parser = argparse.ArgumentParser(prog="python -m fastlstm.benchmark.memory",
                                     description="peak-memory growth of one training step")
    parser.add_argument("--shape", required=True, help="row key, e.g. 2 or 2/float64")
    parser.add_argument("--contender", required=True, choices=CONTENDERS)
    parser.add_argument("--steps", type=int, default=None, help="override T")
    args = parser.parse_args(argv)
    rows = {s.key: s for s in SHAPES}
    if args.shape not in rows:
        parser.error(f"unknown shape {args.shape!r}; valid: {', '.join(rows)}")
    shape = rows[args.shape].replace(mode="training")
    if args.steps is not None:
        shape = shape.replace(steps=args.steps)
    print(json.dumps(measure_here(shape, args.contender)))


if __name__ == "__main__":
    _main()

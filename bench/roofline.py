"""The roofline of the benchmark table on this machine: the least time each call's flops and bytes
allow, against what fastlstm and its peer take and what the row's target asks.

    python bench/roofline.py                      # measures the machine, then times the table
    python bench/roofline.py --table table.json   # the times of `python -m fastlstm bench --json table.json`
    python bench/roofline.py --shapes 1,4,6 --repeats 5

The machine, measured here:

* **FMA peak**: OpenBLAS's sgemm / dgemm at 2048³, on one thread and on two: the best any code
  of this library's kind reaches on these cores (its micro-kernel runs the FMA units at ~90 %
  of their rate; no Numba kernel beats it);
* **read bandwidth** of one core from its L1 (16 KiB working set), its L2 (512 KiB), the shared
  L3 (8 MiB) and memory (256 MiB), and of both cores from L3 and memory: a vectorised Numba
  sum over the working set, repeated.

Per row of the table, the bound is the larger of

* the call's GEMM flops (:func:`fastlstm.benchmark.shapes.gemm_flops`) at the two-thread GEMM
  peak, and
* the recurrent weights' stream: every step reads all of ``weight_hh`` once per pass (one pass
  in inference, two in training: the forward's projection and the backward's), split between
  the two cores, from the level that holds each core's half (L1, L2, else L3 at the two-core
  rate; memory when it exceeds L3).

Element-wise gate work, the input projection's own stream and every per-step synchronisation
are left out, so the bound is optimistic: no implementation of these equations on this machine
runs faster. A row whose target time (target × the peer's time) is under its bound is a target
no code can reach here.
"""
import argparse
import json
import time

import numpy as np
from numba import njit, prange

from fastlstm.benchmark.machine import gemm_gflops
from fastlstm.benchmark.shapes import gemm_flops, select_shapes
from fastlstm.benchmark.suite import run_shape

KIB = 1024
LEVELS = (("L1", 16 * KIB), ("L2", 512 * KIB), ("L3", 8 * KIB * KIB), ("memory", 256 * KIB * KIB))
# per core on the project's machines (lscpu): L1d 32 KiB, L2 1 MiB; L3 32 MiB shared
CAPACITY = {"L1": 32 * KIB, "L2": 1024 * KIB, "L3": 32 * KIB * KIB}


@njit(cache=True, fastmath={"reassoc"}, error_model="numpy")
def _sum(values, repeats):
    total = values.dtype.type(0)
    for _ in range(repeats):
        for i in range(values.shape[0]):
            total += values[i]
    return total


@njit(cache=True, parallel=True, fastmath={"reassoc"}, error_model="numpy")
def _sum_each(parts, repeats):
    totals = np.zeros(parts.shape[0], parts.dtype)
    for p in prange(parts.shape[0]):
        totals[p] = _sum(parts[p], repeats)
    return totals


def read_bandwidth(size_bytes, threads, seconds=0.3):
    """GB/s that ``threads`` cores read, each from its own ``size_bytes`` working set (float32)."""
    parts = np.ones((threads, size_bytes // 4), np.float32)
    repeats = max(1, int(64 * KIB * KIB // size_bytes))
    run = (lambda: _sum(parts[0], repeats)) if threads == 1 else (lambda: _sum_each(parts, repeats))
    run()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return threads * size_bytes * repeats / best / 1e9


def measure_machine():
    """The FMA peaks (GFLOP/s) and read bandwidths (GB/s) of this machine, as a dict."""
    machine = {"sgemm_gflops": {t: gemm_gflops(2048, t) for t in (1, 2)},
               "dgemm_gflops": {t: gemm_gflops(2048, t, repeats=3, dtype=np.float64) for t in (1, 2)},
               "bandwidth_gbs": {}}
    for level, size in LEVELS:
        for threads in ((1,) if level in ("L1", "L2") else (1, 2)):
            machine["bandwidth_gbs"][f"{level}/{threads}"] = read_bandwidth(size, threads)
    return machine


def weight_level(bytes_per_core):
    """The cache level that holds ``bytes_per_core`` of weights, and the bandwidth key it streams at."""
    if bytes_per_core <= CAPACITY["L1"]:
        return "L1", "L1/1"
    if bytes_per_core <= CAPACITY["L2"]:
        return "L2", "L2/1"
    if 2 * bytes_per_core <= CAPACITY["L3"]:
        return "L3", "L3/2"
    return "memory", "memory/2"


def bound(shape, machine, threads=2):
    """The roofline of one call of ``shape``: a dict of its flops, weight bytes and times (s)."""
    itemsize = np.dtype(shape.dtype).itemsize
    peak = machine["sgemm_gflops" if itemsize == 4 else "dgemm_gflops"][threads] * 1e9
    flops = gemm_flops(shape)
    passes = 2 if shape.mode == "training" else 1
    weights = shape.gates * shape.hidden_size ** 2 * itemsize
    level, key = weight_level(weights / threads)
    if level in ("L1", "L2"):
        bandwidth = threads * machine["bandwidth_gbs"][key] * 1e9
    else:
        bandwidth = machine["bandwidth_gbs"][key] * 1e9
    flops_s = flops / peak
    stream_s = shape.steps * passes * weights / bandwidth
    return {"flops": flops, "weight_bytes": weights, "level": level, "flops_s": flops_s, "stream_s": stream_s,
            "bound_s": max(flops_s, stream_s), "limit": "flops" if flops_s >= stream_s else f"{level} stream"}


def measured_times(shapes, table, repeats):
    """key -> {name: median seconds}, from the bench JSON ``table`` or timed here."""
    if table:
        with open(table) as handle:
            rows = json.load(handle)["results"]
        return {row["key"]: {name: ms / 1e3 for name, ms in row["median_ms"].items()} for row in rows}
    times = {}
    for shape in shapes:
        print(f"timing {shape.key} ...", flush=True)
        result = run_shape(shape, repeats)
        times[shape.key] = {name: result.summary(name).median for name in result.times}
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", help="a `python -m fastlstm bench --json` file to take the times from")
    parser.add_argument("--shapes", default=None, help="comma-separated shape ids (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per shape when timing here (default 5)")
    args = parser.parse_args(argv)
    shapes = select_shapes(args.shapes.split(",") if args.shapes else None)
    machine = measure_machine()
    print("FMA peak (OpenBLAS gemm 2048³): sgemm " + ", ".join(
        f"{t} thread{'s' * (t > 1)} {g:.0f}" for t, g in machine["sgemm_gflops"].items())
        + " GFLOP/s; dgemm " + ", ".join(f"{t}: {g:.0f}" for t, g in machine["dgemm_gflops"].items()))
    print("read bandwidth, GB/s (level/cores): " + ", ".join(
        f"{k} {v:.0f}" for k, v in machine["bandwidth_gbs"].items()))
    times = measured_times(shapes, args.table, args.repeats)
    print(f"{'row':<10} {'cell':<22} {'I':>5} {'H':>5} {'B':>4} {'T':>4} {'mode':<9} {'GFLOP':>7} {'W_hh':>8} "
          f"{'limit':<10} {'bound':>8} {'fastlstm':>9} {'peer':>8} {'fast/bound':>10} {'peer/bound':>10} "
          f"{'target':>6} {'reachable':>9}   (times in ms)")
    for shape in shapes:
        roof = bound(shape, machine)
        measured = times.get(shape.key, {})
        ours = measured.get("fastlstm")
        peers = [measured[p] for p in shape.peers if p in measured]
        peer = peers[0] if peers else None
        reachable = "-" if peer is None else ("yes" if shape.target * peer >= roof["bound_s"] else "NO")
        print(f"{shape.key:<10} {shape.label:<22} {shape.input_size:>5} {shape.hidden_size:>5} {shape.batch:>4} "
              f"{shape.steps:>4} {shape.mode:<9} {roof['flops'] / 1e9:7.2f} {roof['weight_bytes'] / KIB:7.0f}K "
              f"{roof['limit']:<10} {_ms(roof['bound_s'])} {_ms(ours):>9} {_ms(peer)} "
              f"{_over(ours, roof['bound_s'])} {_over(peer, roof['bound_s'])} {shape.target:6.2f} {reachable:>9}")
    print("target: the row's ratio goal time(fastlstm) / time(peer); reachable: whether target × the peer's time "
          "is at least the bound")


def _ms(seconds):
    return f"{1e3 * seconds:8.2f}" if seconds is not None else f"{'-':>8}"


def _over(seconds, bound_s):
    return f"{seconds / bound_s:10.2f}" if seconds is not None else f"{'-':>10}"

if __name__ == "__main__":
    main()

"""The cpu backend's BLAS calls, one thread, by library: SciPy's (OpenBLAS in its wheels) against MKL.

    python bench/blas_gemm.py [--rounds 5]
    python bench/blas_gemm.py --products [--rounds 5]

Times one ``?gemm`` call as the kernels make it (:func:`fastlstm.backends.cpu.blas.gemm_at`,
from compiled code, on views with leading dimensions) at the shapes of the backward's blocks:
a weight gradient's block (W gate columns of ``dgates`` over K rows, by N inputs), a narrow
``dx`` (rows × G·H by G·H × I, I under one SIMD vector), and blocks of growing size (where MKL's
fixed cost per call outweighs its rate: the ``mkl_min_flops`` knob). The libraries take turns,
round after round, in one process; the best time of each round's block of calls is kept, and the
median over rounds reported. SciPy's BLAS is held to one thread, as in a backward. MKL's column
needs PyPI's ``mkl`` (``pip install mkl``).

With ``--products``: the products around the loops (an input projection with its bias; a ``dx``
has the shape of one with K and N swapped), on Numba's threads as a call runs them
(:func:`fastlstm.backends.cpu.gemm.matmul`), on the tile kernel against MKL's GEMM (``blas``),
over rows × weight shapes: where ``mkl_product_rows`` and ``mkl_product_side`` send input
projections to MKL. The two take turns (:func:`fastlstm.benchmark.timing.interleaved_times`, short
pauses and blocks); the median over rounds of the ratio of their times.
"""
import argparse
import functools
import statistics
import time

import numpy as np
from numba import njit

from fastlstm import tuning
from fastlstm.backends.cpu import tiles
from fastlstm.backends.cpu.blas import gemm_address, gemm_at, mkl_library, product_at
from fastlstm.backends.cpu.gemm import matmul_runner
from fastlstm.backends.cpu.threads import single_threaded_blas
from fastlstm.benchmark.timing import interleaved_times, median_ratio

# (label, kind, rows K, gate columns W or inner G·H, inputs N)
SHAPES = (
    ("row 3 weight gradient block (H 512, 1024 rows)", "gradient", 1024, 512, 512),
    ("row 3 weight gradient block, second segment (576 rows)", "gradient", 576, 512, 512),
    ("LSTM 8 -> 64, B 32: weight_hh gradient block (1024 rows)", "gradient", 1024, 64, 64),
    ("LSTM 8 -> 64, B 32: weight_ih gradient (1024 rows)", "gradient", 1024, 256, 8),
    ("LSTM 16 -> 64, B 1, T 50: weight_hh gradient block (50 rows)", "gradient", 50, 64, 64),
    ("LSTM 32 -> 32, B 1, T 500: weight_hh gradient block (500 rows)", "gradient", 500, 32, 32),
    ("narrow dx, I 1, H 64 (1024 rows)", "dx", 1024, 256, 1),
    ("narrow dx, I 8, H 64 (1024 rows)", "dx", 1024, 256, 8),
) + tuple(  # by size: where MKL's fixed cost per call outweighs its rate (the mkl_min_flops knob)
    (f"gradient block W {width}, N {inner}, {rows} rows ({2 * rows * width * inner / 1e6:.2f} Mflop)", "gradient",
     rows, width, inner)
    for width, inner in ((64, 64), (256, 16), (32, 32), (128, 128)) for rows in (32, 64, 128, 256, 512, 1024))


@njit(cache=True)
def _gradients(code, count, dgates, inputs, weight):
    rows, width, inner = dgates.shape[0], weight.shape[0], weight.shape[1]
    for _ in range(count):
        gemm_at(code, inner, width, rows, inputs, 0, inner, dgates, 0, dgates.shape[1], 0.0, weight, 0, inner)


@njit(cache=True)
def _products(code, count, a, weight, out):
    rows, inner, columns = a.shape[0], a.shape[1], weight.shape[1]
    for _ in range(count):
        product_at(code, columns, rows, inner, weight, 0, columns, a, 0, inner, 0.0, out, 0, columns)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", action="store_true", help="the products around the loops, tile kernel or MKL")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with single_threaded_blas():
        (_compare_products if args.products else _compare)(args.rounds)


# (rows, inner K, columns N): weights of LSTMs of H 32 … 512 (N = 4H forward, K = 4H in a dx)
PRODUCT_ROWS = (256, 512, 576, 768, 1024, 2048, 4096)
PRODUCT_WEIGHTS = ((8, 256), (64, 256), (32, 8192), (64, 4096), (128, 512), (128, 2048), (512, 128), (256, 768),
                   (256, 1024), (1024, 256), (300, 1200), (512, 2048), (2048, 512))


def _compare_products(rounds):
    if mkl_library() is None:
        print("MKL not installed beside this interpreter (pip install mkl): nothing to compare")
        return
    rng = np.random.default_rng(0)
    print(f"{'rows':>6} {'K':>5} {'N':>5}  {'tile GFLOP/s':>12} {'MKL GFLOP/s':>12}  MKL/tile time (median of rounds)")
    for inner, columns in PRODUCT_WEIGHTS:
        weight = rng.standard_normal((columns, inner), dtype=np.float32)
        panels = np.empty(tiles.panels_size(inner, columns, np.float32), np.float32)
        tiles.pack_transposed(weight, panels)
        bias = rng.standard_normal(columns, dtype=np.float32)
        for rows in PRODUCT_ROWS:
            a = rng.standard_normal((rows, inner), dtype=np.float32)
            out = np.empty((rows, columns), np.float32)
            with tuning.override(cpu_blas="mkl"):
                tile = functools.partial(matmul_runner(a, panels, out, bias), a, panels, out, bias)
                stored = weight.reshape(-1)
                mkl = functools.partial(matmul_runner(a, stored, out, bias, blas=True), a, stored, out, bias)
            times = interleaved_times({"tile": tile, "mkl": mkl}, rounds, pause=0.02, min_block=0.02, settle=0.02)
            flops = 2.0 * rows * inner * columns
            print(f"{rows:6d} {inner:5d} {columns:5d}  {flops / statistics.median(times['tile']) / 1e9:12.1f} "
                  f"{flops / statistics.median(times['mkl']) / 1e9:12.1f}  "
                  f"{median_ratio(times['mkl'], times['tile']):.2f}")


def _compare(rounds):
    libraries = ["scipy"] + (["mkl"] if mkl_library() is not None else [])
    if len(libraries) == 1:
        print("MKL not installed beside this interpreter (pip install mkl): SciPy's column only")
    rng = np.random.default_rng(0)
    print(f"{'shape':<62} " + " ".join(f"{name + ' GFLOP/s':>15}" for name in libraries)
          + ("   mkl/scipy time" if len(libraries) == 2 else ""))
    for label, kind, rows, width, inner in SHAPES:
        if kind == "gradient":     # weight (W, N) = dgates[:, :W]ᵀ inputs, dgates 4 gates wide
            arrays = (rng.standard_normal((rows, 4 * width), dtype=np.float32),
                      rng.standard_normal((rows, inner), dtype=np.float32), np.empty((width, inner), np.float32))
            run, flops = _gradients, 2.0 * rows * width * inner
        else:                      # out (rows, I) = dgates (rows, G·H) @ weight_ih (G·H, I)
            arrays = (rng.standard_normal((rows, width), dtype=np.float32),
                      rng.standard_normal((width, inner), dtype=np.float32), np.empty((rows, inner), np.float32))
            run, flops = _products, 2.0 * rows * width * inner
        codes = {}
        for name in libraries:
            with tuning.override(cpu_blas=name):
                codes[name] = gemm_address(np.float32)
            run(codes[name], 2, *arrays)
        count = max(1, int(2e8 / flops))
        best = {name: [] for name in libraries}
        for round_ in range(rounds):
            for name in (libraries if round_ % 2 == 0 else libraries[::-1]):
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    run(codes[name], count, *arrays)
                    times.append((time.perf_counter() - start) / count)
                best[name].append(min(times))
        medians = {name: statistics.median(values) for name, values in best.items()}
        ratio = f"   {medians['mkl'] / medians['scipy']:14.2f}" if len(libraries) == 2 else ""
        print(f"{label:<62} " + " ".join(f"{flops / medians[name] / 1e9:15.1f}" for name in libraries) + ratio)


if __name__ == "__main__":
    main()

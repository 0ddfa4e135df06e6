"""The recurrent projection of one step on one core: BLAS against the library's dot-product kernel.

    python bench/projection_kernels.py

For per-step shapes (rows × H by H × G·H, the shapes a block of the time loops multiplies),
times ``out = h @ W_hhᵀ`` single-threaded with Numba's BLAS call and with
``fastlstm.backends.cpu.projection.dot_rows``, interleaved, and prints GFLOP/s and the largest
difference from a float64 product. ``SMALL_BATCH`` in that module is where the kernel hands
over to BLAS.
"""
import time

import numpy as np
from numba import njit
from threadpoolctl import threadpool_limits

from fastlstm.backends.cpu.projection import SMALL_BATCH, dot_rows

SHAPES = ((1, 1024, 256), (4, 1024, 256), (8, 1024, 256), (16, 256, 64), (16, 1024, 256), (16, 2048, 512),
          (32, 1024, 256), (64, 1024, 256), (16, 64, 16))


@njit(cache=True)
def _blas(h, weight, out):
    np.dot(h, weight.T, out)


@njit(cache=True)
def _repeat(kernel, h, weight, out, count):
    for _ in range(count):
        kernel(h, weight, out)


def main():
    print(f"one core; rows × K by K × N; dot_rows is used up to SMALL_BATCH = {SMALL_BATCH} rows")
    print(f"{'rows':>5} {'N':>5} {'K':>5} {'BLAS GFLOP/s':>13} {'dot_rows GFLOP/s':>17} {'max error':>10}")
    with threadpool_limits(1):
        for rows, count, inner in SHAPES:
            rng = np.random.default_rng(0)
            h = rng.standard_normal((rows, inner)).astype(np.float32)
            weight = rng.standard_normal((count, inner)).astype(np.float32)
            out = np.empty((rows, count), np.float32)
            exact = h.astype(np.float64) @ weight.T.astype(np.float64)
            flops = 2.0 * rows * count * inner
            repeats = max(1, int(2e8 / flops))
            best = {}
            for _ in range(3):
                for name, kernel in (("blas", _blas), ("dot_rows", dot_rows)):
                    _repeat(kernel, h, weight, out, 1)
                    start = time.perf_counter()
                    _repeat(kernel, h, weight, out, repeats)
                    rate = flops * repeats / (time.perf_counter() - start) / 1e9
                    best[name] = max(best.get(name, 0.0), rate)
            dot_rows(h, weight, out)
            error = np.abs(out - exact).max()
            print(f"{rows:5d} {count:5d} {inner:5d} {best['blas']:13.1f} {best['dot_rows']:17.1f} {error:10.1e}")


if __name__ == "__main__":
    main()

"""The recurrent projection of one step on one core: BLAS against the library's tile kernel.

    python bench/projection_kernels.py
    python bench/projection_kernels.py --narrow

For per-step shapes (rows × H by H × G·H, the shapes a block of the time loops multiplies),
times ``out = h @ W_hhᵀ`` single-threaded with Numba's BLAS call and with
``fastlstm.backends.cpu.tiles.product_at`` (from compiled code, as the time loops call it) on the weights packed once
(``fastlstm.backends.cpu.tiles.pack_transposed``), interleaved, and prints GFLOP/s, the largest
difference from a float64 product, and the packing's time in steps of the tile kernel (what a
call pays once for the packed layout).

Where PyPI's ``mkl`` is installed (``libmkl_rt`` beside the interpreter), a third column is
MKL's packed GEMM: ``W_hh`` packed once by ``cblas_sgemm_pack``, each product one
``cblas_sgemm_compute`` called from compiled code, which is what an MKL path of the time loops
would run.

With ``--narrow``: the backward's ``dx = dgates @ weight_ih`` of a segment (rows × G·H by G·H × I,
on Numba's threads, BLAS held to one thread as in the backward) for few inputs I, by the tile
kernel on ``weight_ih`` packed (``gemm.matmul``) and by single-threaded BLAS calls in blocks of
rows on ``weight_ih`` as stored (``gemm.product``), interleaved, best of 15: where each is faster
(``gemm.narrow`` chooses BLAS for fewer inputs than one SIMD vector holds).
"""
import argparse
import ctypes
import glob
import os
import sys
import time

import numpy as np
from numba import njit
from threadpoolctl import threadpool_limits

from fastlstm import buffers
from fastlstm.backends.cpu.tiles import pack_transposed, panels_size, product_at, walk_address

SHAPES = ((1, 1024, 256), (4, 1024, 256), (7, 1024, 256), (8, 1024, 256), (16, 256, 64), (16, 1024, 256),
          (16, 2048, 512), (7, 648, 162), (13, 344, 86), (16, 128, 32), (24, 1024, 256), (32, 1024, 256),
          (64, 1024, 256), (16, 64, 16), (64, 256, 64), (128, 1024, 256), (128, 2048, 512), (64, 4096, 1024))

# cblas enumerations (mkl_cblas.h)
_ROW_MAJOR, _NO_TRANS, _TRANS, _B_MATRIX, _PACKED = 101, 111, 112, 162, 151


def _mkl():
    """MKL's single-threaded ``cblas_sgemm_pack``/``cblas_sgemm_compute`` as ctypes functions, or None."""
    paths = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
    if not paths:
        return None
    lib = ctypes.CDLL(paths[0])
    lib.MKL_Set_Num_Threads(1)
    integer, pointer = ctypes.c_int, ctypes.c_void_p
    lib.cblas_sgemm_pack_get_size.restype = ctypes.c_size_t
    lib.cblas_sgemm_pack_get_size.argtypes = [integer] * 4
    lib.cblas_sgemm_pack.argtypes = [integer] * 6 + [ctypes.c_float, pointer, integer, pointer]
    lib.cblas_sgemm_compute.argtypes = [integer] * 6 + [pointer, integer, pointer, integer, ctypes.c_float, pointer,
                                                       integer]
    lib.cblas_sgemm_compute.restype = None
    return lib


def _mkl_packed_product(lib):
    """``(pack, repeat)``: ``pack(weight, rows)`` packs weight (N, K) as the transposed B operand;
    ``repeat(h, packed, out, count)`` runs out = h @ weightᵀ ``count`` times from compiled code."""
    compute = lib.cblas_sgemm_compute

    def pack(weight, rows):
        count, inner = weight.shape
        packed = np.empty(lib.cblas_sgemm_pack_get_size(_B_MATRIX, rows, count, inner) // 4 + 16, np.float32)
        lib.cblas_sgemm_pack(_ROW_MAJOR, _B_MATRIX, _TRANS, rows, count, inner, 1.0, weight.ctypes.data, inner,
                             packed.ctypes.data)
        return packed

    @njit
    def repeat(h, packed, out, count):
        rows, inner, columns = h.shape[0], h.shape[1], out.shape[1]
        for _ in range(count):
            compute(_ROW_MAJOR, _NO_TRANS, _PACKED, rows, columns, inner, h.ctypes.data, inner, packed.ctypes.data,
                    inner, np.float32(0.0), out.ctypes.data, columns)
    return pack, repeat


@njit(cache=True)
def _blas(h, weight, out):
    np.dot(h, weight.T, out)


@njit(cache=True)
def _repeat_blas(h, weight, out, count):
    for _ in range(count):
        np.dot(h, weight.T, out)


@njit(cache=True)
def _repeat_tiles(walk_code, h, panels, out, count):
    for _ in range(count):
        product_at(walk_code, h, panels, out)


NARROW_SHAPES = tuple((rows, gates, inputs) for rows, gates in ((4096, 256), (4096, 1024), (1600, 2048))
                      for inputs in (1, 4, 8, 16, 24, 32, 48, 64, 128))


def narrow_products():
    from fastlstm.backends.cpu.gemm import matmul, narrow, product
    from fastlstm.backends.cpu.threads import single_threaded_blas
    from fastlstm.backends.cpu.tiles import pack

    print("dx = dgates @ weight_ih on Numba's threads, BLAS held to one thread; ms, best of 15")
    print(f"{'rows':>5} {'G·H':>5} {'I':>4} {'tiles':>8} {'BLAS':>8} {'BLAS/tiles':>11} {'gemm.narrow':>12}")
    rng = np.random.default_rng(0)
    with single_threaded_blas():
        for rows, gates, inputs in NARROW_SHAPES:
            dgates = rng.standard_normal((rows, gates)).astype(np.float32)
            weight = rng.standard_normal((gates, inputs)).astype(np.float32)
            panels = buffers.aligned_empty((panels_size(gates, inputs, np.float32),), np.float32)
            pack(weight, 0, inputs, panels)
            out = np.empty((rows, inputs), np.float32)
            exact = dgates.astype(np.float64) @ weight.astype(np.float64)
            runs = {"tiles": lambda: matmul(dgates, panels, out), "blas": lambda: product(dgates, weight, out)}
            best = {}
            for _ in range(15):
                for name, run in runs.items():
                    start = time.perf_counter()
                    run()
                    best[name] = min(best.get(name, np.inf), time.perf_counter() - start)
                    assert np.allclose(out, exact, rtol=1e-3, atol=1e-2), name
            print(f"{rows:5d} {gates:5d} {inputs:4d} {1e3 * best['tiles']:8.3f} {1e3 * best['blas']:8.3f}"
                  f" {best['blas'] / best['tiles']:11.2f} {'BLAS' if narrow(inputs, np.float32) else 'tiles':>12}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--narrow", action="store_true", help="dx of few inputs: tile kernel against BLAS blocks")
    if parser.parse_args().narrow:
        narrow_products()
        return
    mkl = _mkl()
    pack, mkl_repeat = _mkl_packed_product(mkl) if mkl is not None else (None, None)
    print("one core; rows × K by K × N" + ("" if mkl else "; MKL not installed (pip install mkl): no packed-GEMM column"))
    print(f"{'rows':>5} {'N':>5} {'K':>5} {'BLAS GFLOP/s':>13} {'tiles GFLOP/s':>14} {'MKL packed':>11}"
          f" {'max error':>10} {'packing, in steps':>18}")
    # Numba loads SciPy's BLAS when it first compiles a product; threadpoolctl limits only the
    # libraries loaded when its limit is entered
    _blas(np.ones((1, 1), np.float32), np.ones((1, 1), np.float32), np.empty((1, 1), np.float32))
    with threadpool_limits(1):
        for rows, count, inner in SHAPES:
            rng = np.random.default_rng(0)
            h = rng.standard_normal((rows, inner)).astype(np.float32)
            weight = rng.standard_normal((count, inner)).astype(np.float32)
            out = np.empty((rows, count), np.float32)
            exact = h.astype(np.float64) @ weight.T.astype(np.float64)
            flops = 2.0 * rows * count * inner
            repeats = max(1, int(2e8 / flops))
            # 64-byte aligned, as the time loops pack them (a one-row tile's loads would split lines)
            panels = buffers.aligned_empty((panels_size(inner, count, np.float32),), np.float32)
            pack_transposed(weight, panels)
            runs = {"blas": lambda n: _repeat_blas(h, weight, out, n),
                    "tiles": lambda n: _repeat_tiles(walk_address(np.float32), h, panels, out, n)}
            if mkl is not None:
                packed = pack(weight, rows)
                runs["mkl"] = lambda n: mkl_repeat(h, packed, out, n)
            best, error = {}, 0.0
            for _ in range(3):
                for name, run in runs.items():
                    run(1)
                    error = max(error, np.abs(out - exact).max())
                    start = time.perf_counter()
                    run(repeats)
                    rate = flops * repeats / (time.perf_counter() - start) / 1e9
                    best[name] = max(best.get(name, 0.0), rate)
            start = time.perf_counter()
            for _ in range(5):
                pack_transposed(weight, panels)
            packing = (time.perf_counter() - start) / 5 / (flops / best["tiles"] / 1e9)
            mkl_rate = f"{best['mkl']:11.1f}" if "mkl" in best else f"{'-':>11}"
            print(f"{rows:5d} {count:5d} {inner:5d} {best['blas']:13.1f} {best['tiles']:14.1f} {mkl_rate}"
                  f" {error:10.1e} {packing:18.1f}")


if __name__ == "__main__":
    main()

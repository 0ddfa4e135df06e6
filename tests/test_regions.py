"""The backend's one parallel region (fastlstm.backends.cpu.regions): every block of a block
function runs exactly once, with its integers and values, in parallel as in the calling thread,
and the products and packing built on it match NumPy whichever way they run."""
import numpy as np
import pytest

from fastlstm import tuning
from fastlstm.backends.cpu import blas, gemm, tiles
from fastlstm.backends.cpu.calls import value_at
from fastlstm.backends.cpu.regions import VALUES, run_blocks
from support import BLAS_LIBRARIES


def _count_and_record(block, address, i0, i1, i2, i3, i4, i5, i6):
    """Block function: seen[block] += 1; record[block] = (i0 … i6, 10 · block)."""
    seen, record = value_at(address, VALUES)
    seen[block] += 1
    for k, value in enumerate((i0, i1, i2, i3, i4, i5, i6, 10 * block)):
        record[block, k] = value


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("count", [1, 2, 7])
def test_every_block_runs_once_with_its_integers(parallel, count):
    seen, record = np.zeros(count, np.int64), np.zeros((count, 8), np.int64)
    for _ in range(2):
        run_blocks(_count_and_record, count, (seen, record), 3, -4, 5, parallel=parallel)
    np.testing.assert_array_equal(seen, 2)
    np.testing.assert_array_equal(record, [[3, -4, 5, 0, 0, 0, 0, 10 * b] for b in range(count)])


def test_no_block_runs_for_a_count_of_zero():
    seen, record = np.zeros(1, np.int64), np.zeros((1, 8), np.int64)
    run_blocks(_count_and_record, 0, (seen, record), 1)
    assert seen[0] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parallel_flops", [1e30, 0.0], ids=["serial", "parallel"])
@pytest.mark.parametrize("partial_bytes", [1 << 30, 0], ids=["row-blocks", "column-blocks"])
@pytest.mark.parametrize("library", BLAS_LIBRARIES)
def test_products_on_the_region_match_numpy(dtype, parallel_flops, partial_bytes, library):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((37, 19)).astype(dtype)
    weight = rng.standard_normal((45, 19)).astype(dtype)      # (N, K) as stored
    bias = rng.standard_normal(45).astype(dtype)
    panels = np.empty(tiles.panels_size(19, 45, dtype), dtype)
    tiles.pack_transposed(weight, panels)
    out = np.empty((37, 45), dtype)
    dgates = rng.standard_normal((37, 45)).astype(dtype)
    tolerance = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    # weight gradients in 2–4 blocks, of rows or of columns
    with tuning.override(parallel_flops=parallel_flops, gradient_columns=8, gemm_rows=8,
                         gradient_partial_bytes=partial_bytes, cpu_blas=library):
        gemm.matmul(a, panels, out, bias)
        np.testing.assert_allclose(out, a.astype(np.float64) @ weight.T.astype(np.float64) + bias, **tolerance)
        # on BLAS: weight as stored, onto the bias, and without one
        out[...] = np.nan
        gemm.matmul(a, weight.reshape(-1), out, bias, blas=True)
        np.testing.assert_allclose(out, a.astype(np.float64) @ weight.T.astype(np.float64) + bias, **tolerance)
        out[...] = np.nan
        gemm.matmul(a, weight.reshape(-1), out, blas=True)
        np.testing.assert_allclose(out, a.astype(np.float64) @ weight.T.astype(np.float64), **tolerance)
        w, b = np.full((45, 19), np.nan, dtype), np.full(45, np.nan, dtype)   # written, never read
        gemm.weight_gradient(dgates, 0, a, w, b)
        np.testing.assert_allclose(w, dgates.T.astype(np.float64) @ a, **tolerance)
        np.testing.assert_allclose(b, dgates.sum(axis=0, dtype=np.float64), **tolerance)
        w, b = np.full((21, 19), np.nan, dtype), np.full(21, np.nan, dtype)
        gemm.weight_gradient(dgates, 9, a, w, b)
        np.testing.assert_allclose(w, dgates[:, 9:30].T.astype(np.float64) @ a, **tolerance)
        np.testing.assert_allclose(b, dgates[:, 9:30].sum(axis=0, dtype=np.float64), **tolerance)
        # added to what is there, from rows of a wider array (its row stride not the width)
        wide = rng.standard_normal((37, 23)).astype(dtype)
        before_w, before_b = w.copy(), b.copy()
        gemm.weight_gradient(dgates, 9, wide[:, 2:21], w, b, accumulate=True)
        np.testing.assert_allclose(w, before_w + dgates[:, 9:30].T.astype(np.float64) @ wide[:, 2:21], **tolerance)
        np.testing.assert_allclose(b, before_b + dgates[:, 9:30].sum(axis=0, dtype=np.float64), **tolerance)
        # no rows: zero when written, unchanged when added to
        gemm.weight_gradient(dgates[:0], 9, a[:0], w, b, accumulate=True)
        np.testing.assert_allclose(w, before_w + dgates[:, 9:30].T.astype(np.float64) @ wide[:, 2:21], **tolerance)
        gemm.weight_gradient(dgates[:0], 9, a[:0], w, b)
        assert not w.any() and not b.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parallel_flops", [1e30, 0.0], ids=["serial", "parallel"])
@pytest.mark.parametrize("columns", [1, 5, 16])
@pytest.mark.parametrize("library", BLAS_LIBRARIES)
def test_the_blas_product_of_narrow_outputs_matches_numpy(dtype, parallel_flops, columns, library):
    rng = np.random.default_rng(6)
    wide = rng.standard_normal((37, 50)).astype(dtype)
    a = wide[:, 3:48]                                         # rows 50 apart: a row stride not the width
    weight = rng.standard_normal((45, columns)).astype(dtype)   # (K, N) as weight_ih is stored
    out_wide = np.full((37, columns + 3), np.nan, dtype)
    out = out_wide[:, 1:1 + columns]                          # written, never read
    tolerance = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    with tuning.override(parallel_flops=parallel_flops, gemm_rows=8, cpu_blas=library):      # 4 blocks of rows
        gemm.product(a, weight, out)
        np.testing.assert_allclose(out, a.astype(np.float64) @ weight.astype(np.float64), **tolerance)
        assert np.isnan(out_wide[:, 0]).all() and np.isnan(out_wide[:, 1 + columns:]).all()
        gemm.product(a[:0], weight, out[:0])                  # no rows: nothing to do


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packing_in_parallel_gives_the_serial_panels(dtype, monkeypatch):
    rng = np.random.default_rng(6)
    weight = rng.standard_normal((77, 53)).astype(dtype)
    size = tiles.panels_size(53, 77, dtype)
    serial, parallel = np.full(size, np.nan, dtype), np.full(size, np.nan, dtype)
    tiles.pack_transposed(weight, serial)
    direct = np.full(size, np.nan, dtype)
    tiles.pack(np.ascontiguousarray(weight.T), 0, 77, direct)
    monkeypatch.setattr(tiles, "PARALLEL_PACK_VALUES", 0)
    tiles.pack_transposed(weight, parallel)
    np.testing.assert_array_equal(parallel, serial)
    np.testing.assert_array_equal(direct, serial)
    tiles.pack(np.ascontiguousarray(weight.T), 0, 77, parallel)
    np.testing.assert_array_equal(parallel, serial)


def test_forcing_mkl_where_it_cannot_be_used_raises_and_auto_takes_scipys_blas(monkeypatch):
    monkeypatch.setattr(blas, "mkl_library", lambda: None)
    blas._gemm_address.cache_clear()
    try:
        with tuning.override(cpu_blas="mkl"), pytest.raises(RuntimeError, match="pip install mkl"):
            blas.gemm_address(np.float32)
        assert blas.gemm_address(np.float64) == blas._scipy_gemm_address("dgemm")
    finally:
        blas._gemm_address.cache_clear()


@pytest.mark.skipif(blas.mkl_library() is None, reason="PyPI's mkl not installed beside this interpreter")
def test_mkl_runs_sequential_where_it_is_used():
    """Each ?gemm call runs on one Numba thread's block: MKL's own threads would compete with them."""
    library = blas.mkl_library()
    assert library.MKL_Get_Max_Threads() == 1
    with tuning.override(cpu_blas="mkl"):
        mkl = blas.gemm_address(np.float32)
        assert mkl != blas._scipy_gemm_address("sgemm")
        assert blas.gemm_address(np.float32, flops=10.0) == mkl            # forced: whatever the size
    # 'auto': MKL for calls of at least mkl_min_flops, SciPy's BLAS (its small-matrix path) below
    with tuning.override(cpu_blas="auto", mkl_min_flops=1000):
        assert blas.gemm_address(np.float32, flops=1000.0) == mkl
        assert blas.gemm_address(np.float32) == mkl
        assert blas.gemm_address(np.float32, flops=999.0) == blas._scipy_gemm_address("sgemm")
        assert blas.gemm_address(np.float64) == blas._scipy_gemm_address("dgemm")   # its workspace: memory


@pytest.mark.skipif(blas.mkl_library() is None, reason="PyPI's mkl not installed beside this interpreter")
def test_large_products_around_the_loops_go_to_mkl_only():
    """An input projection runs on MKL's GEMM only where MKL runs and it is large every way
    (rows, inputs, outputs); never on SciPy's BLAS, which the tile kernel outruns."""
    with tuning.override(mkl_product_rows=1000, mkl_product_side=256):
        assert gemm.on_blas(1000, 256, 256, np.float32)
        assert not gemm.on_blas(999, 256, 256, np.float32)
        assert not gemm.on_blas(4096, 255, 4096, np.float32)
        assert not gemm.on_blas(4096, 4096, 255, np.float32)
        assert not gemm.on_blas(4096, 256, 256, np.float64)          # 'auto': MKL for float32 only
        with tuning.override(cpu_blas="mkl"):
            assert gemm.on_blas(4096, 256, 256, np.float64)
        with tuning.override(cpu_blas="scipy"):
            assert not gemm.on_blas(4096, 256, 256, np.float32)


@pytest.mark.skipif(blas.mkl_library() is None, reason="PyPI's mkl not installed beside this interpreter")
def test_threads_loading_mkl_at_once_all_get_it():
    """The first load sets MKL's layers; a second would find the library loaded (another's, as far
    as it can tell) and refuse it: the load happens once, whichever threads ask at once."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import threading
        from fastlstm.backends.cpu import blas
        start, found = threading.Barrier(4), []
        def load():
            start.wait()
            found.append(blas.mkl_library())
        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(found) == 4 and found[0] is not None and all(f is found[0] for f in found), found
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

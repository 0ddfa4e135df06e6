"""``fastlstm.backends.cuda.gemm``: the device GEMM and column reductions against NumPy in float64.

Run in the cuda process (see ``conftest.py``), under the simulator with tiny shapes:
``FASTLSTM_CUDA_TESTS=1 NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda/test_gemm.py``.
The simulator runs every GPU thread as a Python thread, so each case launches a few blocks
only; the shapes still cross the 64-wide output tiles, the 16-deep K tiles and the
256-row chunks of the column reductions.
"""
import numpy as np
import pytest
from numba import cuda

from fastlstm import tuning
from fastlstm.backends.cuda import gemm

# Relative to the largest |term| sum of the output (the scale of its rounding errors).
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


# ----------------------------------------------------------------------------- helpers

def _random(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _device(host, transpose=False):
    """A device array equal to ``host``: C-contiguous, or a transposed view of another."""
    if not transpose:
        return cuda.to_device(host)
    view = gemm.transposed(cuda.to_device(np.ascontiguousarray(host.T)))
    assert tuple(view.shape) == host.shape
    if min(host.shape) > 1:  # the rows, not the columns, are contiguous: a real transposed view
        assert view.strides[0] < view.strides[1]
    return view


def _assert_close(got, want, scale, dtype):
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(float(np.max(scale, initial=0)), 1.0))


def _assert_unchanged(pairs):
    """Each (device array, host copy of its values before the call) still holds those values."""
    for device, host in pairs:
        np.testing.assert_array_equal(device.copy_to_host(), host)


def _check_matmul(m, k, n, dtype, *, transpose_a=False, transpose_b=False, bias=False, accumulate=False,
                  out_view=None, seed=0):
    """Run gemm.matmul on random operands and compare with NumPy in float64."""
    rng = np.random.default_rng(seed)
    a, b = _random(rng, (m, k), dtype), _random(rng, (k, n), dtype)
    da, db = _device(a, transpose_a), _device(b, transpose_b)
    inputs = [(da, a), (db, b)]
    want = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    # Without accumulate, out starts as NaN: any read of its old values shows.
    previous = _random(rng, (m, n), dtype) if accumulate else np.full((m, n), np.nan, dtype)
    if accumulate:
        want, scale = want + previous, scale + np.abs(previous)
    dout = out_view(previous) if out_view is not None else cuda.to_device(previous)
    dbias = None
    if bias:
        vector = _random(rng, n, dtype)
        dbias = cuda.to_device(vector)
        inputs.append((dbias, vector))
        want, scale = want + vector, scale + np.abs(vector)
    gemm.matmul(da, db, dout, bias=dbias, accumulate=accumulate)
    _assert_close(dout.copy_to_host(), want, scale, dtype)
    _assert_unchanged(inputs)


def _check_columns(function, m, n, dtype, *, transpose=False, accumulate=False, seed=0):
    """Run gemm.column_sums or gemm.column_dots and compare with NumPy in float64."""
    rng = np.random.default_rng(seed)
    a = _random(rng, (m, n), dtype)
    da = _device(a, transpose)
    inputs = [(da, a)]
    if function is gemm.column_dots:
        b = _random(rng, (m, n), dtype)
        db = _device(b)
        inputs.append((db, b))
        terms = a.astype(np.float64) * b.astype(np.float64)
        arguments = (da, db)
    else:
        terms = a.astype(np.float64)
        arguments = (da,)
    want, scale = terms.sum(axis=0), np.abs(terms).sum(axis=0)
    previous = _random(rng, n, dtype) if accumulate else np.full(n, np.nan, dtype)
    if accumulate:
        want, scale = want + previous, scale + np.abs(previous)
    dout = cuda.to_device(previous)
    function(*arguments, dout, accumulate=accumulate)
    _assert_close(dout.copy_to_host(), want, scale, dtype)
    _assert_unchanged(inputs)


# ----------------------------------------------------------------------------- matmul

# Every operand layout (n: C-contiguous, t: a transposed view), with M or N crossing a
# 64-wide tile and K a 16-deep one: between them (and the bias and float32 tests), each
# way of loading a (along K or along M) crosses an M edge, each way of loading b an N edge.
@pytest.mark.parametrize("m, k, n, transpose_a, transpose_b", [
    (70, 17, 3, False, False), (70, 17, 3, True, True), (3, 17, 70, False, True), (3, 17, 70, True, False),
], ids=["nn", "tt", "nt", "tn"])
def test_matmul_layouts_cross_tile_edges(m, k, n, transpose_a, transpose_b):
    _check_matmul(m, k, n, np.float64, transpose_a=transpose_a, transpose_b=transpose_b)


def test_matmul_float32():
    _check_matmul(17, 20, 70, np.float32, transpose_a=True)


@pytest.mark.parametrize("m, k, n", [(1, 70, 1), (64, 16, 64), (65, 33, 2)])
def test_matmul_shapes(m, k, n):
    _check_matmul(m, k, n, np.float64, seed=m + k + n)


@pytest.mark.parametrize("dtype, bias, accumulate", [
    (np.float64, True, False), (np.float64, False, True), (np.float64, True, True), (np.float32, True, True),
], ids=["bias", "accumulate", "bias_accumulate", "bias_accumulate_float32"])
def test_matmul_bias_and_accumulate(bias, accumulate, dtype):
    _check_matmul(70, 17, 5, dtype, transpose_b=True, bias=bias, accumulate=accumulate)


@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
def test_matmul_empty_k(bias, accumulate):
    """K = 0: zeros, plus the bias and the previous values when asked."""
    _check_matmul(3, 0, 5, np.float64, bias=bias, accumulate=accumulate)


@pytest.mark.parametrize("transpose", [lambda d: d.T, lambda d: d.transpose()], ids=["T", "transpose"])
def test_matmul_numba_transposes_and_strided_out(transpose):
    """Operands from ``.T``/``.transpose()`` (views in the simulator; copies on a GPU), and
    an ``out`` that is a transposed view."""
    def out_view(previous):
        return gemm.transposed(cuda.to_device(np.ascontiguousarray(previous.T)))

    rng = np.random.default_rng(1)
    a, b = _random(rng, (5, 17), np.float64), _random(rng, (17, 3), np.float64)
    da, db = transpose(cuda.to_device(np.ascontiguousarray(a.T))), transpose(cuda.to_device(np.ascontiguousarray(b.T)))
    dout = out_view(np.full((5, 3), np.nan))
    gemm.matmul(da, db, dout)
    _assert_close(dout.copy_to_host(), a @ b, np.abs(a) @ np.abs(b), np.float64)
    _check_matmul(5, 17, 3, np.float64, accumulate=True, out_view=out_view)


@pytest.mark.parametrize("m, n", [(0, 4), (4, 0), (0, 0)])
def test_matmul_empty_output_launches_nothing(m, n):
    rng = np.random.default_rng(2)
    a, b = _random(rng, (m, 3), np.float64), _random(rng, (3, n), np.float64)
    dout = cuda.to_device(np.zeros((m, n)))
    gemm.matmul(cuda.to_device(a), cuda.to_device(b), dout, bias=cuda.to_device(np.ones(n)))
    assert dout.copy_to_host().shape == (m, n)


@pytest.mark.parametrize("a_shape, b_shape, out_shape, bias_shape, message", [
    ((2, 3), (4, 5), (2, 5), None, r"b: expected shape \(3, any\), got \(4, 5\)"),
    ((2, 3), (3, 5), (5, 2), None, r"out: expected shape \(2, 5\), got \(5, 2\)"),
    ((2, 3), (3, 5), (2, 5), (2,), r"bias: expected shape \(5,\), got \(2,\)"),
    ((6,), (3, 5), (2, 5), None, r"a: expected shape \(any, any\), got \(6,\)"),
])
def test_matmul_shape_mismatch(a_shape, b_shape, out_shape, bias_shape, message):
    bias = None if bias_shape is None else cuda.to_device(np.zeros(bias_shape))
    with pytest.raises(ValueError, match=message):
        gemm.matmul(cuda.to_device(np.zeros(a_shape)), cuda.to_device(np.zeros(b_shape)),
                    cuda.to_device(np.zeros(out_shape)), bias=bias)


# ----------------------------------------------------------------------------- column sums and dots

COLUMN_FUNCTIONS = [gemm.column_sums, gemm.column_dots]
COLUMN_IDS = ["sums", "dots"]


@pytest.mark.parametrize("function", COLUMN_FUNCTIONS, ids=COLUMN_IDS)
@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
def test_columns_several_row_chunks(function, accumulate):
    assert 300 > gemm.ROWS_PER_CHUNK  # two blocks of rows, combined
    _check_columns(function, 300, 5, np.float64, accumulate=accumulate)


@pytest.mark.parametrize("function", COLUMN_FUNCTIONS, ids=COLUMN_IDS)
def test_columns_float32(function):
    _check_columns(function, 300, 3, np.float32, seed=3)


@pytest.mark.parametrize("function", COLUMN_FUNCTIONS, ids=COLUMN_IDS)
def test_columns_transposed_input_several_column_blocks(function):
    assert 40 > gemm.COLUMN_THREADS
    _check_columns(function, 20, 40, np.float64, transpose=True, seed=4)


@pytest.mark.parametrize("function", COLUMN_FUNCTIONS, ids=COLUMN_IDS)
def test_columns_many_row_chunks(function, monkeypatch):
    """Seven blocks of rows (the chunk count is the host's choice; the kernel follows the grid)."""
    monkeypatch.setattr(gemm, "ROWS_PER_CHUNK", 8)
    _check_columns(function, 50, 2, np.float64, accumulate=True, seed=5)


@pytest.mark.parametrize("function", COLUMN_FUNCTIONS, ids=COLUMN_IDS)
@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
def test_columns_ordered_reductions_match_numpy_and_repeat_bit_for_bit(function, accumulate, monkeypatch):
    """cuda_reductions="ordered": the chunks' sums go through the scratch array, added in order."""
    monkeypatch.setattr(gemm, "ROWS_PER_CHUNK", 8)
    with tuning.override(cuda_reductions="ordered"):
        _check_columns(function, 50, 3, np.float64, accumulate=accumulate, seed=6)
        rng = np.random.default_rng(7)
        a = cuda.to_device(_random(rng, (61, 4), np.float32))
        runs = []
        for _ in range(3):
            out = cuda.to_device(np.zeros(4, np.float32))
            function(*((a,) * (2 if function is gemm.column_dots else 1)), out)
            runs.append(out.copy_to_host())
        for run in runs[1:]:
            np.testing.assert_array_equal(run, runs[0])


@pytest.mark.parametrize("function", COLUMN_FUNCTIONS, ids=COLUMN_IDS)
@pytest.mark.parametrize("accumulate", [False, True], ids=["overwrite", "accumulate"])
def test_columns_no_rows(function, accumulate):
    """M = 0: zeros, or out unchanged when accumulating."""
    previous = np.array([1.5, -2.0, 3.25])
    dout = cuda.to_device(previous)
    arguments = (cuda.to_device(np.zeros((0, 3))),) * (2 if function is gemm.column_dots else 1)
    function(*arguments, dout, accumulate=accumulate)
    np.testing.assert_array_equal(dout.copy_to_host(), previous if accumulate else np.zeros(3))


def test_columns_shape_mismatch():
    a = cuda.to_device(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"out: expected shape \(3,\), got \(4,\)"):
        gemm.column_sums(a, cuda.to_device(np.zeros(4)))
    with pytest.raises(ValueError, match=r"b: expected shape \(4, 3\), got \(3, 4\)"):
        gemm.column_dots(a, cuda.to_device(np.zeros((3, 4))), cuda.to_device(np.zeros(3)))


# ----------------------------------------------------------------------------- helpers of the module

def test_transposed_is_a_view():
    host = np.arange(6.0).reshape(2, 3)
    device = cuda.to_device(host)
    view = gemm.transposed(device)
    assert tuple(view.shape) == (3, 2)
    assert tuple(view.strides) == tuple(device.strides)[::-1]
    np.testing.assert_array_equal(view.copy_to_host(), host.T)
    # Writing through the original shows through the view: the same memory.
    gemm.column_sums(cuda.to_device(np.ones((1, 3))), device[0])
    np.testing.assert_array_equal(view.copy_to_host()[:, 0], [1.0, 1.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ptx_signatures_cover_every_kernel(dtype):
    """One entry per kernel, every array of the dtype with layout 'A' (what every call takes)."""
    entries = gemm.ptx_signatures(dtype)
    functions = [function for function, _ in entries]
    assert functions == [gemm._matmul_kernel, gemm._column_reduce_kernel, gemm._sum_partials_kernel,
                         gemm._fill_zero_kernel]
    for _, signature in entries:
        arrays = [t for t in signature.args if hasattr(t, "layout")]
        assert arrays and all(t.layout == "A" and t.dtype.name == np.dtype(dtype).name for t in arrays)

"""The GEMM loop's per-step GEMM: the tuning knob ``cuda_step_gemm`` and the cuBLAS branch.

The cuBLAS branch (:class:`~fastlstm.backends.cuda.gemm_loop.CublasMatmul`) cannot run without
a GPU; here its translation of row-major operands, transposed views and column slices into
cuBLAS's column-major arguments is checked against a stand-in for cuBLAS that computes
``C = op(A) @ op(B)`` from pointers and leading dimensions as the BLAS standard defines them,
on host memory. That checks the arguments, not cuBLAS: ``bench/gpu_session.py`` runs the
branch on a GPU. No test here needs CuPy.
"""
import contextlib
import ctypes
import sys
import types as pytypes

import numpy as np
import pytest

from conftest import SIMULATED
from fastlstm import functional, tuning
from fastlstm.backends.cuda import gemm_loop
from support import make_problem, with_backend
from test_workspace import counted

DTYPES = [np.float32, np.float64]


# ---------------------------------------------------------------- the knob

def test_the_knob_takes_auto_numba_or_cublas(monkeypatch):
    assert tuning.get("cuda_step_gemm") == "auto"
    for value in ("auto", "numba", "cublas"):
        with tuning.override(cuda_step_gemm=value):
            assert tuning.get("cuda_step_gemm") == value
    with pytest.raises(ValueError, match=r"cuda_step_gemm.*expected one of \('auto', 'numba', 'cublas'\), "
                                         r"got 'cupy'"):
        with tuning.override(cuda_step_gemm="cupy"):
            pass
    monkeypatch.setenv("FASTLSTM_CUDA_STEP_GEMM", "numba")
    assert tuning.get("cuda_step_gemm") == "numba"
    monkeypatch.setenv("FASTLSTM_CUDA_STEP_GEMM", "CUBLAS")
    with pytest.raises(ValueError, match="FASTLSTM_CUDA_STEP_GEMM: expected one of"):
        tuning.get("cuda_step_gemm")
    with pytest.raises(ValueError, match=r"step_gemm\(choice=...\): expected one of"):
        gemm_loop.step_gemm("fast")


@contextlib.contextmanager
def without_cupy(monkeypatch, simulated):
    """``import cupy`` fails (as where it is not installed); the backend simulated or not."""
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "cupy", None)
        patch.setattr(gemm_loop, "SIMULATED", simulated)
        patch.setattr(gemm_loop, "_cublas_state", {})
        yield


@pytest.mark.parametrize("simulated", [True, False], ids=["simulated", "not-simulated"])
def test_auto_takes_the_numba_gemm_without_cupy(monkeypatch, simulated):
    with without_cupy(monkeypatch, simulated):
        chosen = gemm_loop.step_gemm("auto")
        assert chosen.name == "numba" and chosen.matmul is gemm_loop.numba_matmul
        assert ("simulator" if simulated else "CuPy") in chosen.reason
        assert gemm_loop.step_gemm("numba").matmul is gemm_loop.numba_matmul


def test_auto_takes_the_numba_gemm_under_the_simulator_even_with_cupy(monkeypatch):
    """CuPy importable (here a stand-in that would fail if used) but the backend simulated: the
    numba GEMM, without importing CuPy."""
    if not SIMULATED:
        pytest.skip("the simulator's rule")
    touched = []
    stand_in = pytypes.ModuleType("cupy")
    stand_in.__getattr__ = lambda name: touched.append(name)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "cupy", stand_in)
        patch.setattr(gemm_loop, "_cublas_state", {})
        chosen = gemm_loop.step_gemm("auto")
    assert chosen.name == "numba" and "simulator" in chosen.reason and not touched


@pytest.mark.parametrize("simulated", [True, False], ids=["simulated", "not-simulated"])
def test_cublas_that_cannot_load_is_refused_with_the_knobs_name(monkeypatch, simulated):
    with without_cupy(monkeypatch, simulated):
        with pytest.raises(RuntimeError, match="cuda_step_gemm='cublas'.*FASTLSTM_CUDA_STEP_GEMM") as raised:
            gemm_loop.step_gemm("cublas")
    message = str(raised.value)
    assert ("simulator" if simulated else "CuPy's cuBLAS did not load") in message
    assert "'auto' or 'numba'" in message and ("install CuPy" in message) != simulated


@pytest.mark.skipif(not SIMULATED, reason="counts the simulator's launches")
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_cublas_that_cannot_load_fails_a_call_before_any_kernel_runs(monkeypatch, backward):
    """Forward, or a backward whose forward ran with the numba GEMM: the error comes before
    the call's first launch, whichever loop would run."""
    problem = make_problem("gru", 2, 2, 2, 2, np.float32, seed=31)
    config = with_backend(problem["config"], "cuda")
    tape = None
    if backward:
        _, _, tape = functional.forward(config, problem["params"], problem["x"], problem["state"])
    with without_cupy(monkeypatch, SIMULATED), tuning.override(cuda_step_gemm="cublas"), \
            counted(monkeypatch) as counts:
        with pytest.raises(RuntimeError, match="cuda_step_gemm='cublas'"):
            if backward:
                functional.backward(tape, problem["dy"], problem["dstate"])
            else:
                functional.forward(config, problem["params"], problem["x"], problem["state"])
    assert counts["launches"] == 0


# ---------------------------------------------------------------- the cuBLAS branch's arguments

class HostMatrix:
    """A stand-in for a numba device array: a strided view of a host buffer, with the
    attributes CublasMatmul reads (shape, strides, dtype, device_ctypes_pointer)."""

    def __init__(self, buffer, offset, shape, strides):
        itemsize = buffer.dtype.itemsize
        self.buffer, self.dtype, self.offset = buffer, buffer.dtype, offset
        self.shape, self.element_strides = tuple(shape), tuple(strides)
        self.strides = tuple(s * itemsize for s in strides)
        self.device_ctypes_pointer = ctypes.c_void_p(buffer.ctypes.data + offset * itemsize)
        self.values = np.lib.stride_tricks.as_strided(buffer[offset:], self.shape, self.strides)

    def elements(self):
        """A mask of the buffer: True at this matrix's elements."""
        mask = np.zeros(self.buffer.shape, bool)
        np.lib.stride_tricks.as_strided(mask[self.offset:], self.shape, self.element_strides)[...] = True
        return mask


def _read(pointer, dtype):
    return np.frombuffer((ctypes.c_char * np.dtype(dtype).itemsize).from_address(pointer), dtype)[0]


class StandInCublas:
    """cuBLAS's gemm by the BLAS definition, on host memory: C (m × n, column-major, leading
    dimension ldc) = alpha · op(A) @ op(B) + beta · C, with A stored m × k (op N) or k × m (op T)
    column-major with leading dimension lda, B likewise k × n or n × k; the leading dimensions
    checked as cuBLAS checks them."""

    CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
    CUBLAS_POINTER_MODE_HOST, CUBLAS_DEFAULT_MATH = 0, 0

    def __init__(self, in_stream):
        self.calls, self.in_stream, self.modes = [], in_stream, {}

    def create(self):
        return 7

    def setPointerMode(self, handle, mode):
        self.modes["pointer"] = mode

    def setMathMode(self, handle, mode):
        self.modes["math"] = mode

    def sgemm(self, *args):
        self._gemm(np.float32, *args)

    def dgemm(self, *args):
        self._gemm(np.float64, *args)

    def _gemm(self, dtype, handle, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        assert self.in_stream(), "cuBLAS called outside numba's default stream"
        assert handle == 7 and self.modes == {"pointer": 0, "math": 0}
        assert lda >= max(1, m if op_a == self.CUBLAS_OP_N else k), ("lda", lda)
        assert ldb >= max(1, k if op_b == self.CUBLAS_OP_N else n), ("ldb", ldb)
        assert ldc >= max(1, m), ("ldc", ldc)
        self.calls.append((op_a, op_b))

        def stored(pointer, rows, cols, ld):
            flat = np.ctypeslib.as_array((ctypes.c_char * (((cols - 1) * ld + rows) * np.dtype(dtype).itemsize))
                                         .from_address(pointer)).view(dtype)
            return np.lib.stride_tricks.as_strided(flat, (rows, cols), (flat.itemsize, ld * flat.itemsize))

        op_first = stored(a, m, k, lda) if op_a == self.CUBLAS_OP_N else stored(a, k, m, lda).T
        op_second = stored(b, k, n, ldb) if op_b == self.CUBLAS_OP_N else stored(b, n, k, ldb).T
        out = stored(c, m, n, ldc)
        out[...] = _read(alpha, dtype) * (op_first.astype(np.float64) @ op_second) + _read(beta, dtype) * out


class StandInCupy:
    """``cupy.cuda.ExternalStream`` and ``cupy.cuda.Device`` as context managers that record."""

    def __init__(self):
        self.streams, self.current = [], None
        owner = self

        class ExternalStream:
            def __init__(self, pointer):
                owner.streams.append(pointer)
                self.pointer = pointer

            def __enter__(self):
                owner.current = self.pointer

            def __exit__(self, *exc):
                owner.current = None

        class Device(contextlib.nullcontext):
            def __init__(self, device_id):
                super().__init__()

        self.cuda = pytypes.SimpleNamespace(ExternalStream=ExternalStream, Device=Device)


@pytest.fixture
def stand_in_cublas(monkeypatch):
    cupy = StandInCupy()
    cublas = StandInCublas(lambda: cupy.current is not None)
    monkeypatch.delenv("CUDA_PYTHON_CUDA_PER_THREAD_DEFAULT_STREAM", raising=False)
    fallbacks = []
    monkeypatch.setattr(gemm_loop, "numba_matmul", lambda a, b, out: (fallbacks.append(a.shape),
                                                                      out.values.__setitem__(..., a.values @ b.values)))
    matmul = gemm_loop.CublasMatmul(cupy, cublas, 0)
    return matmul, cupy, cublas, fallbacks


def _random_matrix(rng, dtype, shape, layout, pad=3):
    """A HostMatrix of ``shape`` laid out as the loop's operands are: "C", "F", "T" (a transposed
    view of a C array: F's strides), "columns" (a column slice of a wider C array) or "rows" (a
    row slice of a taller one)."""
    rows, cols = shape
    buffer = rng.standard_normal((rows + pad) * (cols + pad) + pad).astype(dtype)
    if layout == "C":
        return HostMatrix(buffer, 0, shape, (cols, 1))
    if layout == "F":
        return HostMatrix(buffer, 0, shape, (1, rows))
    if layout == "T":
        return HostMatrix(buffer, 0, shape, (1, rows))   # rows × cols = transpose of a C (cols, rows)
    if layout == "columns":
        return HostMatrix(buffer, 2, shape, (cols + pad, 1))
    if layout == "rows":
        return HostMatrix(buffer, 2 * cols, shape, (cols, 1))
    raise ValueError(layout)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("m, k, n, a_layout, b_layout, out_layout", [
    (5, 4, 3, "C", "T", "columns"),        # forward: h (B, H) @ weight_hh[rows]ᵀ into projection[:, g0:g1]
    (5, 6, 4, "columns", "rows", "C"),     # backward: dgh[t][:, rows] @ weight_hh[rows] into (B, H)
    (5, 6, 4, "C", "C", "C"),
    (5, 6, 4, "F", "F", "F"),              # out column-major: cuBLAS's own layout
    (5, 6, 4, "T", "C", "columns"),
    (1, 3, 4, "C", "T", "columns"),        # one sequence
    (4, 1, 3, "C", "C", "C"),              # K = 1
    (4, 3, 1, "columns", "C", "columns"),  # one output column
])
def test_the_cublas_branch_passes_what_computes_out_equal_a_at_b(stand_in_cublas, dtype, m, k, n, a_layout,
                                                                b_layout, out_layout):
    """Every layout through cuBLAS itself (no copy, no fallback), on numba's legacy default stream
    (cudaStreamLegacy, 1), out equal to a @ b, the memory around out untouched."""
    matmul, cupy, cublas, fallbacks = stand_in_cublas
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a = _random_matrix(rng, dtype, (m, k), a_layout)
    b = _random_matrix(rng, dtype, (k, n), b_layout)
    out = _random_matrix(rng, dtype, (m, n), out_layout)
    around = out.buffer.copy()
    matmul(a, b, out)
    expected = a.values.astype(np.float64) @ b.values
    tolerance = 4 * k * np.finfo(dtype).eps * (np.abs(a.values) @ np.abs(b.values))
    assert np.all(np.abs(out.values - expected) <= tolerance)
    outside = ~out.elements()
    np.testing.assert_array_equal(out.buffer[outside], around[outside])
    assert len(cublas.calls) == 1 and not fallbacks
    assert cupy.streams == [1]


def test_operands_cublas_cannot_address_go_to_the_numba_gemm(stand_in_cublas):
    """An operand with no axis of unit stride (every other column of a C array), and K = 0: the
    numba GEMM, and the same product."""
    matmul, _, cublas, fallbacks = stand_in_cublas
    rng = np.random.default_rng(5)
    buffer = rng.standard_normal(64)
    a = HostMatrix(buffer, 0, (3, 4), (8, 2))
    b = _random_matrix(rng, np.float64, (4, 2), "C")
    out = _random_matrix(rng, np.float64, (3, 2), "C")
    matmul(a, b, out)
    np.testing.assert_allclose(out.values, a.values @ b.values, rtol=1e-13)
    empty = HostMatrix(buffer, 0, (3, 0), (1, 1))
    matmul(empty, HostMatrix(buffer, 0, (0, 2), (2, 1)), out)
    assert fallbacks == [(3, 4), (3, 0)] and not cublas.calls


def test_the_cublas_branch_checks_shapes_and_dtypes(stand_in_cublas):
    matmul = stand_in_cublas[0]
    rng = np.random.default_rng(6)
    a = _random_matrix(rng, np.float32, (3, 4), "C")
    with pytest.raises(ValueError, match=r"b: expected shape \(4, any\), got \(3, 2\)"):
        matmul(a, _random_matrix(rng, np.float32, (3, 2), "C"), _random_matrix(rng, np.float32, (3, 2), "C"))
    with pytest.raises(ValueError, match=r"a: expected dtype float64 \(out's\), got float32"):
        matmul(a, _random_matrix(rng, np.float64, (4, 2), "C"), _random_matrix(rng, np.float64, (3, 2), "C"))


def test_the_cublas_branch_follows_numbas_per_thread_default_stream(monkeypatch):
    """With CUDA Python's per-thread default stream (numba's stream 0 then is it), cuBLAS gets
    cudaStreamPerThread (2)."""
    monkeypatch.setenv("CUDA_PYTHON_CUDA_PER_THREAD_DEFAULT_STREAM", "1")
    cupy = StandInCupy()
    gemm_loop.CublasMatmul(cupy, StandInCublas(lambda: True), 0)
    assert cupy.streams == [2]

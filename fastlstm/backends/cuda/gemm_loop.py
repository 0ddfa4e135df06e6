"""The large-batch recurrent loop: per phase of each step, one GEMM, then one pointwise kernel.

Forward, step t (direction time), each forward phase of the cell (one for the LSTM, the RNN
and the reset-after GRU; two for the reset-before GRU, whose second phase projects r ⊙ h):

1. GEMM: ``projection[:, g0·H:g1·H] = source @ weight_hh[g0·H:g1·H]ᵀ``, with ``source`` the
   (B, H) states h_t (h_t ⊙ mask under recurrent dropout, which the previous step's pointwise
   kernel wrote) or the tape plane the phase projects;
2. pointwise (``forward_pointwise`` of :mod:`.recurrent`): a thread per (b, u) runs the cell's
   math on its ``projection`` values, exactly as the other loops do (``forward_unit``).

Backward, step t from the last, each backward phase k:

1. GEMM: ``projection = dG[:, r0·H:r1·H] @ weight_hh[r0·H:r1·H]``, where dG are the gate
   gradients of step t + 1 (k = 0, the rows the last phase projects) or of this step (k > 0,
   the rows phase k − 1 projects); none at the last step's phase 0;
2. pointwise (``backward_pointwise``): a thread per (b, u) runs ``backward_unit``, which
   writes the step's gate gradients for both sides and the carried state gradients.

What step 0's gate gradients send to the initial state, and the weight gradients (large GEMMs
over every step), are the driver's, as for the other loops. Every sequence's rows take part in
every step's GEMM; finished sequences are handled by the pointwise kernels (their rows of the
product are never read). The pointwise kernels take the direction's
:class:`.recurrent.ForwardDirection` / :class:`.recurrent.BackwardDirection`, built once per
call by the driver, whose ``projection`` (and forward ``masked_state``) fields are this loop's
workspaces (:func:`forward_workspaces`, :func:`backward_workspace`).

The per-step GEMM (:func:`step_gemm`, by the tuning knob ``cuda_step_gemm``) is either the
numba tiled GEMM of :mod:`.gemm` (:data:`numba_matmul`), or cuBLAS through CuPy's binding
(:class:`CublasMatmul`): "auto" takes cuBLAS when CuPy and its cuBLAS load and the backend is
not the CUDA simulator, the numba GEMM otherwise; "numba" and "cublas" force one. **The cuBLAS
branch has never run**: it was written on a machine without a GPU (December 2026);
``bench/gpu_session.py`` checks it against the numba GEMM and the reference, and times the loop
with each, on the next GPU it gets.
"""
import os
import threading
from dataclasses import dataclass

import numpy as np

from ... import tuning
from ...cells.spec import RECURRENT_INPUT
from . import arrays, gemm, workspace

SIMULATED = workspace.SIMULATED
# The numba GEMM, bound when this module loads (tests replace it here to count the step GEMMs).
numba_matmul = gemm.matmul

# cudaStreamLegacy and cudaStreamPerThread: numba launches on stream 0, which CUDA Python maps
# to the legacy default stream, or to the per-thread one when this variable is "1"
_LEGACY_STREAM, _PER_THREAD_STREAM = 1, 2
_PER_THREAD_VARIABLE = "CUDA_PYTHON_CUDA_PER_THREAD_DEFAULT_STREAM"
_INT32_MAX = 2 ** 31 - 1


@dataclass(frozen=True)
class StepGemm:
    """The per-step GEMM of the GEMM loop.

    Attributes
    ----------
    name : {"numba", "cublas"}
    matmul : callable
        ``matmul(a, b, out)``: ``out = a @ b`` for device arrays (M, K), (K, N), (M, N) of one
        float dtype and any strides, on numba's default stream, allocating nothing and not
        synchronising the host.
    reason : str
        Why this one (the knob's value, or what "auto" found).
    """

    name: str
    matmul: object
    reason: str


def step_gemm(choice=None):
    """The per-step GEMM the tuning knob ``cuda_step_gemm`` asks for.

    Parameters
    ----------
    choice : {"auto", "numba", "cublas"}, optional
        Defaults to the knob's current value (environment ``FASTLSTM_CUDA_STEP_GEMM``).

    Returns
    -------
    StepGemm
        "numba": the numba tiled GEMM. "cublas": :class:`CublasMatmul`. "auto": cuBLAS when
        CuPy and its cuBLAS load and the backend is not simulated, else the numba GEMM.

    Raises
    ------
    RuntimeError
        For "cublas" when cuBLAS cannot be used here (CuPy missing or failing to load its
        cuBLAS, or the CUDA simulator): the message names the knob and the reason.
    ValueError
        For a ``choice`` the knob does not take.
    """
    if choice is None:
        choice = tuning.get("cuda_step_gemm")
    else:
        choice = tuning.TUNABLES["cuda_step_gemm"].parse(choice, "step_gemm(choice=...)")
    if choice == "numba":
        return StepGemm("numba", numba_matmul, "forced by cuda_step_gemm='numba'")
    matmul, why_not = _cublas_matmul()
    if choice == "cublas":
        if matmul is None:
            install = "" if SIMULATED else "install CuPy for this CUDA version (e.g. pip install cupy-cuda12x), or "
            raise RuntimeError(f"the tuning knob cuda_step_gemm='cublas' (environment FASTLSTM_CUDA_STEP_GEMM) "
                               f"asks for cuBLAS, which cannot be used here: {why_not}; {install}set the knob to "
                               f"'auto' or 'numba'")
        return StepGemm("cublas", matmul, "forced by cuda_step_gemm='cublas'")
    if matmul is None:
        return StepGemm("numba", numba_matmul, f"auto: {why_not}")
    return StepGemm("cublas", matmul, "auto: CuPy's cuBLAS loaded")


_cublas_state = {}


def _cublas_matmul():
    """(the process's :class:`CublasMatmul`, None) or (None, why not), found once per process."""
    if SIMULATED:
        return None, "the CUDA simulator has no cuBLAS (NUMBA_ENABLE_CUDASIM=1)"
    if "result" not in _cublas_state:
        try:
            import cupy
            from cupy.cuda import cublas
            from numba import cuda

            _cublas_state["result"] = CublasMatmul(cupy, cublas, cuda.get_current_device().id), None
        except Exception as error:  # noqa: BLE001 — CuPy raises ImportError, OSError, its CUDA errors...
            _cublas_state["result"] = None, f"CuPy's cuBLAS did not load ({type(error).__name__}: {error})"
    return _cublas_state["result"]


def _element_strides(array):
    """``array``'s strides in elements, or None where one is not a whole number of them."""
    itemsize = array.dtype.itemsize
    if any(s % itemsize for s in array.strides):
        return None
    return tuple(s // itemsize for s in array.strides)


class CublasMatmul:
    """``out = a @ b`` by cuBLAS's sgemm/dgemm (CuPy's binding), on numba device arrays.

    No CuPy array is made: cuBLAS gets the arrays' device pointers and leading dimensions, so
    row-major operands, transposed views (:func:`.gemm.transposed`) and column slices (the
    loop's ``projection[:, g0:g1]`` and ``dgh[t][:, rows]``) are read and written in place.
    (``cupy.cublas.gemm`` and ``cupy.matmul`` copy a non-contiguous operand or ``out`` into a
    new array and back.) A row-major product is the column-major product of the transposes:
    ``outᵀ = bᵀ @ aᵀ``. Operands cuBLAS cannot address (no axis of unit stride, or a size past
    its 32-bit integers), and K = 0, go to the numba GEMM.

    The work is queued on numba's default stream (CuPy's current stream is set to it around
    each call, which CuPy's binding hands to cuBLAS), on a cuBLAS handle of its own (host
    pointer mode, default math: no TF32 in float32) created once on first use and used by one
    thread at a time: nothing is allocated by fastlstm and the host is not synchronised.
    **Never run on a GPU yet.**

    Parameters
    ----------
    cupy, cublas : modules
        ``cupy`` and ``cupy.cuda.cublas``.
    device_id : int
        The GPU of numba's current context, where the handle is created.
    """

    def __init__(self, cupy, cublas, device_id):
        self._gemm = {np.dtype(np.float32): cublas.sgemm, np.dtype(np.float64): cublas.dgemm}
        self._n, self._t = cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_T
        stream = _PER_THREAD_STREAM if os.environ.get(_PER_THREAD_VARIABLE) == "1" else _LEGACY_STREAM
        self._stream = cupy.cuda.ExternalStream(stream)
        with cupy.cuda.Device(device_id):
            # kept for the process's life (destroying it at exit could outlive the context)
            self._handle = cublas.create()
        cublas.setPointerMode(self._handle, cublas.CUBLAS_POINTER_MODE_HOST)
        cublas.setMathMode(self._handle, cublas.CUBLAS_DEFAULT_MATH)
        self._lock = threading.Lock()
        # alpha = 1 and beta = 0, read from host memory by each call
        self._scalars = {dtype: (np.ones(1, dtype), np.zeros(1, dtype)) for dtype in self._gemm}

    def __call__(self, a, b, out):
        """out = a @ b.

        Parameters
        ----------
        a : device array, shape (M, K)
        b : device array, shape (K, N)
        out : device array, shape (M, N)
            Written in place; must not overlap ``a`` or ``b``.

        Raises
        ------
        ValueError
            When a shape does not match the others, or the dtypes differ or are not float32 or
            float64 (naming the argument, the expected and the given).
        """
        gemm._check_shape("a", a, (None, None))
        rows, depth = a.shape
        gemm._check_shape("b", b, (depth, None))
        cols = b.shape[1]
        gemm._check_shape("out", out, (rows, cols))
        call = self._gemm.get(out.dtype)
        if call is None:
            raise ValueError(f"out: expected dtype float32 or float64, got {out.dtype}")
        for name, operand in (("a", a), ("b", b)):
            if operand.dtype != out.dtype:
                raise ValueError(f"{name}: expected dtype {out.dtype} (out's), got {operand.dtype}")
        if rows == 0 or cols == 0:
            return
        arguments = self._arguments(a, b, out) if depth > 0 else None
        if arguments is None:
            numba_matmul(a, b, out)
            return
        one, zero = self._scalars[out.dtype]
        op_first, op_second, m, n, k, first, ld_first, second, ld_second, ldc = arguments
        with self._lock, self._stream:
            call(self._handle, op_first, op_second, m, n, k, one.ctypes.data, first.device_ctypes_pointer.value,
                 ld_first, second.device_ctypes_pointer.value, ld_second, zero.ctypes.data,
                 out.device_ctypes_pointer.value, ldc)

    def _arguments(self, a, b, out):
        """cuBLAS's (op_A, op_B, m, n, k, A, lda, B, ldb, ldc) for out = a @ b, or None."""
        strides = [_element_strides(x) for x in (a, b, out)]
        if None in strides:
            return None
        (sa0, sa1), (sb0, sb1), (so0, so1) = strides
        rows, depth = a.shape
        cols = b.shape[1]
        direct = self._layout(rows, cols, so0, so1)
        if direct is not None and direct[0] == self._n:     # out column-major: out = a @ b
            m, n, first, second = rows, cols, (a, rows, depth, sa0, sa1), (b, depth, cols, sb0, sb1)
            ldc = direct[1]
        else:                                                # out row-major: outᵀ = bᵀ @ aᵀ
            transposed = self._layout(cols, rows, so1, so0)
            if transposed is None or transposed[0] != self._n:
                return None
            m, n, first, second = cols, rows, (b, cols, depth, sb1, sb0), (a, depth, rows, sa1, sa0)
            ldc = transposed[1]
        layouts = [self._layout(*operand[1:]) for operand in (first, second)]
        if None in layouts:
            return None
        (op_first, ld_first), (op_second, ld_second) = layouts
        if max(m, n, depth, ld_first, ld_second, ldc) > _INT32_MAX:
            return None
        return op_first, op_second, m, n, depth, first[0], ld_first, second[0], ld_second, ldc

    def _layout(self, rows, cols, row_stride, col_stride):
        """(op, leading dimension) of a rows × cols matrix with these element strides, as cuBLAS
        (column-major) reads it: op N where the rows are contiguous, op T (its transpose stored)
        where the columns are; None otherwise, or where the leading dimension would be below
        what cuBLAS requires (the stored matrix's rows)."""
        if rows == 1 or row_stride == 1:
            ld = col_stride if cols > 1 else rows
            return (self._n, ld) if ld >= rows else None
        if cols == 1 or col_stride == 1:
            ld = row_stride
            return (self._t, ld) if ld >= cols else None
        return None


# ---------------------------------------------------------------- the loop

def forward_workspaces(spec, states, reg):
    """The forward loop's workspaces, for :class:`.recurrent.ForwardDirection`.

    Parameters
    ----------
    spec : fastlstm.cells.spec.CellSpec
    states : device array, (S, T+1, B, H), states[:, 0] set
    reg : .recurrent.InLoop

    Returns
    -------
    projection : device array, (B, G·H)
        The step GEMMs' product.
    masked_state : device array, (B, H) = h_0 ⊙ mask under recurrent dropout, else (0, 0)
        The first step's GEMM input; each step's pointwise kernel writes the next one's.
    """
    batch, hidden, dtype = states.shape[2], states.shape[3], states.dtype
    projection = workspace.empty((batch, len(spec.gates) * hidden), dtype)
    masked = reg.mask.size > 0
    masked_state = arrays.times(states[0, 0], reg.mask) if masked else workspace.empty((0, 0), dtype)
    return projection, masked_state


def backward_workspace(states):
    """The backward loop's step product, (B, H), for :class:`.recurrent.BackwardDirection`."""
    return workspace.empty((states.shape[2], states.shape[3]), states.dtype)


def forward(loops, loop, spec, weight_hh, direction_arrays, step_matmul):
    """Run one direction's forward loop, every step.

    Parameters
    ----------
    loops : the compiled kernels (``forward_pointwise``), of the cell, dtype and regularisers
    loop : .plan.LoopPlan of kind "gemm"
    spec : fastlstm.cells.spec.CellSpec
    weight_hh : device array, (G·H, H)
    direction_arrays : .recurrent.ForwardDirection
        The direction's arrays, its ``projection`` and ``masked_state`` from
        :func:`forward_workspaces`; passed as it is to every pointwise launch.
    step_matmul : callable, ``StepGemm.matmul`` of :func:`step_gemm`
    """
    states, tape = direction_arrays.states, direction_arrays.tape
    steps, hidden = direction_arrays.xproj.shape[0], states.shape[3]
    if steps == 0:
        return
    masked = direction_arrays.reg.mask.size > 0
    keep = direction_arrays.keep
    # per phase, what does not change from step to step: the weights' view and the product's columns
    phases = []
    for index, phase in enumerate(spec.forward):
        g0, g1 = phase.gates[0] * hidden, phase.gates[1] * hidden
        phases.append((index, phase.source, gemm.transposed(weight_hh[g0:g1]), direction_arrays.projection[:, g0:g1]))
    pointwise = loops.forward_pointwise[loop.blocks, loop.threads]
    for t in range(steps):
        for index, source_plane, weights, product in phases:
            if source_plane == RECURRENT_INPUT:
                source = direction_arrays.masked_state if masked else states[0, t]
            else:
                source = tape[source_plane, t * keep]
            step_matmul(source, weights, product)
            pointwise(direction_arrays, t, index)


def backward(loops, loop, spec, weight_hh, direction_arrays, step_matmul):
    """Run one direction's backward loop, every step from the last.

    Parameters
    ----------
    loops : the compiled kernels (``backward_pointwise``)
    loop : .plan.LoopPlan of kind "gemm"
    spec : fastlstm.cells.spec.CellSpec
    weight_hh : device array, (G·H, H)
    direction_arrays : .recurrent.BackwardDirection
        The direction's arrays, its ``projection`` from :func:`backward_workspace`; passed as it
        is to every pointwise launch.
    step_matmul : callable, ``StepGemm.matmul`` of :func:`step_gemm`
    """
    dgh, hidden = direction_arrays.dgh, direction_arrays.states.shape[3]
    steps = dgh.shape[0]
    if steps == 0:
        return
    projection = direction_arrays.projection
    phases = spec.backward
    # per phase: the later step's (phase 0) or this step's gate rows it projects, and those rows of weight_hh
    projected = []
    for index in range(len(phases)):
        r0, r1 = (phases[-1] if index == 0 else phases[index - 1]).projects
        rows = slice(r0 * hidden, r1 * hidden)
        projected.append((index, 1 if index == 0 else 0, rows, weight_hh[rows]))
    pointwise = loops.backward_pointwise[loop.blocks, loop.threads]
    for t in range(steps - 1, -1, -1):
        for index, later, rows, weights in projected:
            if t + later < steps:
                step_matmul(dgh[t + later][:, rows], weights, projection)
            pointwise(direction_arrays, t, index)

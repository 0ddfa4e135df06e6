"""The cuda backend's GEMM and column reductions, as Numba CUDA kernels.

Everything here works on numba device arrays of one float dtype (float32 or float64), of
any strides, and launches on the default stream: no host round trip and no allocation.
Each kernel has ONE compiled signature per dtype, with every array typed with layout 'A'
(any strides), so that C-contiguous arrays, transposed views and slices all run the same
machine code; it is compiled (or loaded from Numba's cache) on the first call for that
dtype. :func:`ptx_signatures` lists those signatures.

Transposed operands: a numba ``DeviceNDArray``'s ``.T``/``.transpose()`` is not a view on
a real GPU (numba-cuda copies it into a new array with a transpose kernel that it compiles
again on every call); :func:`transposed` gives the view.
"""
import numba
import numpy as np
from numba import cuda, types

from ... import tuning
from . import workspace

# matmul: each block of THREADS × THREADS threads computes a TILE × TILE tile of the
# output, every thread PER_THREAD × PER_THREAD of its values, strided by THREADS (so that
# neighbouring threads touch neighbouring columns); K advances by TILE_K, the A and B
# tiles staged through shared memory.
TILE = 64
TILE_K = 16
THREADS = 16
PER_THREAD = TILE // THREADS
# Elements of one operand tile that each thread loads per K step.
LOADS = TILE * TILE_K // (THREADS * THREADS)
# Shared-memory rows are one element longer than a tile, so that the threads of a warp that
# store down a column (an operand whose K axis is contiguous) fall into different banks.
_PADDED = TILE + 1

# column_sums / column_dots: blocks of COLUMN_THREADS columns × ROW_THREADS rows, each block
# summing a chunk of at least ROWS_PER_CHUNK rows of its columns.
COLUMN_THREADS = 32
ROW_THREADS = 8
ROWS_PER_CHUNK = 256
_MAX_GRID_Y = 65535

_FILL_THREADS = 256


def _matmul_kernel(a, b, out, bias, accumulate, has_bias):
    a_tile = cuda.shared.array((TILE_K, _PADDED), a.dtype)
    b_tile = cuda.shared.array((TILE_K, _PADDED), a.dtype)
    acc = cuda.local.array((PER_THREAD, PER_THREAD), a.dtype)
    a_column = cuda.local.array(PER_THREAD, a.dtype)
    b_row = cuda.local.array(PER_THREAD, a.dtype)
    # A literal 0.0 would be float64 and promote float32 sums: the dtype's own zero instead.
    zero = out.dtype.type(0)

    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    thread = ty * THREADS + tx
    m0 = cuda.blockIdx.x * TILE
    n0 = cuda.blockIdx.y * TILE
    rows, depth = a.shape
    cols = b.shape[1]
    # Load each tile along whichever axis is contiguous in memory (the same for the whole
    # block), so that neighbouring threads read neighbouring addresses.
    a_along_k = abs(a.strides[1]) <= abs(a.strides[0])
    b_along_k = abs(b.strides[0]) <= abs(b.strides[1])

    for i in range(PER_THREAD):
        for j in range(PER_THREAD):
            acc[i, j] = zero

    for k0 in range(0, depth, TILE_K):
        for load in range(LOADS):
            if a_along_k:
                kk = thread % TILE_K
                mm = thread // TILE_K + load * (THREADS * THREADS // TILE_K)
            else:
                mm = thread % TILE
                kk = thread // TILE + load * (THREADS * THREADS // TILE)
            m = m0 + mm
            k = k0 + kk
            a_tile[kk, mm] = a[m, k] if m < rows and k < depth else zero
            if b_along_k:
                kk = thread % TILE_K
                nn = thread // TILE_K + load * (THREADS * THREADS // TILE_K)
            else:
                nn = thread % TILE
                kk = thread // TILE + load * (THREADS * THREADS // TILE)
            n = n0 + nn
            k = k0 + kk
            b_tile[kk, nn] = b[k, n] if k < depth and n < cols else zero
        cuda.syncthreads()
        for kk in range(TILE_K):
            for i in range(PER_THREAD):
                a_column[i] = a_tile[kk, ty + i * THREADS]
                b_row[i] = b_tile[kk, tx + i * THREADS]
            for i in range(PER_THREAD):
                for j in range(PER_THREAD):
                    acc[i, j] += a_column[i] * b_row[j]
        cuda.syncthreads()

    for i in range(PER_THREAD):
        m = m0 + ty + i * THREADS
        if m < rows:
            for j in range(PER_THREAD):
                n = n0 + tx + j * THREADS
                if n < cols:
                    value = acc[i, j]
                    if accumulate:
                        value += out[m, n]
                    if has_bias:
                        value += bias[n]
                    out[m, n] = value


def _column_reduce_kernel(a, b, out, products, partials):
    partial = cuda.shared.array((ROW_THREADS, COLUMN_THREADS), a.dtype)
    zero = out.dtype.type(0)  # the dtype's own zero, as in _matmul_kernel

    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    rows, cols = a.shape
    j = cuda.blockIdx.x * COLUMN_THREADS + tx
    chunk = (rows + cuda.gridDim.y - 1) // cuda.gridDim.y
    first = cuda.blockIdx.y * chunk
    last = min(rows, first + chunk)

    total = zero
    if j < cols:
        for i in range(first + ty, last, ROW_THREADS):
            if products:
                total += a[i, j] * b[i, j]
            else:
                total += a[i, j]
    partial[ty, tx] = total
    cuda.syncthreads()
    if ty == 0 and j < cols:
        for t in range(1, ROW_THREADS):
            total += partial[t, tx]
        if partials.shape[0] > 0:
            partials[cuda.blockIdx.y, j] = total
        else:
            cuda.atomic.add(out, j, total)


def _sum_partials_kernel(partials, out):
    """out[j] += Σ_c partials[c, j], the chunks added in order (the "ordered" reductions)."""
    j = cuda.grid(1)
    if j < out.shape[0]:
        total = out[j]
        for c in range(partials.shape[0]):
            total += partials[c, j]
        out[j] = total


def _fill_zero_kernel(out):
    j = cuda.grid(1)
    if j < out.shape[0]:
        out[j] = out.dtype.type(0)


def _argument_types(function, dtype):
    scalar = numba.from_dtype(np.dtype(dtype))
    matrix = types.Array(scalar, 2, "A")
    vector = types.Array(scalar, 1, "A")
    if function is _matmul_kernel:
        return (matrix, matrix, matrix, vector, types.boolean, types.boolean)
    if function is _column_reduce_kernel:
        return (matrix, matrix, vector, types.boolean, matrix)
    if function is _sum_partials_kernel:
        return (matrix, vector)
    return (vector,)


_KERNEL_FUNCTIONS = (_matmul_kernel, _column_reduce_kernel, _sum_partials_kernel, _fill_zero_kernel)
_kernels = {}


def _kernel(function, dtype):
    """``function``'s dispatcher for ``dtype``, compiled (or loaded from the cache) once."""
    dtype = np.dtype(dtype)
    kernel = _kernels.get((function, dtype))
    if kernel is None:
        signature = types.void(*_argument_types(function, dtype))
        # A signature list (not a single signature) keeps the dispatcher checking argument
        # types: C- and F-contiguous arrays convert to the 'A' layout, another dtype fails.
        kernel = _kernels[function, dtype] = cuda.jit([signature], cache=True)(function)
    return kernel


def _check_shape(name, array, expected):
    """Raise ValueError unless ``array.shape`` matches ``expected`` (None: any length)."""
    shape = tuple(array.shape)
    if len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected)):
        return
    wanted = ", ".join("any" if e is None else str(e) for e in expected)
    wanted = f"({wanted},)" if len(expected) == 1 else f"({wanted})"
    raise ValueError(f"{name}: expected shape {wanted}, got {shape}")


def _ceil_div(a, b):
    return -(-a // b)


def matmul(a, b, out, bias=None, accumulate=False):
    """out = a @ b (+ out when accumulating) (+ bias on every row), on the device.

    A tiled shared-memory kernel: every block computes a 64 × 64 tile of ``out``, each of
    its 16 × 16 threads 4 × 4 values, in the arrays' dtype.

    Parameters
    ----------
    a : device array, shape (M, K)
    b : device array, shape (K, N)
    out : device array, shape (M, N)
        Written in place (any strides); must not overlap ``a``, ``b`` or ``bias``.
    bias : device array, shape (N,), optional
        Added to every row.
    accumulate : bool, default False
        Add the product to ``out``'s previous values instead of overwriting them.

    Raises
    ------
    ValueError
        When a shape does not match the others (naming the argument, the expected and
        the given shape).

    Notes
    -----
    All arrays have the same float dtype (float32 or float64) and any strides. K = 0 gives
    zeros (plus ``bias`` and the previous values); M = 0 or N = 0 launches nothing.
    """
    _check_shape("a", a, (None, None))
    rows, depth = a.shape
    _check_shape("b", b, (depth, None))
    cols = b.shape[1]
    _check_shape("out", out, (rows, cols))
    if bias is not None:
        _check_shape("bias", bias, (cols,))
    if rows == 0 or cols == 0:
        return
    # Without a bias the kernel still takes a vector: a row of out, never read.
    bias_argument = out[0] if bias is None else bias
    grid = (_ceil_div(rows, TILE), _ceil_div(cols, TILE))
    _kernel(_matmul_kernel, out.dtype)[grid, (THREADS, THREADS)](
        a, b, out, bias_argument, bool(accumulate), bias is not None)


def _column_reduce(a, b, out, products, accumulate):
    rows, cols = a.shape
    if cols == 0:
        return
    if not accumulate:
        _kernel(_fill_zero_kernel, out.dtype)[_ceil_div(cols, _FILL_THREADS), _FILL_THREADS](out)
    if rows == 0:
        return
    # Row chunks are summed by separate blocks. "atomic" adds each chunk's sums into out as
    # it finishes, in whatever order the blocks run, so float results may differ in the last
    # bits from run to run; "ordered" writes them to a (chunks, N) scratch array and a second
    # kernel adds them in chunk order: the same bits every run.
    chunks = min(_MAX_GRID_Y, _ceil_div(rows, ROWS_PER_CHUNK))
    grid = (_ceil_div(cols, COLUMN_THREADS), chunks)
    ordered = chunks > 1 and tuning.get("cuda_reductions") == "ordered"
    partials = workspace.empty((chunks, cols) if ordered else (0, 0), out.dtype)
    _kernel(_column_reduce_kernel, out.dtype)[grid, (COLUMN_THREADS, ROW_THREADS)](a, b, out, products, partials)
    if ordered:
        _kernel(_sum_partials_kernel, out.dtype)[_ceil_div(cols, _FILL_THREADS), _FILL_THREADS](partials, out)


def column_sums(a, out, accumulate=False):
    """out[j] = Σ_i a[i, j] (+ out[j] when accumulating), on the device.

    Parameters
    ----------
    a : device array, shape (M, N)
    out : device array, shape (N,)
        Written in place; must not overlap ``a``.
    accumulate : bool, default False
        Add the sums to ``out``'s previous values instead of overwriting them.

    Raises
    ------
    ValueError
        When ``out``'s shape is not (N,) (or ``a`` is not 2-d).

    Notes
    -----
    Same float dtype for both, any strides. Blocks of rows are summed separately and
    combined with atomic adds, so the last bits may vary from run to run, or, with the
    tuning knob ``cuda_reductions="ordered"``, added in a fixed order (the same bits every
    run). M = 0 gives zeros (or leaves ``out`` as it is when accumulating).
    """
    _check_shape("a", a, (None, None))
    _check_shape("out", out, (a.shape[1],))
    _column_reduce(a, a, out, False, accumulate)


def column_dots(a, b, out, accumulate=False):
    """out[j] = Σ_i a[i, j] · b[i, j] (+ out[j] when accumulating), on the device.

    Parameters
    ----------
    a : device array, shape (M, N)
    b : device array, shape (M, N)
    out : device array, shape (N,)
        Written in place; must not overlap ``a`` or ``b``.
    accumulate : bool, default False
        Add the dot products to ``out``'s previous values instead of overwriting them.

    Raises
    ------
    ValueError
        When ``b``'s or ``out``'s shape does not match ``a``'s.

    Notes
    -----
    As :func:`column_sums`: same float dtype, any strides, row blocks combined atomically
    or in order (``cuda_reductions``).
    """
    _check_shape("a", a, (None, None))
    _check_shape("b", b, tuple(a.shape))
    _check_shape("out", out, (a.shape[1],))
    _column_reduce(a, b, out, True, accumulate)


def transposed(a):
    """The transpose of a 2-d device array, as a view of the same memory.

    Parameters
    ----------
    a : device array, shape (M, N)

    Returns
    -------
    device array, shape (N, M)
        ``a``'s memory with the strides swapped: nothing is copied nor launched (unlike
        numba-cuda's ``DeviceNDArray.T``, which copies). Under the CUDA simulator, where
        ``.T`` already is a view, it is ``a.T``.
    """
    _check_shape("a", a, (None, None))
    if getattr(a, "gpu_data", None) is None:
        return a.T
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray(shape=tuple(a.shape)[::-1], strides=tuple(a.strides)[::-1], dtype=a.dtype,
                         stream=a.stream, gpu_data=a.gpu_data)


def ptx_signatures(dtype):
    """Every kernel this module launches for ``dtype``, with its one signature.

    Parameters
    ----------
    dtype : {np.float32, np.float64}

    Returns
    -------
    list of (function, numba.core.typing.Signature)
        The kernels' Python functions and the signatures they are compiled with (every
        array with layout 'A', which C-contiguous arrays and transposed views both take),
        e.g. for ``numba.cuda.compile_ptx(function, signature, cc=(9, 0))``.
    """
    return [(function, types.void(*_argument_types(function, dtype))) for function in _KERNEL_FUNCTIONS]

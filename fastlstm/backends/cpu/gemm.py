"""The large products around the time loops, split into blocks across Numba's threads.

The input projections and ``dx`` run the tile kernel (:mod:`.tiles`) on a packed weight, in
row blocks; the weight gradients are single-threaded BLAS calls on row or column blocks (BLAS
held to one thread, see ``threads``). Inside a call Numba's threads own the cores, and every
split depends on the shapes alone (:func:`.units.block_count`), so that results do not depend
on the thread count.
"""
import numpy as np

from ... import tuning
from .calls import value_at
from .regions import VALUES, blocks_runner, run_blocks
from .tiles import panel_columns, product_bias_at, walk_address
from .units import block_count

# Rows of a column slice copied at a time by ``weight_gradient`` (a few hundred KiB at most).
_BLOCK_ROWS = 256


def _parallel(flops):
    """Whether work of ``flops`` runs its blocks across threads (else one after the other, in the
    calling thread: the same blocks, so the same bits). Small work gains less from the threads
    than a parallel region costs, and beside a busy process a region waits for every thread."""
    return flops >= tuning.get("parallel_flops")


def matmul(a, panels, out, bias=None):
    """out = a @ b (+ bias), with a (M, K) rows contiguous, b (K, N) packed by :func:`.tiles.pack`
    or :func:`.tiles.pack_transposed`, out (M, N), bias (N,) or None; each block's product the
    tile kernel's (no BLAS: the forward calls none).

    Blocks of at least ``gemm_rows`` rows; a product of few rows (the input projection of a
    short call with a small batch) is split by whole panels of columns as well, so that it
    still has ``gemm_blocks`` blocks to share among the threads.
    """
    matmul_runner(a, panels, out, bias)(a, out)


def matmul_split(rows, inner, columns, dtype):
    """How :func:`matmul` splits an (M, K) by (K, N) product: ``(row_blocks, column_blocks,
    panel, parallel)``, its blocks :func:`matmul_block`'s, run across threads if ``parallel``."""
    row_blocks = block_count(rows, tuning.get("gemm_rows"))
    panel = panel_columns(dtype)
    column_blocks = block_count(-(-columns // panel), 1, max(1, tuning.get("gemm_blocks") // row_blocks))
    return row_blocks, column_blocks, panel, _parallel(2.0 * rows * inner * columns)


def matmul_runner(a, panels, out, bias=None):
    """``run(a, out)``: :func:`matmul` of ``panels`` and ``bias`` on any ``a`` and ``out`` of the
    shapes and types of these, its split and compiled blocks found once."""
    row_blocks, column_blocks, panel, parallel = matmul_split(out.shape[0], a.shape[1], out.shape[1], out.dtype)
    bias = np.empty(0, out.dtype) if bias is None else bias
    run = blocks_runner(matmul_block, row_blocks * column_blocks, (a, panels, out, bias), walk_address(out.dtype),
                        row_blocks, column_blocks, panel, parallel=parallel)
    return lambda a, out: run((a, panels, out, bias))


def matmul_block(block, address, walk_code, row_blocks, column_blocks, panel, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`matmul`; its values (a, panels, out, bias),
    ``bias`` empty: none."""
    a, panels, out, bias = value_at(address, VALUES)
    rows, columns = out.shape
    inner = a.shape[1]
    column_panels = -(-columns // panel)
    rb, cb = block // column_blocks, block % column_blocks
    r0, r1 = rb * rows // row_blocks, (rb + 1) * rows // row_blocks
    c0 = cb * column_panels // column_blocks * panel
    c1 = min(columns, (cb + 1) * column_panels // column_blocks * panel)
    product_bias_at(walk_code, a[r0:r1], panels[c0 * inner:], bias[c0:c1], out[r0:r1, c0:c1])


def _rows_product(block, address, i0, i1, i2, i3, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`weight_gradient` by rows; its values (dgates,
    inputs, weight_parts, bias_parts): weight_parts[block] = dgates[r0:r1]ᵀ inputs[r0:r1] and
    bias_parts[block] = Σ dgates[r0:r1], the block's rows."""
    dgates, inputs, weight_parts, bias_parts = value_at(address, VALUES)
    chunks, rows = weight_parts.shape[0], dgates.shape[0]
    r0, r1 = block * rows // chunks, (block + 1) * rows // chunks
    bias = bias_parts[block]
    np.dot(dgates[r0:r1].T, inputs[r0:r1], weight_parts[block])
    bias[:] = 0
    for r in range(r0, r1):
        for c in range(bias.shape[0]):
            bias[c] += dgates[r, c]


def _columns_product(block, address, col0, chunks, i2, i3, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`weight_gradient` by columns; its values
    (dgates, inputs, weight, bias): the block's columns [col0 + c0, col0 + c1) of dgates, their
    Σ gᵀ inputs into weight[c0:c1] and Σ g into bias[c0:c1], the rows walked in blocks copied to
    a small contiguous buffer."""
    dgates, inputs, weight, bias = value_at(address, VALUES)
    c0, c1 = block * weight.shape[0] // chunks, (block + 1) * weight.shape[0] // chunks
    rows, width, inner = dgates.shape[0], c1 - c0, inputs.shape[1]
    rows_block = np.empty((_BLOCK_ROWS, width), dgates.dtype)
    product = np.empty((width, inner), dgates.dtype)
    weight[c0:c1] = 0
    bias[c0:c1] = 0
    for start in range(0, rows, _BLOCK_ROWS):
        count = min(_BLOCK_ROWS, rows - start)
        for r in range(count):
            for c in range(width):
                value = dgates[start + r, col0 + c0 + c]
                rows_block[r, c] = value
                bias[c0 + c] += value
        np.dot(rows_block[:count].T, inputs[start:start + count], product)
        for c in range(width):
            for k in range(inner):
                weight[c0 + c, k] += product[c, k]


def weight_gradient(dgates, col0, col1, inputs):
    """A weight gradient and its bias gradient, summed over every row (time step × sequence).

    With every column, each of at most ``gradient_partials`` row blocks is summed by one BLAS
    call into a partial gradient (the faster way: measured 256 vs 217 GFLOP/s at
    1024 × 1536 × 512), and the partials are added in order. With a slice of the columns, each
    column block walks all rows in blocks of ``_BLOCK_ROWS``, copying its columns into a small
    contiguous buffer for one BLAS call per block. Both splits depend on the shapes alone.

    Parameters
    ----------
    dgates : ndarray, shape (M, N), C-contiguous: gate pre-activation gradients
    col0, col1 : int, the columns of ``dgates`` to use
    inputs : ndarray, shape (M, K), C-contiguous: what those gates multiplied

    Returns
    -------
    weight : ndarray, shape (col1 − col0, K), Σ_m g_mᵀ inputs_m
    bias : ndarray, shape (col1 − col0,), Σ_m g_m
    """
    rows, width, inner = dgates.shape[0], col1 - col0, inputs.shape[1]
    parallel = _parallel(2.0 * rows * width * inner)
    if col0 == 0 and col1 == dgates.shape[1]:
        chunks = block_count(rows, tuning.get("gemm_rows"), tuning.get("gradient_partials"))
        weight_parts = np.empty((chunks, width, inner), dgates.dtype)
        bias_parts = np.empty((chunks, width), dgates.dtype)
        run_blocks(_rows_product, chunks, (dgates, inputs, weight_parts, bias_parts), parallel=parallel)
        if chunks == 1:
            return weight_parts[0], bias_parts[0]
        # the partials added in the order of the blocks (NumPy reduces a leading axis in order)
        return np.add.reduce(weight_parts, axis=0), np.add.reduce(bias_parts, axis=0)
    weight, bias = np.empty((width, inner), dgates.dtype), np.empty(width, dgates.dtype)
    chunks = block_count(width, tuning.get("gradient_columns"))
    run_blocks(_columns_product, chunks, (dgates, inputs, weight, bias), col0, chunks, parallel=parallel)
    return weight, bias

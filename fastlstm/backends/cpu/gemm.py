"""The large products around the time loops, split into blocks across Numba's threads.

The input projections and ``dx`` run the tile kernel (:mod:`.tiles`) on a packed weight, in
row blocks, but for a ``dx`` too :func:`narrow` for its register tile (few inputs), and, where
MKL runs, the input projections large both ways (:func:`on_blas`), which run single-threaded
BLAS calls (:mod:`.blas`; BLAS held to one thread, see ``threads``) on blocks of rows, on the
weight as stored, as the weight gradients do on blocks of rows or of gate columns. Inside a call
Numba's threads own the cores, and every split depends on the shapes alone
(:func:`.units.block_count`), so that results do not depend on the thread count.
"""
import numpy as np
from numba import njit

from ... import tuning
from .blas import gemm_address, gemm_at, product_at, product_transposed_at, runs_mkl
from .calls import value_at
from .regions import VALUES, blocks_runner
from .tiles import lanes, panel_columns, product_bias_at, walk_address
from .units import block_count


def narrow(columns, dtype):
    """Whether a product with ``columns`` output columns is too narrow for the tile kernel: fewer
    than one SIMD vector of them (:func:`.tiles.lanes`), so that its register tile holds
    ``TILE_ROWS`` partly empty vectors of sums, fewer than the FMA units need in flight. BLAS
    (:func:`product`) runs such a ``dx`` 1.1–3× faster; at one whole vector the two are even
    (``bench/projection_kernels.py --narrow``)."""
    return columns < lanes(dtype)


def _parallel(flops, nbytes):
    """Whether work of ``flops`` that reads and writes ``nbytes`` of rows and output runs its
    blocks across threads (else one after the other, in the calling thread: the same blocks, so
    the same bits). Small work gains less from the threads than a parallel region costs, and
    beside a busy process a region waits for every thread; a product of few inputs and many rows
    is small in flops and large in bytes, which one thread writes at a fraction of two's rate."""
    return flops + nbytes * tuning.get("parallel_byte_flops") >= tuning.get("parallel_flops")


def on_blas(rows, inner, columns, dtype):
    """Whether an input projection of (``rows`` × ``inner``) by (``inner`` × ``columns``) runs on
    MKL's GEMM (:func:`matmul` with ``blas``) rather than on the tile kernel: where MKL runs
    (:func:`.blas.runs_mkl`) and the product is large every way, at least ``mkl_product_rows`` rows
    and ``mkl_product_side`` inputs and outputs. There MKL, its blocks of rows on Numba's threads
    as the tile kernel's, took 0.79–0.97 of the tile kernel's time; with fewer rows as much or
    more, with fewer inputs (the tile kernel's fixed cost per row of the output spread over more
    of them) or outputs up to 1.5 times as much (``bench/blas_gemm.py --products``). (A ``dx`` as
    large ran 0.97–1.00 of the tile kernel's time on MKL, and raised a training step's peak memory
    by 0.7 MiB: it stays on the tile kernel.)"""
    side = tuning.get("mkl_product_side")
    if rows < tuning.get("mkl_product_rows") or inner < side or columns < side:
        return False
    return runs_mkl(dtype, 2.0 * rows * inner * columns / _row_blocks(rows))


def _row_blocks(rows):
    """The blocks of rows of a product on BLAS: at least ``gemm_rows`` rows each, at most
    ``gradient_blocks`` of them (fewer, larger calls pack their inputs fewer times)."""
    return block_count(rows, tuning.get("gemm_rows"), tuning.get("gradient_blocks"))


def matmul(a, weight, out, bias=None, blas=False):
    """out = a @ b (+ bias), with a (M, K) rows contiguous, out (M, N), bias (N,) or None, and
    ``weight`` b: packed by :func:`.tiles.pack` or :func:`.tiles.pack_transposed` for the tile
    kernel; or, with ``blas`` (see :func:`on_blas`), bᵀ as stored, (N, K) C-contiguous, flattened.

    On the tile kernel, blocks of at least ``gemm_rows`` rows; a product of few rows (the input
    projection of a short call with a small batch) is split by whole panels of columns as well,
    so that it still has ``gemm_blocks`` blocks to share among the threads. On BLAS, blocks of
    rows (:func:`_row_blocks`), each one single-threaded call.
    """
    bias = np.empty(0, out.dtype) if bias is None else bias
    matmul_runner(a, weight, out, bias, blas)(a, weight, out, bias)


def matmul_split(rows, inner, columns, dtype, blas=False):
    """How :func:`matmul` splits an (M, K) by (K, N) product: ``(block function, its code, row_blocks,
    column_blocks, panel, parallel)``: the blocks of :func:`matmul_block` (the tile kernel's walk at
    ``code``) or, with ``blas``, of :func:`blas_matmul_block` (the ``?gemm`` at ``code``), run across
    threads if ``parallel``."""
    panel = panel_columns(dtype)
    flops = 2.0 * rows * inner * columns
    parallel = _parallel(flops, np.dtype(dtype).itemsize * rows * (inner + columns))
    if blas:
        row_blocks = _row_blocks(rows)
        return blas_matmul_block, gemm_address(dtype, flops / row_blocks), row_blocks, 1, panel, parallel
    row_blocks = block_count(rows, tuning.get("gemm_rows"))
    column_blocks = block_count(-(-columns // panel), 1, max(1, tuning.get("gemm_blocks") // row_blocks))
    return matmul_block, walk_address(dtype), row_blocks, column_blocks, panel, parallel


def matmul_runner(a, weight, out, bias, blas=False):
    """``run(a, weight, out, bias)``: :func:`matmul` on any arrays of the shapes and types of
    these (``bias`` empty: none), its split and compiled blocks found once."""
    block, code, row_blocks, column_blocks, panel, parallel = matmul_split(out.shape[0], a.shape[1], out.shape[1],
                                                                          out.dtype, blas)
    run = blocks_runner(block, row_blocks * column_blocks, (a, weight, out, bias), code, row_blocks, column_blocks,
                        panel, parallel=parallel)
    return lambda a, weight, out, bias: run((a, weight, out, bias))


def matmul_block(block, address, walk_code, row_blocks, column_blocks, panel, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`matmul` on the tile kernel; its values (a, panels,
    out, bias), ``bias`` empty: none."""
    a, panels, out, bias = value_at(address, VALUES)
    rows, columns = out.shape
    inner = a.shape[1]
    column_panels = -(-columns // panel)
    rb, cb = block // column_blocks, block % column_blocks
    r0, r1 = rb * rows // row_blocks, (rb + 1) * rows // row_blocks
    c0 = cb * column_panels // column_blocks * panel
    c1 = min(columns, (cb + 1) * column_panels // column_blocks * panel)
    product_bias_at(walk_code, a[r0:r1], panels[c0 * inner:], bias[c0:c1], out[r0:r1, c0:c1])


def blas_matmul_block(block, address, gemm_code, row_blocks, i2, i3, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`matmul` on BLAS; its values (a, weight, out,
    bias), ``weight`` (N, K) as stored, flattened, ``bias`` empty: none: rows [r0, r1) of ``out`` =
    ``a[r0:r1] @ weightᵀ + bias`` by one ``?gemm`` call, onto the bias written first."""
    a, weight, out, bias = value_at(address, VALUES)
    rows, columns = out.shape
    inner = a.shape[1]
    r0, r1 = block * rows // row_blocks, (block + 1) * rows // row_blocks
    if r1 == r0:
        return
    beta = 0.0
    if bias.shape[0]:
        for r in range(r0, r1):
            row = out[r]
            for c in range(columns):
                row[c] = bias[c]
        beta = 1.0
    a_stride, out_stride = a.strides[0] // a.itemsize, out.strides[0] // out.itemsize
    product_transposed_at(gemm_code, columns, r1 - r0, inner, weight, 0, inner, a, r0 * a_stride, a_stride, beta,
                          out, r0 * out_stride, out_stride)


@njit(inline="always", error_model="numpy")
def _add_gradient(gemm_code, dgates, inputs, r0, r1, col0, weight, bias, accumulate):
    """``weight`` (+)= dgates[r0:r1, col0:col0 + W]ᵀ inputs[r0:r1] by one BLAS call
    (:func:`.blas.gemm_at` at ``gemm_code``) and ``bias`` (+)= the sum of those rows; ``weight``
    (W, K) C-contiguous, ``bias`` (W,); added to if ``accumulate``, else written."""
    width, inner = weight.shape
    if not accumulate:
        bias[:] = 0
    if r1 == r0:
        if not accumulate:
            weight[:] = 0
        return
    gates_stride, inputs_stride = dgates.strides[0] // dgates.itemsize, inputs.strides[0] // inputs.itemsize
    gemm_at(gemm_code, inner, width, r1 - r0, inputs, r0 * inputs_stride, inputs_stride, dgates,
            r0 * gates_stride + col0, gates_stride, 1.0 if accumulate else 0.0, weight, 0, inner)
    for r in range(r0, r1):
        row = dgates[r, col0:col0 + width]       # a view: indices from 0, no wraparound to vectorise past
        for c in range(width):
            bias[c] += row[c]


def _columns_gradient(block, address, gemm_code, col0, blocks, accumulate, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`weight_gradient`; its values (dgates, inputs,
    weight, bias): the block's rows [c0, c1) of ``weight`` and ``bias`` from columns
    [col0 + c0, col0 + c1) of ``dgates``, over every row."""
    dgates, inputs, weight, bias = value_at(address, VALUES)
    c0, c1 = block * weight.shape[0] // blocks, (block + 1) * weight.shape[0] // blocks
    _add_gradient(gemm_code, dgates, inputs, 0, dgates.shape[0], col0 + c0, weight[c0:c1], bias[c0:c1], accumulate)


def _rows_gradient(block, address, gemm_code, col0, blocks, i3, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`weight_gradient`; its values (dgates, inputs,
    weight_parts, bias_parts): the block's rows [r0, r1) of ``dgates`` (columns [col0, col0 +
    W)) and ``inputs`` summed into ``weight_parts[block]`` and ``bias_parts[block]``."""
    dgates, inputs, weight_parts, bias_parts = value_at(address, VALUES)
    rows = dgates.shape[0]
    r0, r1 = block * rows // blocks, (block + 1) * rows // blocks
    _add_gradient(gemm_code, dgates, inputs, r0, r1, col0, weight_parts[block], bias_parts[block], False)


def weight_gradient(dgates, col0, inputs, weight, bias, accumulate=False):
    """A weight gradient and its bias gradient summed over every row (time step × sequence),
    written, or added, into ``weight`` and ``bias``.

    A small gradient (its partials within ``gradient_partial_bytes``) of many rows is summed by
    blocks of rows, at least ``gemm_rows`` and at most ``gradient_partials`` of them, each into a
    partial gradient by one single-threaded BLAS call; the partials are then added in order. Any
    other by blocks of its rows (gate columns), at least ``gradient_columns`` and at most
    ``gradient_blocks`` of them, each one BLAS call over every row that adds into ``weight`` as it
    lies. Either way the views are used as they lie (no copy of a slice of columns) and the split
    depends on the shapes alone, so the bits do not depend on the thread count.

    Parameters
    ----------
    dgates : ndarray, shape (M, N), rows contiguous: gate pre-activation gradients
    col0 : int, the first column of ``dgates`` used (``weight.shape[0]`` of them)
    inputs : ndarray, shape (M, K), rows contiguous: what those gates multiplied
    weight : ndarray, shape (W, K), C-contiguous: receives Σ_m g_mᵀ inputs_m, g_m the row's
        columns [col0, col0 + W)
    bias : ndarray, shape (W,), contiguous: receives Σ_m g_m
    accumulate : bool
        Add to ``weight`` and ``bias`` instead of overwriting them.
    """
    gradient_runner(dgates, col0, inputs, weight, bias, accumulate)(dgates, inputs, weight, bias)


def gradient_runner(dgates, col0, inputs, weight, bias, accumulate=False):
    """``run(dgates, inputs, weight, bias)``: :func:`weight_gradient` with these ``col0`` and
    ``accumulate`` on any arrays of the shapes and types of these, its split, BLAS and compiled
    code found once."""
    rows, (width, inner) = dgates.shape[0], weight.shape
    flops = 2.0 * rows * width * inner
    parallel = _parallel(flops, weight.itemsize * rows * (width + inner))
    chunks = block_count(rows, tuning.get("gemm_rows"), tuning.get("gradient_partials"))
    if 1 < chunks and chunks * weight.nbytes <= tuning.get("gradient_partial_bytes"):
        gemm_code = gemm_address(weight.dtype, flops / chunks)
        dtype = weight.dtype

        def partials():    # each call's own: a kept runner holds no array between calls
            return np.empty((chunks, width, inner), dtype), np.empty((chunks, width), dtype)

        run_parts = blocks_runner(_rows_gradient, chunks, (dgates, inputs) + partials(), gemm_code, col0, chunks,
                                  parallel=parallel)

        def run(dgates, inputs, weight, bias):
            weight_parts, bias_parts = partials()
            run_parts((dgates, inputs, weight_parts, bias_parts))
            # the partials added in the order of the blocks (NumPy reduces a leading axis in order)
            if accumulate:
                weight += np.add.reduce(weight_parts, axis=0)
                bias += np.add.reduce(bias_parts, axis=0)
            else:
                np.add.reduce(weight_parts, axis=0, out=weight)
                np.add.reduce(bias_parts, axis=0, out=bias)
        return run
    blocks = block_count(width, tuning.get("gradient_columns"), tuning.get("gradient_blocks"))
    gemm_code = gemm_address(weight.dtype, flops / blocks)
    run_columns = blocks_runner(_columns_gradient, blocks, (dgates, inputs, weight, bias), gemm_code, col0, blocks,
                                int(accumulate), parallel=parallel)
    return lambda dgates, inputs, weight, bias: run_columns((dgates, inputs, weight, bias))


def _rows_product(block, address, gemm_code, blocks, i2, i3, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`product`; its values (a, weight, out): rows
    [r0, r1) of ``out`` = ``a[r0:r1] @ weight`` by one BLAS call."""
    a, weight, out = value_at(address, VALUES)
    rows = a.shape[0]
    r0, r1 = block * rows // blocks, (block + 1) * rows // blocks
    if r1 == r0:
        return
    inner, columns = weight.shape
    a_stride, out_stride = a.strides[0] // a.itemsize, out.strides[0] // out.itemsize
    product_at(gemm_code, columns, r1 - r0, inner, weight, 0, weight.strides[0] // weight.itemsize, a,
               r0 * a_stride, a_stride, 0.0, out, r0 * out_stride, out_stride)


def product(a, weight, out):
    """``out = a @ weight`` by blocks of rows (:func:`_row_blocks`), each one single-threaded BLAS
    call (BLAS held to one thread, see ``threads``): for the products too :func:`narrow` for the
    tile kernel (``dx`` of a layer with few inputs).

    Parameters
    ----------
    a : ndarray, shape (M, K), rows contiguous
    weight : ndarray, shape (K, N), C-contiguous
    out : ndarray, shape (M, N), rows contiguous; written
    """
    product_runner(a, weight, out)(a, weight, out)


def product_runner(a, weight, out):
    """``run(a, weight, out)``: :func:`product` on any arrays of the shapes and types of these,
    its split, BLAS and compiled code found once."""
    rows, inner = a.shape
    blocks = _row_blocks(rows)
    columns = weight.shape[1]
    flops = 2.0 * rows * inner * columns
    run = blocks_runner(_rows_product, blocks, (a, weight, out), gemm_address(out.dtype, flops / blocks), blocks,
                        parallel=_parallel(flops, out.itemsize * rows * (inner + columns)))
    return lambda a, weight, out: run((a, weight, out))

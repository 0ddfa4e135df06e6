"""Large GEMMs split across Numba's threads, each block a single-threaded BLAS call.

Inside a call Numba's threads own the cores (see ``threads``), so the GEMMs before and
after the time loops are parallelised the same way as the recurrent ones: by row blocks.
"""
import numpy as np
from numba import njit, prange

# Rows of a column slice copied at a time by ``weight_gradient`` (a few hundred KiB at most).
_BLOCK_ROWS = 256


@njit(cache=True, parallel=True)
def matmul(a, b, out, nchunks):
    """out = a @ b, with a (M, K), b (K, N), out (M, N), split over row blocks of a."""
    rows = a.shape[0]
    chunks = max(1, min(nchunks, rows))
    for chunk in prange(chunks):
        r0 = chunk * rows // chunks
        r1 = (chunk + 1) * rows // chunks
        np.dot(a[r0:r1], b, out[r0:r1])


@njit(cache=True, parallel=True, error_model="numpy")
def weight_gradient(dgates, col0, col1, inputs, scale, plane, nchunks):
    """A weight gradient and its bias gradient, summed over every row (time step × sequence).

    With every column and no scale, each thread sums its own block of rows with one BLAS
    call (the faster way: measured 256 vs 217 GFLOP/s at 1024 × 1536 × 512). Otherwise
    each thread owns a block of columns and walks all rows in blocks, copying its columns
    (times ``scale``) into a small contiguous buffer for one BLAS call per block.

    Parameters
    ----------
    dgates : ndarray, shape (M, N), C-contiguous: gate pre-activation gradients
    col0, col1 : int, the columns of ``dgates`` to use
    inputs : ndarray, shape (M, K), C-contiguous: what those gates multiplied
    scale, plane : a cell's tape, ndarray (T, planes, B, col1 − col0) with T·B = M, and
        the plane whose values multiply ``dgates[:, col0:col1]`` element-wise first (row
        m = t·B + b by ``scale[t, plane, b]``); or shape (0, 0, 0, 0) for none
    nchunks : int, blocks run in parallel

    Returns
    -------
    weight : ndarray, shape (col1 − col0, K), Σ_m g_mᵀ inputs_m
    bias : ndarray, shape (col1 − col0,), Σ_m g_m
    """
    rows, width, inner = dgates.shape[0], col1 - col0, inputs.shape[1]
    if col0 == 0 and col1 == dgates.shape[1] and scale.shape[0] == 0:
        chunks = max(1, min(nchunks, rows))
        weight_parts = np.zeros((chunks, width, inner), dgates.dtype)
        bias_parts = np.zeros((chunks, width), dgates.dtype)
        for chunk in prange(chunks):
            r0 = chunk * rows // chunks
            r1 = (chunk + 1) * rows // chunks
            np.dot(dgates[r0:r1].T, inputs[r0:r1], weight_parts[chunk])
            bias = bias_parts[chunk]
            for r in range(r0, r1):
                bias += dgates[r]
        return weight_parts.sum(axis=0), bias_parts.sum(axis=0)
    chunks = max(1, min(nchunks, width))
    weight = np.zeros((width, inner), dgates.dtype)
    bias = np.zeros(width, dgates.dtype)
    for chunk in prange(chunks):
        c0 = chunk * width // chunks
        c1 = (chunk + 1) * width // chunks
        block = np.empty((_BLOCK_ROWS, c1 - c0), dgates.dtype)
        product = np.empty((c1 - c0, inner), dgates.dtype)
        bias_block = bias[c0:c1]
        for start in range(0, rows, _BLOCK_ROWS):
            count = min(_BLOCK_ROWS, rows - start)
            for r in range(count):
                source, target = dgates[start + r, col0 + c0:col0 + c1], block[r]
                if scale.shape[0] > 0:
                    m = start + r
                    factor = scale[m // scale.shape[2], plane, m % scale.shape[2], c0:c1]
                    for c in range(c1 - c0):
                        target[c] = source[c] * factor[c]
                else:
                    target[:] = source
                bias_block += target
            np.dot(block[:count].T, inputs[start:start + count], product)
            weight[c0:c1] += product
    return weight, bias

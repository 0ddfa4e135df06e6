"""Large GEMMs split across Numba's threads, each block a single-threaded BLAS call.

Inside a call Numba's threads own the cores (see ``threads``), so the GEMMs before and
after the time loops are parallelised the same way as the recurrent ones: by row blocks.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def matmul(a, b, out, nchunks):
    """out = a @ b, with a (M, K), b (K, N), out (M, N), split over row blocks of a."""
    rows = a.shape[0]
    chunks = max(1, min(nchunks, rows))
    for chunk in prange(chunks):
        r0 = chunk * rows // chunks
        r1 = (chunk + 1) * rows // chunks
        np.dot(a[r0:r1], b, out[r0:r1])


@njit(cache=True, parallel=True)
def matmul_transposed(a, b, nchunks):
    """aᵀ @ b, with a (M, N), b (M, K): each thread reduces its own block of M rows."""
    rows = a.shape[0]
    chunks = max(1, min(nchunks, rows))
    partial = np.zeros((chunks, a.shape[1], b.shape[1]), a.dtype)
    for chunk in prange(chunks):
        r0 = chunk * rows // chunks
        r1 = (chunk + 1) * rows // chunks
        np.dot(a[r0:r1].T, b[r0:r1], partial[chunk])
    return partial.sum(axis=0)

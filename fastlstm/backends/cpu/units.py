"""Work split into blocks by its shape alone, hidden units into blocks, the weights packed per block.

Every parallel piece of work of the cpu backend (a time step's hidden units, the rows of a
GEMM, the row or column blocks of a weight gradient) is split by :func:`block_count` from
its size and the tuning module's knobs, never from the number of threads: threads take
whole blocks, so each block's arithmetic (its BLAS calls' shapes, its sums' order) and
therefore every result is the same bits whatever ``NUMBA_NUM_THREADS`` is. The counts are
powers of two, which spread evenly over 2, 4, 8 or 16 threads.

Inside a time step each block is a contiguous range of hidden units ``[u0, u1)`` for all
running sequences: the recurrent projections of its units' gates and then their gate
math (backward: its units' gate derivatives, then its units' columns of the gradient
reaching the previous state). A thread reads only its blocks' share of the recurrent
weights (which stay in its cache from step to step when they fit; Numba hands each thread
the same blocks every step), and a batch of one sequence is split as well as a batch of many.
"""
import numpy as np
from numba import njit

from ... import tuning


def block_count(extent, smallest, largest=None):
    """The number of blocks ``extent`` items are split into: the largest power of two that
    leaves each block at least ``smallest`` items and is at most ``largest`` (default: the
    ``max_blocks`` knob); at least 1."""
    largest = tuning.get("max_blocks") if largest is None else largest
    limit = max(1, min(largest, extent // max(1, smallest)))
    return 1 << (limit.bit_length() - 1)


def step_unit_bounds(hidden):
    """The unit blocks of a time step (:func:`unit_bounds` with :func:`block_count`)."""
    return unit_bounds(hidden, block_count(hidden, tuning.get("step_units")))


def unit_bounds(hidden, blocks):
    """(blocks + 1,) int64 boundaries splitting ``hidden`` units into near-equal blocks."""
    blocks = max(1, min(blocks, hidden))
    return (np.arange(blocks + 1) * hidden) // blocks


def pack_backward_panels(weight, bounds, projects, transposed):
    """Each block's columns of ``weight``, per backward phase: the operand of its projection.

    Parameters
    ----------
    weight : ndarray, shape (G·H, H): gate g, unit j in row g·H + j
    bounds : ndarray, shape (blocks + 1,)
    projects : tuple of (g0, g1), the gate blocks each backward phase projects (disjoint)
    transposed : bool, the panels' layout (see Returns)

    Returns
    -------
    ndarray, shape (G·H·H,): block [u0, u1) starts at G·H·u0 and holds, phase after phase, the
    phase's panel ``weight[g0·H:g1·H, u0:u1]``, (K, u1 − u0) with K = (g1 − g0)·H, or
    ``transposed`` its transpose (u1 − u0, K), rows contiguous along K, for :func:`.projection.dot_rows`.
    """
    hidden = weight.shape[1]
    panels = np.empty(weight.size, weight.dtype)
    for u0, u1 in zip(bounds[:-1], bounds[1:]):
        start = weight.shape[0] * u0
        for g0, g1 in projects:
            inner, width = (g1 - g0) * hidden, u1 - u0
            panel = panels[start:start + inner * width]
            if transposed:
                transpose_into(weight[g0 * hidden:g1 * hidden, u0:u1], panel.reshape(width, inner))
            else:
                panel.reshape(inner, width)[:] = weight[g0 * hidden:g1 * hidden, u0:u1]
            start += inner * width
    return panels


@njit(cache=True, error_model="numpy")
def transpose_into(source, out):
    """out = sourceᵀ, in tiles of 8 × 8 (a row of ``out`` per column of a tile: NumPy's strided
    copy of a 2048 × 512 float32 weight took 3.5 ms, this 1.1)."""
    rows, columns = source.shape
    for i0 in range(0, rows, 8):
        i1 = min(rows, i0 + 8)
        for j0 in range(0, columns, 8):
            for j in range(j0, min(columns, j0 + 8)):
                for i in range(i0, i1):
                    out[j, i] = source[i, j]

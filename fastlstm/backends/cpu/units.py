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


def pack_backward_panels(weight, bounds):
    """Each block's columns of ``weight``: the right operand of ``dgates @ panel``.

    Parameters
    ----------
    weight : ndarray, shape (R, H)
    bounds : ndarray, shape (blocks + 1,)

    Returns
    -------
    ndarray, shape (R·H,): block [u0, u1) holds ``weight[:, u0:u1]``, (R, u1 − u0).
    """
    return np.concatenate([np.ascontiguousarray(weight[:, u0:u1]).ravel()
                           for u0, u1 in zip(bounds[:-1], bounds[1:])])

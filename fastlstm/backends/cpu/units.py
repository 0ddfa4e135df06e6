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
from .tiles import pack, pack_transposed, panels_size


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


def forward_panels(weight, bounds, phases):
    """Each unit block's recurrent weights for its forward projections, per phase, packed once
    per call for :func:`.tiles.product`: ``weight_hhᵀ``'s columns of the phase's gates and the
    block's units, in (gate, unit) order.

    Parameters
    ----------
    weight : ndarray, shape (G·H, H), C-contiguous: gate g, unit j in row g·H + j
    bounds : ndarray, shape (blocks + 1,), the unit blocks
    phases : tuple of (g0, g1), the gates each forward phase projects

    Returns
    -------
    panels : ndarray, flat
    starts : ndarray, shape (blocks, phases) int64: where block b's panels of phase p start
    """
    hidden = weight.shape[1]

    def rows(u0, u1, g0, g1):
        return np.concatenate([np.arange(g * hidden + u0, g * hidden + u1) for g in range(g0, g1)])

    pieces = [[rows(u0, u1, g0, g1) for g0, g1 in phases] for u0, u1 in zip(bounds[:-1], bounds[1:])]
    starts, panels = _layout(pieces, hidden, weight.dtype)
    for block, per_phase in enumerate(pieces):
        for phase, picked in enumerate(per_phase):
            source = weight if len(picked) == weight.shape[0] else weight[picked]
            pack_transposed(source, panels[starts[block, phase]:])
    return panels, starts


def backward_panels(weight, bounds, phases):
    """Each unit block's recurrent weights for its backward projections, per phase, packed once
    per call for :func:`.tiles.product`: ``weight_hh``'s rows of the phase's gates, the block's
    units' columns.

    Parameters
    ----------
    weight : ndarray, shape (G·H, H), C-contiguous
    bounds : ndarray, shape (blocks + 1,), the unit blocks
    phases : tuple of (g0, g1), the gates each backward phase sends back

    Returns
    -------
    panels : ndarray, flat
    starts : ndarray, shape (blocks, phases) int64: where block b's panels of phase p start
    """
    hidden = weight.shape[1]
    shapes = [[((g1 - g0) * hidden, u1 - u0) for g0, g1 in phases] for u0, u1 in zip(bounds[:-1], bounds[1:])]
    starts = np.zeros((len(shapes), len(phases)), np.int64)
    total = 0
    for block, per_phase in enumerate(shapes):
        for phase, (inner, width) in enumerate(per_phase):
            starts[block, phase] = total
            total += panels_size(inner, width, weight.dtype)
    panels = np.empty(max(1, total), weight.dtype)
    for block, (u0, u1) in enumerate(zip(bounds[:-1], bounds[1:])):
        for phase, (g0, g1) in enumerate(phases):
            pack(weight[g0 * hidden:g1 * hidden], u0, u1, panels[starts[block, phase]:])
    return panels, starts


def _layout(pieces, inner, dtype):
    """Starts (blocks, phases) and room for the forward panels of ``pieces[block][phase]`` columns."""
    starts = np.zeros((len(pieces), len(pieces[0])), np.int64)
    total = 0
    for block, per_phase in enumerate(pieces):
        for phase, picked in enumerate(per_phase):
            starts[block, phase] = total
            total += panels_size(inner, len(picked), dtype)
    return starts, np.empty(max(1, total), dtype)

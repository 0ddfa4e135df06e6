"""Work split into blocks by its shape alone, hidden units into blocks, the weights packed per block.

Every parallel piece of work of the cpu backend (a time step's hidden units, the rows of a
GEMM, the row or column blocks of a weight gradient) is split by :func:`block_count` from
its size and the tuning module's knobs, never from the number of threads: threads take
whole blocks, so each block's arithmetic (its products' shapes, its sums' order) and
therefore every result is the same bits whatever ``NUMBA_NUM_THREADS`` is. The counts are
powers of two, which spread evenly over 2, 4, 8 or 16 threads.

Inside a time step each block is a contiguous range of hidden units ``[u0, u1)`` for all
running sequences: the recurrent projections of its units' gates and then their gate
math (backward: its units' gate derivatives, then its units' columns of the gradient
reaching the previous state). A thread reads only its blocks' share of the recurrent
weights (which stay in its cache from step to step when they fit; Numba hands each thread
the same blocks every step), and a batch of one sequence is split as well as a batch of many.
"""
import functools
from typing import NamedTuple

import numpy as np

from ... import buffers, tuning
from .tiles import pack_runner, pack_transposed_runner, panels_size


def block_count(extent, smallest, largest=None):
    """The number of blocks ``extent`` items are split into: the largest power of two that
    leaves each block at least ``smallest`` items and is at most ``largest`` (default: the
    ``max_blocks`` knob); at least 1."""
    largest = tuning.get("max_blocks") if largest is None else largest
    limit = max(1, min(largest, extent // max(1, smallest)))
    return 1 << (limit.bit_length() - 1)


# interior boundaries of a time step's unit blocks fall on multiples of this many units: whole
# SIMD vectors of float32 (and float64) in every block but the last, for its gate loop and its panels
UNIT_ALIGNMENT = 16


def step_unit_bounds(hidden, largest=None):
    """The unit blocks of a time step (:func:`unit_bounds` with :func:`block_count`, at most
    ``largest`` of them), interior boundaries rounded to multiples of :data:`UNIT_ALIGNMENT`
    (each block has at least ``step_units`` units, so none empties)."""
    bounds = unit_bounds(hidden, block_count(hidden, tuning.get("step_units"), largest))
    if len(bounds) > 2 and tuning.get("step_units") >= UNIT_ALIGNMENT:
        bounds[1:-1] = (bounds[1:-1] + UNIT_ALIGNMENT // 2) // UNIT_ALIGNMENT * UNIT_ALIGNMENT
    return bounds


def unit_bounds(hidden, blocks):
    """(blocks + 1,) int64 boundaries splitting ``hidden`` units into near-equal blocks."""
    blocks = max(1, min(blocks, hidden))
    return (np.arange(blocks + 1) * hidden) // blocks


class Packer(NamedTuple):
    """How a layer's recurrent weights are packed for its loops: ``run(weight, panels)`` packs a
    ``weight`` into ``panels`` (flat, ``size`` values), each block's panels of each phase from
    ``starts[block, phase]`` on, on any arrays of the shapes and types it was built for
    (:func:`forward_packer`, :func:`backward_packer`), its blocks and compiled code found once."""

    size: int
    starts: np.ndarray     # (blocks, phases) int64
    run: object


def forward_packer(weight, bounds, phases):
    """The :class:`Packer` of each unit block's recurrent weights for its forward projections, per
    phase, packed once per call for :func:`.tiles.product`: ``weight_hhᵀ``'s columns of the
    phase's gates and the block's units, in (gate, unit) order.

    Parameters
    ----------
    weight : ndarray, shape (G·H, H), C-contiguous: gate g, unit j in row g·H + j
    bounds : ndarray, shape (blocks + 1,), the unit blocks
    phases : tuple of (g0, g1), the gates each forward phase projects

    Returns
    -------
    Packer
    """
    layout = _layout("forward", weight.shape[1], tuple(int(b) for b in bounds), phases, weight.dtype.str)
    panels = np.empty(0, weight.dtype)         # of the type of the panels it packs into
    every_row = slice(None)
    return _packer(layout, [(pack_transposed_runner(weight, panels, rows), every_row, layout.starts[block, phase])
                            for (block, phase), rows in layout.pieces.items()])


def backward_packer(weight, bounds, phases):
    """The :class:`Packer` of each unit block's recurrent weights for its backward projections,
    per phase, packed once per call for :func:`.tiles.product`: ``weight_hh``'s rows of the
    phase's gates, the block's units' columns.

    Parameters
    ----------
    weight : ndarray, shape (G·H, H), C-contiguous
    bounds : ndarray, shape (blocks + 1,), the unit blocks
    phases : tuple of (g0, g1), the gates each backward phase sends back

    Returns
    -------
    Packer
    """
    hidden = weight.shape[1]
    bounds = tuple(int(b) for b in bounds)
    layout = _layout("backward", hidden, bounds, phases, weight.dtype.str)
    panels = np.empty(0, weight.dtype)         # of the type of the panels it packs into
    pieces = []
    for block, (u0, u1) in enumerate(zip(bounds[:-1], bounds[1:])):
        for phase, (g0, g1) in enumerate(phases):
            rows = slice(g0 * hidden, g1 * hidden)
            pieces.append((pack_runner(weight[rows], u0, u1, panels), rows, layout.starts[block, phase]))
    return _packer(layout, pieces)


def _packer(layout, pieces):
    """The :class:`Packer` of ``layout`` whose ``run`` packs each piece: (its packing runner, the
    rows of the weight it reads, where its panels start)."""
    def run(weight, panels):
        for pack_piece, rows, start in pieces:
            pack_piece(weight[rows], panels[start:])
    return Packer(layout.size, layout.starts, run)


def forward_panels(weight, bounds, phases):
    """``weight`` packed by its :func:`forward_packer` into new panels: ``(panels, starts)`` (tests)."""
    return _packed(forward_packer(weight, bounds, phases), weight)


def backward_panels(weight, bounds, phases):
    """``weight`` packed by its :func:`backward_packer` into new panels: ``(panels, starts)`` (tests)."""
    return _packed(backward_packer(weight, bounds, phases), weight)


def _packed(packer, weight):
    panels = buffers.empty((packer.size,), weight.dtype, aligned=True)
    packer.run(weight, panels)
    return panels, packer.starts


def packed_size(direction, hidden, bounds, phases, dtype):
    """Values of the panels of a ``weight_hh`` of ``hidden`` units packed by :func:`forward_packer`
    (``direction`` "forward") or :func:`backward_packer` ("backward")."""
    return _layout(direction, hidden, tuple(int(b) for b in bounds), phases, np.dtype(dtype).str).size


class _Layout(NamedTuple):
    size: int            # values of every panel
    starts: np.ndarray   # (blocks, phases) where each block's panels of each phase start (read-only)
    pieces: dict         # forward: (block, phase) -> the weight rows it packs (pack_transposed's rows)


@functools.lru_cache(maxsize=256)
def _layout(direction, hidden, bounds, phases, dtype):
    """Where :func:`forward_panels` or :func:`backward_panels` put each block's and phase's
    panels, once per shape (``direction``: "forward" or "backward")."""
    starts = np.zeros((len(bounds) - 1, len(phases)), np.int64)
    pieces, total = {}, 0
    for block, (u0, u1) in enumerate(zip(bounds[:-1], bounds[1:])):
        for phase, (g0, g1) in enumerate(phases):
            starts[block, phase] = total
            if direction == "forward":
                pieces[block, phase] = (g0 * hidden + u0, u1 - u0, hidden, (g1 - g0) * (u1 - u0))
                total += panels_size(hidden, (g1 - g0) * (u1 - u0), dtype)
            else:
                total += panels_size((g1 - g0) * hidden, u1 - u0, dtype)
    starts.flags.writeable = False
    return _Layout(max(1, total), starts, pieces)

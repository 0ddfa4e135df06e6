"""Large per-call arrays, from blocks that go back to a bounded pool when their last user lets go.

A training step allocates tens of megabytes (the input's copy, the state history, the
tape, ``y``, ``dx``), and a fresh array is fresh pages: the kernel maps and zeroes each
one at its first touch, inside the time loop. On this project's machines that first
touch costs as much as the arithmetic (measured: an LSTM forward at T=150, B=64, H=256
with its tape, 109 ms on fresh arrays, 53 ms on reused ones). So large arrays come from a
pool, as in PyTorch's caching allocator.

Ownership is explicit: :func:`empty` leases a block and returns an array whose ``base``
is the lease; NumPy keeps a base alive as long as any array or view over it lives, so the
lease ends, and the block returns to the pool, exactly when the last array over it is
collected (the tape, an output the caller kept, a view of either). Nothing here counts
references.

Blocks come in size classes, four per doubling (each at most 25% larger than what it
asks for), and a free block serves any request from half its size up, so calls whose
shapes differ (a notebook's, a loop over sequence lengths) reuse the same few blocks. The pool keeps no
more free bytes than the most bytes ever leased at once (one call's working set, for a
loop of similar calls) nor more than the ``pool_max_free_bytes`` tunable; beyond that it
releases the blocks returned longest ago.
"""
import ctypes
import math
import threading
from collections import OrderedDict, deque

import numpy as np

from . import tuning

ALIGNMENT = 64            # bytes: a cache line and the widest vector register
REUSE_UP_TO = 2          # a free block serves requests down to half its size


def size_class(nbytes):
    """The capacity of the block serving ``nbytes``: ``nbytes`` rounded up to a multiple of the power
    of two in ``[nbytes / 8, nbytes / 4)``, which leaves four classes per doubling.

    Parameters
    ----------
    nbytes : int, > 0

    Returns
    -------
    int
        ``nbytes <= size_class(nbytes) <= 1.25 * nbytes``.
    """
    shift = max(0, int(nbytes - 1).bit_length() - 3)      # 2**shift <= nbytes / 4
    multiple = -(-nbytes // (1 << shift))                   # ceil; 4..8
    return multiple << shift


class _Lease:
    """One block lent out: the base of every array over it; returns the block when collected."""

    __slots__ = ("block", "__array_interface__")

    def __init__(self, block, shape, dtype):
        self.block = block
        self.__array_interface__ = {"shape": shape, "typestr": dtype.str, "data": (block[1], False), "version": 3}

    def __del__(self):
        if _pool is not None:                    # None while the interpreter shuts down
            _pool.returned.append(self.block)    # deque.append is atomic: no lock in a finaliser


class _Pool:
    """Blocks, each ``(memory, address)``: its bytes and their first address aligned to
    ``ALIGNMENT`` (found once, when the block is made)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.free = OrderedDict()        # id(memory) -> block, returned longest ago first
        self.returned = deque()          # blocks whose lease ended, not yet sorted into free
        self.free_bytes = 0
        self.leased_bytes = 0
        self.peak_leased_bytes = 0
        self.reused = 0
        self.allocated = 0

    def _collect_returned(self):
        """Sort the returned blocks into ``free``, then release the oldest beyond the bound."""
        while self.returned:
            block = self.returned.popleft()
            self.leased_bytes -= block[0].nbytes
            self.free[id(block[0])] = block
            self.free_bytes += block[0].nbytes
        limit = min(self.peak_leased_bytes, tuning.get("pool_max_free_bytes"))
        if self.free_bytes > limit:
            self._release_beyond(limit)

    def _release_beyond(self, limit):
        while self.free_bytes > limit and self.free:
            _, (memory, _) = self.free.popitem(last=False)
            self.free_bytes -= memory.nbytes

    def lease(self, nbytes):
        """A block whose memory holds ``nbytes`` from its aligned address on."""
        capacity = size_class(nbytes) + ALIGNMENT
        with self.lock:
            self._collect_returned()
            fitting = [(memory.nbytes, key) for key, (memory, _) in self.free.items()
                       if capacity <= memory.nbytes <= REUSE_UP_TO * capacity]
            if fitting:
                block = self.free.pop(min(fitting)[1])
                self.free_bytes -= block[0].nbytes
                self.reused += 1
            else:
                memory = np.empty(capacity, np.uint8)
                address = _address(memory)
                block = memory, address + -address % ALIGNMENT
                self.allocated += 1
            self.leased_bytes += block[0].nbytes
            self.peak_leased_bytes = max(self.peak_leased_bytes, self.leased_bytes)
            return block


_pool = _Pool()


def empty(shape, dtype, aligned=False):
    """An uninitialised C-contiguous array, from the pool when large.

    Parameters
    ----------
    shape : tuple of int
    dtype : numpy.dtype or str
    aligned : bool
        Align a small array (from the C heap) to 64 bytes too (:func:`aligned_empty`; a few µs
        more): for arrays whose rows several threads write side by side.

    Returns
    -------
    numpy.ndarray
        Of ``shape`` and ``dtype``; aligned to 64 bytes when pooled or ``aligned``; a pooled
        block returns to the pool when it and every view of it are gone.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < tuning.get("pool_min_bytes"):
        return aligned_empty(shape, dtype) if aligned else np.empty(shape, dtype)
    shape = tuple(map(int, shape))
    return np.asarray(_Lease(_pool.lease(nbytes), shape, dtype))


def aligned_empty(shape, dtype):
    """An uninitialised C-contiguous array from the C heap, aligned to ``ALIGNMENT`` bytes: rows
    that threads write side by side then share a cache line only where a row's size is not a
    multiple of a line (NumPy aligns to 16 bytes, which made two threads writing neighbouring
    rows of a small state array fight over the line between them at every step)."""
    dtype = np.dtype(dtype)
    raw = np.empty(math.prod(shape) * dtype.itemsize + ALIGNMENT, np.uint8)
    return np.ndarray(shape, dtype, raw, -_address(raw) % ALIGNMENT)


def _address(array):
    """The address of a writeable array's first byte (a third of the time ``array.ctypes.data`` takes)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(array))


def zeros(shape, dtype, aligned=False):
    """Like :func:`empty`, filled with zeros."""
    array = empty(shape, dtype, aligned)
    array[...] = 0
    return array


def statistics():
    """The pool's figures now.

    Returns
    -------
    dict
        ``leased_bytes`` (blocks lent out), ``free_bytes`` (kept for reuse),
        ``peak_leased_bytes`` (the most ever lent at once), ``free_blocks``, ``allocated``
        (blocks ever made) and ``reused`` (leases served by a kept block).
    """
    with _pool.lock:
        _pool._collect_returned()
        return dict(leased_bytes=_pool.leased_bytes, free_bytes=_pool.free_bytes,
                    peak_leased_bytes=_pool.peak_leased_bytes, free_blocks=len(_pool.free),
                    allocated=_pool.allocated, reused=_pool.reused)


def release_free():
    """Give every free block back to the C heap (the blocks lent out stay valid), and forget the
    peak, so that the pool sizes itself again from the calls that follow."""
    with _pool.lock:
        _pool._collect_returned()
        _pool._release_beyond(0)
        _pool.peak_leased_bytes = _pool.leased_bytes

"""A digest of memory that sees whether arrays changed in place since it was taken.

A prepared inference call (:mod:`.prepared`) runs on weights packed from the caller's parameter
arrays, and the cuda backend on device copies of them (:mod:`..cuda.weights`): each must see, at
every call, whether the caller changed any of their values since. A comparison with a copy reads
the parameters' bytes twice (the arrays and the copy) and keeps the copy; a digest reads them
once and keeps 1 KiB.

The digest is ``PARTS`` × ``LANES`` 64-bit lanes. Each array's bytes are read as 64-bit words,
cut into ``PARTS`` near-equal runs of words, run p going to part p; in a part, its k-th word goes
to lane k mod ``LANES``, each lane taking its words in order by ``lane ← rotl(lane ⊕ word, 31) ·
M`` (M odd): for a fixed lane value that is a bijection of the word, and for a fixed word a
bijection of the lane, so a change of one word always changes its lane's final value. A change
of several words is missed only if some lane's 64-bit value comes out equal by chance (about
2⁻⁶⁴ for values that have nothing to do with the digest): the rotation carries each word's high
bits into the low bits the next multiply spreads, so that, for instance, flipping the signs of
two values of a lane does not cancel. The bytes after an array's last whole word make one more
word of the last part, zero-padded. The lanes are independent, so a part runs in SIMD vectors,
and the parts are independent, so large arrays are digested a part per thread
(:class:`Digest`); the digest is the same whichever runs them.

Measured on the project's 2-core machines (Intel Xeon), LSTM 256 → 256's 2 MiB of parameters,
checked before each inference call: 141–146 µs compared with a copy, 83–96 µs digested on one
thread; where the call's loop has pushed them out of the caches, one core reads them at ~10 GB/s
(``bench/where_time_goes.py``), which is why large arrays are digested on every thread.
"""
import numpy as np
from numba import njit

from .calls import COMPILED_CALLERS_ONLY, compile_for, compiling_only_for, value_at, values_at
from .regions import VALUES, blocks_runner

LANES = 64
PARTS = 2
# arrays of at least this many bytes together are digested a part per thread
PARALLEL_DIGEST_BYTES = 1 << 19
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_LEFT, _RIGHT = np.uint64(31), np.uint64(33)


@njit(cache=True, error_model="numpy", **COMPILED_CALLERS_ONLY)
def _mix(lane, word):
    value = lane ^ word
    return ((value << _LEFT) | (value >> _RIGHT)) * _MULTIPLIER


@njit(cache=True, error_model="numpy", nogil=True)
def digest_part(table, part, lanes):
    """Part ``part`` of the digest of the memory of each row (address, bytes) of ``table`` ((N, 2)
    int64), in order, into ``lanes`` ((LANES,) uint64)."""
    for lane in range(LANES):
        lanes[lane] = np.uint64(part * LANES + lane)
    for k in range(table.shape[0]):
        address, size = table[k, 0], table[k, 1]
        count = size // 8
        first, last = part * count // PARTS, (part + 1) * count // PARTS
        words = values_at(address + 8 * first, last - first, np.uint64)
        whole = words.shape[0] - words.shape[0] % LANES
        for start in range(0, whole, LANES):
            for lane in range(LANES):
                lanes[lane] = _mix(lanes[lane], words[start + lane])
        for i in range(whole, words.shape[0]):
            lanes[i - whole] = _mix(lanes[i - whole], words[i])
        if part == PARTS - 1 and size > 8 * count:
            tail = values_at(address + 8 * count, size - 8 * count, np.uint8)
            word = np.uint64(0)
            for i in range(tail.shape[0]):
                word |= np.uint64(tail[i]) << np.uint64(8 * i)
            lanes[0] = _mix(lanes[0], word)


@njit(cache=True, error_model="numpy")
def digest(table, lanes):
    """The digest of the memory of ``table`` (as :func:`digest_part`'s) into ``lanes`` ((PARTS,
    LANES) uint64), every part in this thread."""
    for part in range(PARTS):
        digest_part(table, part, lanes[part])


@njit(cache=True, error_model="numpy")
def unchanged(table, expected):
    """Whether the memory of ``table`` digests to ``expected`` ((PARTS, LANES) uint64), in this thread."""
    lanes = np.empty((PARTS, LANES), np.uint64)
    digest(table, lanes)
    return _equal(lanes, expected)


@njit(cache=True, error_model="numpy")
def _equal(lanes, expected):
    for part in range(PARTS):
        for lane in range(LANES):
            if lanes[part, lane] != expected[part, lane]:
                return False
    return True


def _digest_block(block, address, i0, i1, i2, i3, i4, i5, i6):
    """Block function (:mod:`.regions`) of :meth:`Digest.unchanged`: part ``block``; its values
    (table, lanes)."""
    table, lanes = value_at(address, VALUES)
    digest_part(table, block, lanes[block])


def memory_table(arrays):
    """The (address, bytes) table of C-contiguous ``arrays`` that :func:`digest` reads."""
    return np.array([(array.__array_interface__["data"][0], array.nbytes) for array in arrays],
                    np.int64).reshape(-1, 2)


class Digest:
    """The digest of C-contiguous arrays' bytes as they are when it is made, and whether they
    still hold them (:meth:`unchanged`, from any thread).

    Parameters
    ----------
    arrays : sequence of C-contiguous ndarray
    hold : bool, default True
        Keep references to the arrays, so that their memory outlives the digest. ``False`` (a
        cache that must not keep its arrays alive): the caller asks only while it knows each
        array alive, and its data where it was (``table``'s address).

    Attributes
    ----------
    table : ndarray (N, 2) int64, each array's address and bytes
    expected : ndarray (PARTS, LANES) uint64, their digest when made
    nbytes : int, the bytes it reads
    arrays : tuple of the arrays, or None (``hold=False``)
    """

    __slots__ = ("table", "expected", "nbytes", "arrays", "_run")

    def __init__(self, arrays, hold=True):
        arrays = tuple(arrays)
        self.arrays = arrays if hold else None
        self.table = memory_table(arrays)
        self.nbytes = int(self.table[:, 1].sum())
        self.expected = np.empty((PARTS, LANES), np.uint64)
        self._run = (blocks_runner(_digest_block, PARTS, (self.table, self.expected))
                     if self.nbytes >= PARALLEL_DIGEST_BYTES else None)
        if compiling_only_for() is not None:     # what making it and asking it would run
            for function, values in ((digest, (self.table, self.expected)), (unchanged, (self.table, self.expected)),
                                     (_equal, (self.expected, self.expected))):
                compile_for(function, *values)
            if self._run is not None:
                self._run((self.table, self.expected))
            return
        digest(self.table, self.expected)

    def unchanged(self):
        """Whether the arrays' bytes digest to :attr:`expected` (a part per thread where they are many)."""
        if self._run is None:
            return unchanged(self.table, self.expected)
        lanes = np.empty((PARTS, LANES), np.uint64)
        self._run((self.table, lanes))
        return _equal(lanes, self.expected)

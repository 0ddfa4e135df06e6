"""A digest of memory that sees whether arrays changed in place since it was taken.

A prepared inference call (:mod:`.prepared`) runs on weights packed from the caller's parameter
arrays, and must see, at every call, whether the caller changed any of their values since. A
comparison with a copy reads the parameters' bytes twice (the arrays and the copy) and keeps the
copy; a digest reads them once and keeps 512 bytes. Measured on the project's 2-core machines, an
LSTM 256 → 256 call's 2 MiB of parameters: 160 µs compared with a copy, 60 µs digested (and the
stream of a comparison evicts the packed weights its loop reads next).

The digest is ``LANES`` 64-bit lanes. The bytes are read as 64-bit words, word i going to lane
i mod ``LANES``, each lane taking its words in order by ``lane ← rotl(lane ⊕ word, 31) · M``
(M odd): for a fixed lane value that is a bijection of the word, and for a fixed word a bijection
of the lane, so a change of one word always changes its lane's final value. A change of several
words is missed only if some lane's 64-bit value comes out equal by chance (about 2⁻⁶⁴ for
values that have nothing to do with the digest): the rotation carries each word's high bits into
the low bits the next multiply spreads, so that, for instance, flipping the signs of two values
of a lane does not cancel. The last bytes of an array that fill no word make one word of their
own, zero-padded. The lanes are independent, so the loop runs in SIMD vectors at ~35 GB/s a
core.
"""
import numpy as np
from numba import njit

from .calls import COMPILED_CALLERS_ONLY, values_at

LANES = 64
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_LEFT, _RIGHT = np.uint64(31), np.uint64(33)


@njit(cache=True, error_model="numpy", **COMPILED_CALLERS_ONLY)
def _mix(lane, word):
    value = lane ^ word
    return ((value << _LEFT) | (value >> _RIGHT)) * _MULTIPLIER


@njit(cache=True, error_model="numpy")
def digest(table, lanes):
    """Digest the memory of each row (address, bytes) of ``table`` ((N, 2) int64), in order.

    Parameters
    ----------
    table : ndarray (N, 2) int64
    lanes : ndarray (LANES,) uint64, receives the digest
    """
    for lane in range(LANES):
        lanes[lane] = np.uint64(lane)
    for k in range(table.shape[0]):
        address, size = table[k, 0], table[k, 1]
        count = size // 8
        words = values_at(address, count, np.uint64)
        whole = count - count % LANES
        for start in range(0, whole, LANES):
            for lane in range(LANES):
                lanes[lane] = _mix(lanes[lane], words[start + lane])
        for i in range(whole, count):
            lanes[i - whole] = _mix(lanes[i - whole], words[i])
        tail = values_at(address + 8 * count, size - 8 * count, np.uint8)
        if tail.shape[0]:
            word = np.uint64(0)
            for i in range(tail.shape[0]):
                word |= np.uint64(tail[i]) << np.uint64(8 * i)
            lanes[0] = _mix(lanes[0], word)


@njit(cache=True, error_model="numpy")
def unchanged(table, expected, lanes):
    """Whether the memory of ``table`` (as :func:`digest`'s) digests to ``expected``
    ((LANES,) uint64), ``lanes`` (the same) the room it digests into."""
    digest(table, lanes)
    for lane in range(LANES):
        if lanes[lane] != expected[lane]:
            return False
    return True


def memory_table(arrays):
    """The (address, bytes) table of C-contiguous ``arrays`` that :func:`digest` reads."""
    return np.array([(array.__array_interface__["data"][0], array.nbytes) for array in arrays],
                    np.int64).reshape(-1, 2)

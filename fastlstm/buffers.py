"""Large per-call arrays, reused once nothing refers to them any more.

A training step allocates tens of megabytes (the input's copy, the state history, the
tape, ``y``, ``dx``), and a fresh array is fresh pages: the kernel maps and zeroes each
one at its first touch, inside the time loop. On this project's machines that first
touch costs as much as the arithmetic (measured: an LSTM forward at T=150, B=64, H=256
with its tape, 109 ms on fresh arrays, 53 ms on reused ones). So the large arrays come
from a pool, as in PyTorch's allocators: an array is handed out again only when the pool
holds the last reference to it, which NumPy's reference counting tells exactly (a view
keeps its base alive, so a buffer under any live view, tape or output is never reused).
"""
import sys
import threading
from collections import OrderedDict

import numpy as np

from . import tuning

_lock = threading.Lock()
_buffers = OrderedDict()   # id -> flat array owned by the pool, least recently used first
# References to a pooled buffer when nothing else holds it: the dict's, one local
# variable's and getrefcount's own argument (so iterate over keys: an items() iterator's
# tuple would hold one more).
_UNREFERENCED = 3


def empty(shape, dtype):
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``, from the pool when large."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if count * dtype.itemsize < tuning.get("pool_min_bytes"):
        return np.empty(shape, dtype)
    with _lock:
        for key in _buffers:
            buffer = _buffers[key]
            if buffer.dtype == dtype and buffer.size == count and sys.getrefcount(buffer) == _UNREFERENCED:
                _buffers.move_to_end(key)
                return buffer.reshape(shape)
        buffer = np.empty(count, dtype)
        _buffers[id(buffer)] = buffer
        _release_excess()
        return buffer.reshape(shape)


def zeros(shape, dtype):
    """Like :func:`empty`, filled with zeros."""
    array = empty(shape, dtype)
    array[...] = 0
    return array


def _is_free(key):
    buffer = _buffers[key]
    return sys.getrefcount(buffer) == _UNREFERENCED


def _release_excess():
    free = [key for key in _buffers if _is_free(key)]
    free_bytes = sum(_buffers[key].nbytes for key in free)
    limit = tuning.get("pool_max_free_bytes")
    for key in free:
        if free_bytes <= limit:
            break
        free_bytes -= _buffers.pop(key).nbytes

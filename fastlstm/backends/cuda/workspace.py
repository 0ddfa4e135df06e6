"""The cuda backend's device memory: a pool of blocks reused across calls.

Every device array the backend makes (tapes, workspaces, results) is a *lease* of a block
of this pool. A block goes back to the pool when the last array viewing it dies, never
before: a tape, or a result the caller keeps, holds its memory as long as it lives, so
nothing is ever shared with a live array. After the first call of a shape the pool holds
what the next call of that shape needs, and that call allocates nothing: numba's
``cuMemAlloc``/``cuMemFree`` (which synchronise the device) run only when the pool has no
free block of a size.

Why a pool of our own, not numba's external-memory-manager (EMM) plugin or CuPy's pool:
an EMM plugin is process-wide (every numba allocation of the program, not fastlstm's) and
only takes effect in contexts created after it is installed, which fastlstm, loaded late,
cannot promise; CuPy is optional. Reuse needs no synchronisation: every kernel and copy of
the backend runs on the legacy default stream, so work queued on a released block finishes
before work queued on its next lease.

Blocks are keyed by their size in bytes (rounded up to :data:`ALIGNMENT`); at most
:data:`MAX_FREE_BYTES` of free blocks are kept (the oldest freed go first). Under the CUDA
simulator every lease of floats starts as NaN, so a kernel that reads memory nobody wrote
in this call (a stale value of an earlier call included) fails there every time.
"""
import os
import threading
import weakref
from collections import OrderedDict

import numpy as np
from numba import cuda

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
ALIGNMENT = 512
MAX_FREE_BYTES = 2 << 30


class Pool:
    """Device blocks by size; see the module's text.

    Attributes
    ----------
    allocations : int
        Blocks allocated from the device so far (``cuda.device_array`` calls).
    leases : int
        Arrays handed out so far.
    """

    def __init__(self, max_free_bytes=MAX_FREE_BYTES):
        self.max_free_bytes = max_free_bytes
        self.allocations = 0
        self.leases = 0
        self._free = OrderedDict()       # (size, serial) -> block, oldest first
        self._free_bytes = 0
        self._held = {}                  # token -> (block, size, lease pointer): leased out
        self._serial = 0
        self._lock = threading.Lock()
        self._empties = {}

    def empty(self, shape, dtype):
        """A C-contiguous device array of ``shape`` and ``dtype`` on a block of the pool.

        Parameters
        ----------
        shape : int or tuple of int
        dtype : numpy dtype

        Returns
        -------
        DeviceNDArray (a simulated one under the simulator)
            Not initialised (NaN under the simulator for floats); never shared with another
            live array. Size 0 takes no block.
        """
        dtype = np.dtype(dtype)
        shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
        count = int(np.prod(shape, dtype=np.int64))
        if count == 0:    # never written nor read: one per shape serves every call
            key = (shape, dtype)
            if key not in self._empties:
                self._empties[key] = cuda.device_array(shape, dtype)
            return self._empties[key]
        size = -(-count * dtype.itemsize // ALIGNMENT) * ALIGNMENT
        block = self._take(size)
        self.leases += 1
        return self._lease(block, size, shape, dtype, count)

    def statistics(self):
        """dict: ``allocations``, ``leases``, ``free_blocks``, ``free_bytes``, ``leased_blocks``."""
        with self._lock:
            return dict(allocations=self.allocations, leases=self.leases, free_blocks=len(self._free),
                        free_bytes=self._free_bytes, leased_blocks=len(self._held))

    def clear(self):
        """Give every free block back to the device (leased ones return, then go, as they die)."""
        with self._lock:
            self._free.clear()
            self._free_bytes = 0

    def _take(self, size):
        with self._lock:
            for key in self._free:
                if key[0] == size:
                    self._free_bytes -= size
                    return self._free.pop(key)
        self.allocations += 1
        return cuda.device_array(size, np.uint8)

    def _give_back(self, token):
        with self._lock:
            block, size, _ = self._held.pop(token)
            self._serial += 1
            self._free[size, self._serial] = block
            self._free_bytes += size
            while self._free_bytes > self.max_free_bytes and self._free:
                (old_size, _), _ = self._free.popitem(last=False)
                self._free_bytes -= old_size

    def _new_token(self):
        with self._lock:
            self._serial += 1
            return self._serial

    def _lease(self, block, size, shape, dtype, count):
        token = self._new_token()
        if SIMULATED:
            # a view through a memoryview: numpy's views of it keep IT alive (not the block), so its
            # death says that the last view has gone
            flat = np.frombuffer(memoryview(block._ary), dtype, count)
            with self._lock:
                self._held[token] = (block, size, None)
            weakref.finalize(flat, self._give_back, token)
            if dtype.kind == "f":
                flat[:] = np.nan
            from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

            return FakeCUDAArray(flat.reshape(shape))
        from numba.cuda.cudadrv.devicearray import DeviceNDArray
        from numba.cuda.cudadrv.driver import AutoFreePointer

        context = cuda.current_context()
        # freed (given back) when the last view of it dies, as numba's own allocations are
        pointer = AutoFreePointer(weakref.proxy(context), block.gpu_data.device_pointer, size,
                                  finalizer=_Release(self, token))
        with self._lock:
            self._held[token] = (block, size, pointer)
        strides = tuple(int(np.prod(shape[k + 1:], dtype=np.int64)) * dtype.itemsize for k in range(len(shape)))
        return DeviceNDArray(shape, strides, dtype, gpu_data=pointer.own())


class _Release:
    """The finalizer of a lease: gives its block back (holds no reference to the lease)."""

    def __init__(self, pool, token):
        self.pool, self.token = pool, token

    def __call__(self):
        self.pool._give_back(self.token)


POOL = Pool()


def empty(shape, dtype):
    """A new device array from the pool (:meth:`Pool.empty`)."""
    return POOL.empty(shape, dtype)


def statistics():
    """The pool's counters (:meth:`Pool.statistics`)."""
    return POOL.statistics()

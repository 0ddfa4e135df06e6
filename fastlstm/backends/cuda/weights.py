"""Device copies of host parameters, and what the kernels derive from them, kept across calls.

A layer's parameters are NumPy arrays unless the caller put them on the device. Copying them
in at every call costs a pageable host-to-device copy each (which synchronises the host) and
the transforms the kernels need (``weight_hh`` transposed for the backward, the peepholes
stacked, the folded biases) one launch each. Here a C-contiguous NumPy parameter's device copy
is kept with a digest of the bytes it was made from (:mod:`..cpu.digest`, as the cpu backend's
prepared calls check theirs), and reused while the array is the same object holding the same
bytes: an optimiser that updates it in place changes its values, the next call sees that (one
host pass over the bytes, no device work) and copies the new values into a NEW device array, so
a tape still holding the old copy keeps its weights. A cached copy is never written after it is
made; what is derived from such copies only is cached with them. Other host values (another
dtype, not C-contiguous) are copied in at every call.

Parameters that already live on the device are used in place and may change in place at any
time (nothing tells): what the kernels derive from them is made again at every call, on
blocks of the pool (:mod:`.workspace`), without allocating.
"""
import threading
import weakref

import numpy as np

from ...validation import real_array
from ..cpu.digest import Digest
from . import workspace

MAX_ENTRIES = 1024

_lock = threading.Lock()
_copies = {}                 # id(host array) -> _Copy
_immutable = {}             # id(cached device copy) -> weak reference to it (device arrays may be unhashable)
_derived = {}                # (kind, id of each source) -> (weak references to the sources, result)


class _Copy:
    __slots__ = ("source", "shape", "digest", "device")

    def __init__(self, source, shape, digest, device):
        self.source, self.shape, self.digest, self.device = source, shape, digest, device

    def holds(self, value):
        """Whether ``value`` is the array copied, where it was, of its shape, with its bytes."""
        return (self.source() is value and self.shape == value.shape
                and int(self.digest.table[0, 0]) == value.__array_interface__["data"][0] and self.digest.unchanged())


def _upload(name, value, dtype):
    """A new device array (pool) holding the host ``value`` as ``dtype``."""
    array = np.ascontiguousarray(real_array(name, value, dtype), dtype=dtype)
    device = workspace.empty(array.shape, dtype)
    device.copy_to_device(array)
    return device


def parameter(name, value, dtype):
    """The device copy of the host parameter ``value`` (a C-contiguous ndarray of ``dtype``), made
    once and reused while ``value`` holds the same bytes; other host values are copied in each call.

    Parameters
    ----------
    name : str
        For error messages.
    value : array-like, on the host
    dtype : numpy dtype

    Returns
    -------
    DeviceNDArray
        C-contiguous, of ``dtype``; never written by the backend.
    """
    dtype = np.dtype(dtype)
    if (type(value) is not np.ndarray or value.dtype != dtype or value.ndim not in (1, 2)
            or not value.flags.c_contiguous):
        return _upload(name, value, dtype)
    key = id(value)
    with _lock:
        entry = _copies.get(key)
    if entry is not None and entry.holds(value):
        return entry.device
    if entry is not None and entry.source() is value:
        # changed in place: drop the old copy first, so that its block (when no tape holds it)
        # serves the new one
        with _lock:
            _copies.pop(key, None)
    # the digest first: a change while the copy is made then shows at the next call
    taken = Digest([value], hold=False)     # asked only while the source is alive (_Copy.holds)
    device = _upload(name, value, dtype)
    _immutable[id(device)] = weakref.ref(device, lambda _, key=id(device): _forget_immutable(key))

    def forget(_, key=key):
        with _lock:
            current = _copies.get(key)
            if current is not None and current.source() is None:
                del _copies[key]

    with _lock:
        if len(_copies) >= MAX_ENTRIES:
            _copies.clear()
        _copies[key] = _Copy(weakref.ref(value, forget), value.shape, taken, device)
    return device


def _is_immutable(array):
    ref = _immutable.get(id(array))
    return ref is not None and ref() is array


def _forget_immutable(key):
    ref = _immutable.get(key)
    if ref is not None and ref() is None:
        del _immutable[key]


def derived(kind, sources, build):
    """``build()``, cached while every one of ``sources`` is a cached parameter copy (never
    written); made again at every call otherwise.

    Parameters
    ----------
    kind : hashable
        What ``build`` makes (with the sources, the cache's key).
    sources : tuple of device arrays
    build : callable returning a device array (or a tuple of them)
    """
    if not all(_is_immutable(source) for source in sources):
        return build()
    key = (kind,) + tuple(map(id, sources))
    with _lock:
        entry = _derived.get(key)
    if entry is not None and all(ref() is source for ref, source in zip(entry[0], sources)):
        return entry[1]
    result = build()

    def forget(_, key=key):
        with _lock:
            _derived.pop(key, None)

    with _lock:
        if len(_derived) >= MAX_ENTRIES:
            _derived.clear()
        _derived[key] = (tuple(weakref.ref(source, forget) for source in sources), result)
    return result


def clear():
    """Forget every cached copy (their blocks return to the pool when no tape holds them)."""
    with _lock:
        _copies.clear()
        _derived.clear()

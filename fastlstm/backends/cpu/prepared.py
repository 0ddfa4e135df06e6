"""Inference calls prepared once and reused.

A layer stack's forward builds the same things on every call of a shape: each layer's plan,
buffers, weights packed for the tile kernel, loops' arrays and the addresses of their compiled
code. At small shapes building them, and checking and converting the call's arguments, cost
more than the arithmetic. An inference call (no tape, no lengths, no in-loop regulariser) keeps
them, per thread, for the calls of the last few shapes and parameter arrays, and reuses them
while the parameters hold the values they were packed from: every call compares the
parameters' bytes with a copy taken when they were packed (measured: 16 µs for 256 KiB, 45 µs
for 1 MiB; packing costs more), so a parameter changed in place is packed again, never missed.

A call whose arguments already conform (:meth:`Prepared.conforms`: the NumPy arrays, dtype,
shapes and layout a call of the entry's shape converts its arguments to) is served before the
functional core converts anything (:func:`serve`); any other call is validated and converted
first, then served (:func:`infer`).

Only what fits in the ``prepared_bytes`` knob is kept (buffers, packed weights and the copy):
above it a call's arithmetic dwarfs building; ``prepared_calls`` entries per thread at most.
The buffers of an entry are used by one call at a time: each thread has its own entries, and
nothing a call returns is one of them.
"""
import ctypes
import ctypes.util
import os
import threading
from collections import OrderedDict

import numpy as np

from ... import buffers, tuning
from ...placement import HostArrays, is_converted
from .driver import forward_work, reverse_index, run_directions

_local = threading.local()
_HOST = HostArrays()


class Prepared:
    """A whole stack's inference call of one shape, ready to run.

    Attributes
    ----------
    config : fastlstm.config.LayerConfig
    names : tuple of str, the parameters' names (in the order of the caller's dict)
    arrays : tuple of ndarray, the parameters packed into ``works`` (the caller's own arrays)
    shapes : tuple of tuple of int, their shapes when packed (an array reshaped in place is not held)
    dtype : numpy.dtype, the layer's
    snapshot : list, or None: each array's bytes when packed (:func:`_copy`; None: an entry not kept)
    works : list of .driver.ForwardWork, per layer
    reverse : the reverse direction's time index, or None
    """

    __slots__ = ("config", "names", "arrays", "shapes", "dtype", "snapshot", "works", "reverse")

    def __init__(self, config, names, arrays, works, reverse):
        self.config, self.names, self.arrays, self.works, self.reverse = config, names, arrays, works, reverse
        self.shapes = tuple(array.shape for array in arrays)
        self.dtype = np.dtype(config.dtype)
        self.snapshot = None

    def holds(self, params):
        """Whether ``params`` (a dict) holds the entry's arrays, in their shapes and layout, with
        the bytes they were packed from."""
        dtype = self.dtype
        for name, array, shape, copy in zip(self.names, self.arrays, self.shapes, self.snapshot):
            if params.get(name) is not array or array.shape != shape or not is_converted(array, dtype):
                return False
            if type(copy) is bytes:
                if array.tobytes() != copy:
                    return False
            elif _memcmp(array.__array_interface__["data"][0], copy.__array_interface__["data"][0], copy.nbytes):
                return False
        return len(params) == len(self.names)

    def conforms(self, x, state):
        """Whether ``x`` and ``state`` need no conversion (:func:`~fastlstm.placement.is_converted`:
        C-contiguous NumPy arrays of the layer's dtype), ``x`` of the entry's shape (its key) and
        each state part (L·D, B, H)."""
        dtype = self.dtype
        if not is_converted(x, dtype):
            return False
        if state is None:
            return True
        if self.config.cell.state_count == 1:
            parts = (state,)
        elif type(state) is tuple and len(state) == self.config.cell.state_count:
            parts = state
        else:
            return False
        shape = self.config.state_shape(x.shape[0 if self.config.batch_first else 1])
        return all(is_converted(s, dtype) and s.shape == shape for s in parts)

    def __call__(self, x, state):
        """Run the stack on ``x`` (T, B, I), C-contiguous, of the layer's dtype.

        Parameters
        ----------
        x : ndarray (T, B, I)
        state : tuple of ndarray, each (L·D, B, H), or None (zeros)

        Returns
        -------
        y : ndarray (T, B, D·H), new
        final : tuple of ndarray, each (L·D, B, H), new (views of one array)
        """
        config = self.config
        steps, batch = x.shape[:2]
        directions = config.directions
        final = np.empty((config.cell.state_count,) + config.state_shape(batch), self.dtype)
        layer_input = x
        for layer, work in enumerate(self.works):
            first = layer * directions
            state_in = None if state is None else [tuple([s[first + d] for s in state]) for d in range(directions)]
            y = buffers.empty((steps, batch, config.output_size), self.dtype)
            for direction, finals in enumerate(run_directions(work, layer_input, state_in, self.reverse, y)):
                final[:, first + direction] = finals
            layer_input = y
        return layer_input, tuple(final)


def _load_memcmp():
    try:
        memcmp = ctypes.CDLL(ctypes.util.find_library("c") if os.name != "nt" else "msvcrt").memcmp
    except (OSError, AttributeError, TypeError):
        return None
    memcmp.restype, memcmp.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return memcmp


_memcmp = _load_memcmp()
# From this size on an array is compared with a copy by the C library's memcmp (no bytes object
# made: 24 µs a MiB against 45; below it the call costs more than the copy saves).
MEMCMP_BYTES = 64 << 10


def _copy(array):
    """What :meth:`Prepared.holds` compares ``array`` with later: its bytes, or, from
    ``MEMCMP_BYTES`` on where the C library is reachable, a copy of it."""
    return array.copy() if _memcmp is not None and array.nbytes >= MEMCMP_BYTES else array.tobytes()


def _entries():
    entries = getattr(_local, "entries", None)
    if entries is None:
        entries = _local.entries = OrderedDict()
    return entries


def _key(config, params, shape):
    """An entry's key: the config, the time-major input shape, the parameter arrays in the order
    of the caller's dict, and the tuning knobs. Objects by id: an entry holds the config and the
    arrays, so no other object takes their ids while it lives (and a config is hashed in ~0.5 µs)."""
    return id(config), shape, tuple(map(id, params.values())), tuning.state()


def serve(config, params, x, state):
    """The results of an inference call already prepared whose arguments conform, before any
    conversion; None for any other call (the functional core then validates it and calls
    :func:`infer`).

    Parameters
    ----------
    config : fastlstm.config.LayerConfig
    params : the call's ``params``, unchecked
    x : the call's ``x``, unchecked: served when it is a C-contiguous ndarray of the layer's dtype,
        (T, B, I) or with ``batch_first`` (B, T, I), of a shape prepared before
    state : the call's ``state``, unchecked

    Returns
    -------
    (y, final) as :func:`infer`, ``y`` (B, T, D·H) with ``batch_first``; or None
    """
    if type(x) is not np.ndarray or type(params) is not dict or x.ndim != 3:
        return None
    shape = (x.shape[1], x.shape[0], x.shape[2]) if config.batch_first else x.shape
    entry = _entries().get(_key(config, params, shape))
    if entry is None or not entry.conforms(x, state) or not entry.holds(params):
        return None
    state = state if type(state) is not np.ndarray else (state,)
    if config.batch_first:
        y, final = entry(_HOST.time_major(x), state)
        return _HOST.time_major(y), final
    return entry(x, state)


def infer(config, kernels, params, given, x, state):
    """Run an inference call on validated arguments, prepared once per shape and parameters.

    Parameters
    ----------
    config : fastlstm.config.LayerConfig
    kernels : .kernels.CellKernels of the config's cell and dtype
    params : dict of ndarray, every parameter of the stack, C-contiguous, of the layer's dtype
        (converted; biases of zeros for a layer without them)
    given : the caller's ``params`` dict: an entry is kept only when ``params`` holds its arrays
        themselves (a later call can then be recognised by them)
    x : ndarray (T, B, I), C-contiguous, of the layer's dtype
    state : tuple of ndarray, each (L·D, B, H), or None (zeros)

    Returns
    -------
    y : ndarray (T, B, D·H)
    final : tuple of ndarray, each (L·D, B, H)
    """
    names = tuple(given)
    kept = all(params[name] is given[name] for name in names)
    key = _key(config, given, x.shape)
    entries = _entries()
    entry = entries.get(key) if kept else None
    if entry is not None and entry.holds(given):
        entries.move_to_end(key)
        return entry(x, state)
    entries.pop(key, None)
    entry = _build(config, kernels, params, names, x.shape)
    arrays = entry.arrays
    if kept and sum(a.nbytes for a in arrays) + _work_bytes(entry.works) <= tuning.get("prepared_bytes"):
        entry.snapshot = [_copy(a) for a in arrays]
        entries[key] = entry
        while len(entries) > tuning.get("prepared_calls"):
            entries.popitem(last=False)
    return entry(x, state)


def _build(config, kernels, params, names, shape):
    steps, batch = shape[:2]
    directions = config.directions
    reverse = reverse_index(steps, batch, None) if directions > 1 else None
    works = []
    for layer in range(config.num_layers):
        layer_params = [config.layer_parameters(params, layer, d) for d in range(directions)]
        layer_shape = (steps, batch, config.layer_input_size(layer))
        works.append(forward_work(kernels, layer_params, layer_shape, np.full(steps, batch), None, reverse, None,
                                  None, False, kept=True))
    return Prepared(config, names, tuple(params[name] for name in names), works, reverse)


def _work_bytes(works):
    """Bytes of the arrays the :class:`.driver.ForwardWork` of each layer holds, each counted once."""
    seen = {}
    for work in works:
        for direction in work.directions:
            for array in (*direction.arrays[:-1], direction.input_panels, direction.bias,
                          *direction.loop.__dict__.values(), work.xproj):
                if hasattr(array, "nbytes"):
                    seen[id(array)] = array.nbytes
    return sum(seen.values())


def clear():
    """Forget this thread's prepared calls (their memory returns when nothing else holds it)."""
    _entries().clear()

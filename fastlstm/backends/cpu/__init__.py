"""The Numba CPU backend: compiled time loops around batched GEMMs (see :mod:`.driver`).

Numba loads, and the kernels compile, on the first call; importing this package loads neither.
"""
import functools
import importlib

from ...placement import HostArrays


@functools.cache
def _module(name):
    """The backend's module ``name``, imported on first use (an ``import`` statement in a method
    costs ~1.3 µs at every call, a tenth of a small inference call)."""
    return importlib.import_module(f"{__name__}.{name}")


class CPUBackend:
    """Numba-compiled kernels on the CPU."""

    name = "cpu"
    arrays = HostArrays()

    def is_device_array(self, value):
        return False

    def forward_layer(self, cell, params, x, state, lengths, *, keep_tape, in_the_loop):
        kernels = _module("kernels").kernels_for(cell, x.dtype)
        return _module("driver").forward_layer(kernels, params, x, state, lengths, keep_tape, in_the_loop)

    def serve_inference(self, config, params, x, state):
        """An inference call's ``(y, final)`` when a prepared call serves its unconverted
        arguments, else None (:func:`.prepared.serve`)."""
        return _module("prepared").serve(config, params, x, state)

    def infer(self, config, params, given, x, state):
        """A whole stack's inference call on validated arguments, prepared once per shape and
        parameters (:func:`.prepared.infer`)."""
        kernels = _module("kernels").kernels_for(config.cell, x.dtype)
        return _module("prepared").infer(config, kernels, params, given, x, state)

    def backward_layer(self, tape, dy, dstate, *, norms):
        return _module("driver").backward_layer(tape, dy, dstate, norms)

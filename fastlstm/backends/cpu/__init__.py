"""The Numba CPU backend: compiled time loops around batched GEMMs (see :mod:`.driver`).

Numba loads, and the kernels compile, on the first call; importing this package loads neither.
"""
from ...placement import HostArrays


class CPUBackend:
    """Numba-compiled kernels on the CPU."""

    name = "cpu"
    arrays = HostArrays()

    def is_device_array(self, value):
        return False

    def forward_layer(self, cell, params, x, state, lengths, *, keep_tape, in_the_loop):
        from .driver import forward_layer
        from .kernels import kernels_for

        return forward_layer(kernels_for(cell, x.dtype), params, x, state, lengths, keep_tape, in_the_loop)

    def serve_inference(self, config, params, x, state):
        """An inference call's ``(y, final)`` when a prepared call serves its unconverted
        arguments, else None (:func:`.prepared.serve`)."""
        from .prepared import serve

        return serve(config, params, x, state)

    def infer(self, config, params, given, x, state):
        """A whole stack's inference call on validated arguments, prepared once per shape and
        parameters (:func:`.prepared.infer`)."""
        from .kernels import kernels_for
        from .prepared import infer

        return infer(config, kernels_for(config.cell, x.dtype), params, given, x, state)

    def backward_layer(self, tape, dy, dstate, *, norms):
        from .driver import backward_layer

        return backward_layer(tape, dy, dstate, norms)

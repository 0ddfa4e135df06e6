"""The cuda backend object (see :class:`..protocol.Backend`): built on first use, after
checking for a GPU, so that a machine without one gets a clear error at construction."""


class CUDABackend:
    """numba.cuda kernels on an NVIDIA GPU."""

    name = "cuda"

    def __init__(self):
        from .arrays import require_gpu

        require_gpu()
        from .placement import DeviceArrays

        self.arrays = DeviceArrays()

    def is_device_array(self, value):
        return self.arrays.is_device_array(value)

    def forward_layer(self, cell, params, x, state, lengths, *, keep_tape, in_the_loop):
        from .compiled import kernels_for
        from .driver import forward_layer

        return forward_layer(kernels_for(cell, x.dtype), params, x, state, lengths, keep_tape, in_the_loop)

    def backward_layer(self, tape, dy, dstate, *, norms):
        from .driver import backward_layer

        return backward_layer(tape, dy, dstate, norms)

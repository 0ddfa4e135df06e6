"""The backends behind the functional core, each running one layer (every direction).

A backend has ``forward_layer(cell, params, x, state, lengths, keep_tape) -> (y, final, tape)`` and
``backward_layer(tape, dy, dstate) -> (dx, dstate0, grads)`` over time-major arrays, with
per-direction lists of parameter dicts (names without their ``_l{k}`` suffix) and of
state tuples, and ``arrays`` (:mod:`fastlstm.placement`): where its arrays live. Heavy
modules load on first use, so ``import fastlstm`` stays fast and never touches Numba or CUDA.
"""
import numpy as np

from .placement import HostArrays


class ReferenceBackend:
    """NumPy, one step at a time: in float64, the oracle.

    ``arithmetic=np.float32`` runs the same equations in float32; the tests use it to
    measure how much error float32 itself allows on a given problem.
    """

    name = "reference"
    arrays = HostArrays()

    def __init__(self, arithmetic=np.float64):
        self.arithmetic = arithmetic

    in_the_loop_regularisation = ("recurrent_dropout", "zoneout")

    def forward_layer(self, cell, params, x, state, lengths, keep_tape=True, recurrent=None, zoneout=None):
        from . import reference

        return reference.forward_layer(cell, params, x, state, lengths, self.arithmetic, recurrent, zoneout)

    def backward_layer(self, tape, dy, dstate, norms=None):
        from . import reference

        return reference.backward_layer(tape, dy, dstate, norms)

    def gate_activations(self, tape):
        from .introspection import reference_gate_activations

        return reference_gate_activations(tape)


class CPUBackend:
    """Numba-compiled kernels on the CPU."""

    name = "cpu"
    arrays = HostArrays()

    in_the_loop_regularisation = ("recurrent_dropout", "zoneout")

    def forward_layer(self, cell, params, x, state, lengths, keep_tape=True, recurrent=None, zoneout=None):
        from . import cpu

        return cpu.forward_layer(cpu.kernels_for(cell, x.dtype), params, x, state, lengths, keep_tape, zoneout,
                                 recurrent)

    def backward_layer(self, tape, dy, dstate, norms=None):
        from . import cpu

        return cpu.backward_layer(tape, dy, dstate, norms)

    def gate_activations(self, tape):
        from .introspection import cpu_gate_activations

        return cpu_gate_activations(tape)


class CUDABackend:
    """numba.cuda kernels on an NVIDIA GPU; built on first use, after checking for a GPU."""

    name = "cuda"

    def __init__(self):
        from .cuda.arrays import require_gpu

        require_gpu()
        from .cuda.placement import DeviceArrays

        self.arrays = DeviceArrays()

    def is_device_array(self, value):
        return self.arrays.is_device_array(value)

    in_the_loop_regularisation = ("recurrent_dropout", "zoneout")

    def forward_layer(self, cell, params, x, state, lengths, keep_tape=True, recurrent=None, zoneout=None):
        from .cuda.compiled import kernels_for
        from .cuda.driver import forward_layer

        return forward_layer(kernels_for(cell, x.dtype), params, x, state, lengths, keep_tape, recurrent, zoneout)

    def backward_layer(self, tape, dy, dstate, norms=None):
        from .cuda.driver import backward_layer

        return backward_layer(tape, dy, dstate, norms)

    def gate_activations(self, tape):
        from .introspection import cuda_gate_activations

        return cuda_gate_activations(tape)


def _host_only(value):
    return False


ReferenceBackend.is_device_array = staticmethod(_host_only)
CPUBackend.is_device_array = staticmethod(_host_only)

_BACKENDS = {
    "reference": ReferenceBackend(),
    "cpu": CPUBackend(),
    "reference-float32": ReferenceBackend(np.float32),  # for tests; not a public backend
}


def get_backend(name):
    """Return the backend called ``name``.

    ``"cuda"`` is built on first use and raises RuntimeError, naming the reason, when no
    CUDA GPU (or no numba-cuda) is usable; nothing is cached then, so a later call retries.
    """
    if name == "cuda" and name not in _BACKENDS:
        _BACKENDS[name] = CUDABackend()
    return _BACKENDS[name]

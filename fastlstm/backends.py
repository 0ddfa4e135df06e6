"""The backends behind the functional core, each running one layer-direction.

A backend has ``forward(cell, params, x, state) -> (y, final_state, tape)`` and
``backward(tape, dy, dstate) -> (dx, dstate0, grads)`` over time-major arrays, with
parameter names without their ``_l{k}`` suffix. Heavy modules load on first use, so
``import fastlstm`` stays fast and never touches Numba or CUDA.
"""
import numpy as np


class ReferenceBackend:
    """NumPy, one step at a time: in float64, the oracle.

    ``arithmetic=np.float32`` runs the same equations in float32; the tests use it to
    measure how much error float32 itself allows on a given problem.
    """

    name = "reference"

    def __init__(self, arithmetic=np.float64):
        self.arithmetic = arithmetic

    def forward(self, cell, params, x, state):
        from . import reference

        return reference.forward(cell, params, x, state, self.arithmetic)

    def backward(self, tape, dy, dstate):
        from . import reference

        return reference.backward(tape, dy, dstate)


class CPUBackend:
    """Numba-compiled kernels on the CPU."""

    name = "cpu"

    def forward(self, cell, params, x, state):
        from . import cpu

        return cpu.forward(cpu.kernels_for(cell), params, x, state)

    def backward(self, tape, dy, dstate):
        from . import cpu

        return cpu.backward(tape, dy, dstate)


_BACKENDS = {
    "reference": ReferenceBackend(),
    "cpu": CPUBackend(),
    "reference-float32": ReferenceBackend(np.float32),  # for tests; not a public backend
}


def get_backend(name):
    """Return the backend called ``name``; ``"cuda"`` raises until the GPU backend exists."""
    if name == "cuda":
        raise NotImplementedError("backend 'cuda': the GPU backend is not available in this "
                                  "version; use backend='cpu' or 'reference'")
    return _BACKENDS[name]

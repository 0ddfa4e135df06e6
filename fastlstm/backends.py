"""The backends behind the functional core, each running one layer (every direction).

A backend has ``forward_layer(cell, params, x, state, lengths, keep_tape) -> (y, final, tape)`` and
``backward_layer(tape, dy, dstate) -> (dx, dstate0, grads)`` over time-major arrays, with
per-direction lists of parameter dicts (names without their ``_l{k}`` suffix) and of
state tuples. Heavy modules load on first use, so ``import fastlstm`` stays fast and
never touches Numba or CUDA.
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

    def forward_layer(self, cell, params, x, state, lengths, keep_tape=True):
        from . import reference

        return reference.forward_layer(cell, params, x, state, lengths, self.arithmetic)

    def backward_layer(self, tape, dy, dstate):
        from . import reference

        return reference.backward_layer(tape, dy, dstate)


class CPUBackend:
    """Numba-compiled kernels on the CPU."""

    name = "cpu"

    def forward_layer(self, cell, params, x, state, lengths, keep_tape=True):
        from . import cpu

        return cpu.forward_layer(cpu.kernels_for(cell, x.dtype), params, x, state, lengths, keep_tape)

    def backward_layer(self, tape, dy, dstate):
        from . import cpu

        return cpu.backward_layer(tape, dy, dstate)


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

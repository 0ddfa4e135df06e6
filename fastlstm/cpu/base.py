"""The adaptor every cell gives the shared CPU driver, with the common defaults.

An adaptor compiles the cell's two step templates for one dtype (binding the dtype's
activations and constants, see ``activations``) and packs what they read:
``forward_weights``/``backward_weights`` (tuples of arrays, given the unit blocks),
``forward_work``/``backward_work`` (per-call workspaces), the number of tape planes, the
part of the recurrent bias folded into the input projection, and how the
recurrent-weight and element-wise-vector gradients are formed from the pre-activation
gradients after the loop.
"""
import numpy as np

from .activations import bindings_for
from .gemm import matmul_transposed
from .specialise import specialise
from .threads import chunk_count


class CellKernels:
    tape_planes = 0
    forward_phases = 1
    backward_phases = 1

    def __init__(self, cell, dtype, name, **bindings):
        self.cell = cell
        self.dtype = np.dtype(dtype)
        self.name = f"{name}_{self.dtype.name}"
        bindings.update(bindings_for(self.dtype))
        self.step_forward = specialise(self.template_forward, self.name, **bindings)
        self.step_backward = specialise(self.template_backward, self.name, **bindings)

    def folded_bias(self, params):
        """The part of ``bias_hh`` (G·H,) added to the input projection before the loop."""
        return params["bias_hh"]

    def forward_weights(self, params, bounds):
        raise NotImplementedError

    def backward_weights(self, params, bounds):
        raise NotImplementedError

    def forward_work(self, batch, hidden, dtype):
        return (np.empty(batch * self.cell.gates * hidden, dtype),)

    def backward_work(self, batch, hidden, dtype):
        return (np.empty(0, dtype),)

    def recurrent_gradient_buffer(self, dgx):
        """Where the backward loop writes what differs between the gradients of the recurrent
        and the input projections (its ``dgh``); most cells have no difference: ``dgx`` itself."""
        return dgx

    def recurrent_gradients(self, dgx, dgh, states, tape):
        """``weight_hh`` and ``bias_hh`` gradients: dW_hh = Σ_t dG_tᵀ h_{t−1} as one GEMM."""
        rows = dgx.reshape(-1, dgx.shape[-1])
        h_prev = states[0, :-1].reshape(-1, states.shape[-1])
        return {"weight_hh": matmul_transposed(rows, h_prev, chunk_count(len(rows))),
                "bias_hh": rows.sum(axis=0)}

    def vector_gradients(self, dgx, states, tape):
        return {}

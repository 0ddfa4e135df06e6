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
    # True when the gradient of the recurrent projection differs from that of the input
    # projection (the GRU with reset_after=True, whose candidate sees r ⊙ (W_hn h + b_hn)).
    separate_recurrent_gradient = False

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

    def recurrent_weight_gradient(self, dgh, states, tape):
        """dW_hh = Σ_t dGh_tᵀ h_{t−1}: one GEMM over all steps."""
        rows = dgh.reshape(-1, dgh.shape[-1])
        return matmul_transposed(rows, states[0, :-1].reshape(-1, states.shape[-1]), chunk_count(len(rows)))

    def vector_gradients(self, dgx, states, tape):
        return {}

"""The adaptor every cell gives the shared CPU driver, with the common defaults.

An adaptor names the cell's two compiled step functions and packs what they read:
``forward_weights``/``backward_weights`` (tuples of arrays), ``forward_work``/``backward_work``
(per-call workspaces), the number of tape planes, and how the recurrent-weight and
element-wise-vector gradients are formed from the pre-activation gradients after the loop.
"""
import numpy as np

from .gemm import matmul_transposed
from .threads import chunk_count


class CellKernels:
    tape_planes = 0
    # True when the gradient of the recurrent projection differs from that of the input
    # projection (the GRU with reset_after=True, whose candidate sees r ⊙ (W_hn h + b_hn)).
    separate_recurrent_gradient = False

    def __init__(self, cell, name, step_forward, step_backward):
        self.cell = cell
        self.name = name
        self.step_forward = step_forward
        self.step_backward = step_backward

    def forward_weights(self, params):
        return (np.ascontiguousarray(params["weight_hh"].T), params["bias_hh"])

    def backward_weights(self, params):
        return (params["weight_hh"],)

    def forward_work(self, batch, hidden, dtype):
        gate_width = self.cell.gates * hidden
        return (np.empty((batch, gate_width), dtype),)

    def backward_work(self, batch, hidden, dtype):
        return (np.empty((0, 0), dtype),)  # a placeholder: most cells need no workspace here

    def recurrent_weight_gradient(self, dgh, states, tape):
        """dW_hh = Σ_t dGh_tᵀ h_{t−1}: one GEMM over all steps."""
        rows = dgh.reshape(-1, dgh.shape[-1])
        return matmul_transposed(rows, states[0, :-1].reshape(-1, states.shape[-1]), chunk_count(len(rows)))

    def vector_gradients(self, dgx, states, tape):
        return {}

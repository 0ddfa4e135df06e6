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
from .gemm import weight_gradient
from .specialise import specialise
from .threads import chunk_count
from .units import pack_backward_panels

# ``weight_gradient``'s "no element-wise factor", per dtype.
NO_SCALE = {np.dtype(t): np.zeros((0, 0, 0, 0), t) for t in (np.float32, np.float64)}


class CellKernels:
    tape_planes = 0
    forward_phases = 1
    backward_phases = 1
    # whether the backward (its steps or vector_gradients) reads the state a step produced
    # (states[:, t + 1]); under zoneout the cell's new state is then kept apart for it
    backward_reads_new_state = False
    # ... and whether the backward step itself does (it is then given those states)
    step_backward_reads_new_state = False

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
        """What the forward step reads besides the state: the recurrent weights as stored."""
        return (params["weight_hh"],)

    def backward_weights(self, params, bounds):
        """What the backward step reads: each unit block's columns of the recurrent weights."""
        return (pack_backward_panels(params["weight_hh"], bounds),)

    def forward_work(self, batch, hidden, dtype):
        """The recurrent projections of every gate: (gates, B, H) values, flat."""
        return (np.empty(batch * self.cell.gates * hidden, dtype),)

    def backward_work(self, batch, hidden, dtype):
        """Room for one step's gradient reaching the previous state: (B, H) values, flat."""
        return (np.empty(batch * hidden, dtype),)

    def recurrent_gradients(self, dgx, inputs, tape, t0, t1):
        """Steps t0 … t1 − 1's ``weight_hh`` and ``bias_hh`` gradients: Σ_t dG_tᵀ h_{t−1} as one GEMM.

        ``dgx`` (t1 − t0, B, G·H) holds those steps' gate gradients; ``inputs[t]`` (B, H) is
        what ``weight_hh`` saw at step t (h_{t−1}, or h_{t−1} ⊙ m under recurrent dropout);
        ``tape`` is the whole forward's.
        """
        rows = dgx.reshape(-1, dgx.shape[-1])
        h_prev = inputs[t0:t1].reshape(-1, inputs.shape[-1])
        weight, bias = weight_gradient(rows, 0, rows.shape[1], h_prev, NO_SCALE[dgx.dtype], 0,
                                       chunk_count(len(rows)))
        return {"weight_hh": weight, "bias_hh": bias}

    def vector_gradients(self, dgx, states, tape, t0, t1, new_states):
        """Gradients of the cell's element-wise weight vectors over steps t0 … t1 − 1.

        ``new_states[:, t + 1]`` is the state step t computed (``states`` itself unless
        zoneout replaced some of it by the previous values)."""
        return {}

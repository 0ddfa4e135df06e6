"""The reference backend: :mod:`fastlstm.reference`'s NumPy equations, one step at a time.

In float64 it is the oracle every fast backend is tested against. ``arithmetic=np.float32``
runs the same equations in float32; the tests use that to measure how much error float32
itself allows on a given problem.
"""
import numpy as np

from ..cells.spec import NEW_STATE
from ..placement import HostArrays
from .protocol import LayerBackward, LayerForward


class ReferenceLayerTape:
    """The reference's tape of one layer: per direction, each sequence's (or the whole batch's)
    per-step saved values."""

    def __init__(self, cell, tape):
        self.cell, self.tape = cell, tape

    def gate_planes(self):
        """Per direction, the cell's activations (A, T, B, H), natural time, NaN past each end."""
        spec = self.cell.spec
        keys = [("h_new" if a.plane == NEW_STATE else spec.planes[a.plane]) for a in spec.activations]
        steps, batch, hidden = self.tape["steps"], self.tape["batch"], self.tape["hidden"]
        out = []
        for direction, direction_tapes in enumerate(self.tape["tapes"]):
            planes = np.full((len(keys), steps, batch, hidden), np.nan)
            for rows, n, tape_seq in direction_tapes:
                if n == 0:
                    continue
                for k, key in enumerate(keys):
                    seq = np.array([saved[key] for saved in tape_seq["steps"]]).reshape(n, -1, hidden)
                    planes[k, :n, rows] = seq if direction == 0 else seq[::-1]
            out.append(planes)
        return out


class ReferenceBackend:
    """NumPy, one step at a time, in ``arithmetic`` (float64: the oracle)."""

    name = "reference"
    arrays = HostArrays()

    def __init__(self, arithmetic=np.float64):
        self.arithmetic = arithmetic

    def is_device_array(self, value):
        return False

    def forward_layer(self, cell, params, x, state, lengths, *, keep_tape, in_the_loop):
        from .. import reference

        recurrent = zoneout = None
        if in_the_loop is not None:
            recurrent = [d.recurrent_mask for d in in_the_loop]
            zoneout = [d.zoneout for d in in_the_loop]
        y, final, tape = reference.forward_layer(cell, params, x, state, lengths, self.arithmetic, recurrent,
                                                 zoneout)
        return LayerForward(y, final, ReferenceLayerTape(cell, tape) if keep_tape else None)

    def backward_layer(self, tape, dy, dstate, *, norms):
        from .. import reference

        return LayerBackward(*reference.backward_layer(tape.tape, dy, dstate, norms))

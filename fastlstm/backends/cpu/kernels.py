"""The CPU kernels of one cell and dtype, compiled lazily from the shared templates.

The cell's math (its module's ``forward``/``backward``) is compiled with the dtype's
activations and constants and the cell's options bound; the step templates (:mod:`.steps`)
with that math, the arities and phase tables of the cell's spec and, per loop, the
regularisers that run inside it; the loops (:mod:`.loops`) with those steps. Every copy is
named after what it binds, so Numba's on-disk cache keeps each one (:mod:`fastlstm.rebinding`).
Only the loops a call needs are compiled: a layer that never uses recurrent dropout never
compiles a loop with it.
"""
import numpy as np
from numba import njit

from ...cells.bound import CompiledCell
from ...rebinding import rebind
from . import loops, steps
from .activations import compiled_activations


def _compile(template, suffix, parallel=False, inline=False, **bindings):
    options = dict(cache=True, error_model="numpy", parallel=parallel)
    if inline:
        options["inline"] = "always"
    return njit(**options)(rebind(template, suffix, **bindings))


class CellKernels(CompiledCell):
    """The compiled loops of one cell and dtype (a :class:`~fastlstm.cells.bound.CompiledCell`)."""

    def __init__(self, cell, dtype):
        super().__init__(cell, dtype, compiled_activations(dtype),
                         lambda function, suffix, math: _compile(function, suffix, inline=True, **math))
        self._loops = {}

    def _per_phase(self, template, switch, phases, suffix, **flags):
        """``switch`` bound to one compiled copy of ``template`` per phase (the switch calls the
        copy of the phase it is given)."""
        copies = [_compile(template, f"{suffix}_p{phase}", PHASE=phase, **flags, **self.constants)
                  for phase in range(phases)]
        copies += [copies[0]] * (3 - phases)    # never called
        return _compile(switch, suffix, PHASE_0=copies[0], PHASE_1=copies[1], PHASE_2=copies[2])

    def forward_loop(self, recurrent_dropout=False, zoneout=False):
        """The compiled forward loop with these regularisers inside it."""
        key = ("forward", bool(recurrent_dropout), bool(zoneout))
        if key not in self._loops:
            suffix = f"{self.name}_rd{int(recurrent_dropout)}_zo{int(zoneout)}"
            flags = dict(RECURRENT_DROPOUT=bool(recurrent_dropout), ZONEOUT=bool(zoneout))
            phases = len(self.spec.forward)
            self._loops[key] = _compile(
                loops.forward_loop, suffix, parallel=True, FORWARD_PHASES=phases,
                forward_phase=self._per_phase(steps.forward_phase, steps.forward_switch, phases, suffix, **flags))
        return self._loops[key]

    def backward_loop(self, recurrent_dropout=False, zoneout=False, record_norms=False):
        """The compiled backward loop with these regularisers (and the norms' record) inside it."""
        key = ("backward", bool(recurrent_dropout), bool(zoneout), bool(record_norms))
        if key not in self._loops:
            suffix = f"{self.name}_rd{int(recurrent_dropout)}_zo{int(zoneout)}_n{int(record_norms)}"
            flags = dict(RECURRENT_DROPOUT=bool(recurrent_dropout), ZONEOUT=bool(zoneout))
            phases = len(self.spec.backward)
            self._loops[key] = _compile(
                loops.backward_loop, suffix, parallel=True, BACKWARD_PHASES=phases, RECORD_NORMS=bool(record_norms),
                backward_pointwise=self._per_phase(steps.backward_pointwise, steps.pointwise_switch, phases, suffix,
                                                   **flags),
                backward_projection=self._per_phase(steps.backward_projection, steps.projection_switch, phases,
                                                    suffix, **flags))
        return self._loops[key]


_kernels = {}


def kernels_for(cell, dtype):
    """The :class:`CellKernels` of ``cell`` and ``dtype``, built on first use (nothing compiles
    until a loop is asked for)."""
    key = (cell, np.dtype(dtype))
    if key not in _kernels:
        _kernels[key] = CellKernels(cell, dtype)
    return _kernels[key]

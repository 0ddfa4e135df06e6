"""The CPU kernels of one cell and dtype, compiled lazily from the shared templates.

The cell's math (its module's ``forward``/``backward``) is compiled with the dtype's
activations and constants and the cell's options bound; the step templates (:mod:`.steps`)
with that math, the arities and phase tables of the cell's spec and, per loop, the
regularisers that run inside it; the loops (:mod:`.loops`) with those steps. Every copy is
named after what it binds, so Numba's on-disk cache keeps each one (:mod:`fastlstm.rebinding`).
Only the loops a call needs are compiled: a layer that never uses recurrent dropout never
compiles a loop with it.
"""
import os
import sys

import numpy as np
from numba import njit

from ...cells.bound import CompiledCell
from ...rebinding import kernel_stamp, rebind
from . import loops, steps
from .activations import compiled_activations


def _compile(template, suffix, parallel=False, inline=False, **bindings):
    options = dict(cache=True, error_model="numpy", parallel=parallel, nogil=True)
    if inline:
        options["inline"] = "always"
    return njit(**options)(rebind(template, f"{suffix}_{kernel_stamp()}", **bindings))


# The loops' templates: per step by units (a parallel region per phase), by sequences (one
# block of rows, every step; :func:`.blocks.every_block` runs it on several blocks at once).
LOOPS = {
    "forward": (loops.forward_loop, loops.forward_rows),
    "backward": (loops.backward_loop, loops.backward_rows),
}


class CellKernels(CompiledCell):
    """The compiled loops of one cell and dtype (a :class:`~fastlstm.cells.bound.CompiledCell`)."""

    def __init__(self, cell, dtype):
        super().__init__(cell, dtype, compiled_activations(dtype),
                         lambda function, suffix, math: _compile(function, suffix, inline=True, **math))
        self._loops = {}
        self._phases = {}
        self._announced = False

    def _copies(self, template, phases, suffix, **flags):
        """One compiled copy of ``template`` per phase (three: a cell's unused phases repeat phase
        0's, never called), built once and shared by every loop that calls them."""
        key = (template.__name__, suffix)
        if key not in self._phases:
            copies = [_compile(template, f"{suffix}_p{phase}", PHASE=phase, **flags, **self.constants)
                      for phase in range(phases)]
            self._phases[key] = copies + [copies[0]] * (3 - phases)
        return self._phases[key]

    def _switch(self, template, switch, phases, suffix, **flags):
        """``switch`` bound to :meth:`_copies` (it calls the copy of the phase it is given)."""
        key = (switch.__name__, suffix)
        if key not in self._phases:
            copies = self._copies(template, phases, suffix, **flags)
            self._phases[key] = _compile(switch, suffix, PHASE_0=copies[0], PHASE_1=copies[1], PHASE_2=copies[2])
        return self._phases[key]

    def forward_loop(self, by="units", recurrent_dropout=False, zoneout=False, keep_tape=True):
        """The compiled forward loop with these regularisers inside it: ``by`` ``"units"``
        (:func:`.loops.forward_loop`), or ``"rows"`` (:func:`.loops.forward_rows`, one
        block of rows); ``keep_tape`` False: for inference (a
        one-phase cell then writes no tape planes, :data:`.steps.KEEP_TAPE`)."""
        phases = len(self.spec.forward)
        keep = bool(keep_tape) or phases > 1
        suffix = f"{self.name}_rd{int(recurrent_dropout)}_zo{int(zoneout)}" + ("" if keep else "_inference")
        flags = dict(RECURRENT_DROPOUT=bool(recurrent_dropout), ZONEOUT=bool(zoneout), KEEP_TAPE=keep)

        def bindings(by):
            if by == "units":
                return dict(FORWARD_PHASES=phases, forward_phase=self._switch(
                    steps.forward_phase, steps.forward_switch, phases, suffix, **flags))
            copies = self._copies(steps.forward_phase, phases, suffix, **flags)
            return dict(FORWARD_PHASES=phases, **{f"FORWARD_{p}": copies[p] for p in range(3)})
        return self._loop("forward", by, suffix, bindings)

    def backward_loop(self, by="units", recurrent_dropout=False, zoneout=False, record_norms=False):
        """The compiled backward loop with these regularisers (and the norms' record) inside it,
        ``by`` as :meth:`forward_loop`'s."""
        suffix = f"{self.name}_rd{int(recurrent_dropout)}_zo{int(zoneout)}"
        flags = dict(RECURRENT_DROPOUT=bool(recurrent_dropout), ZONEOUT=bool(zoneout), KEEP_TAPE=True)
        phases = len(self.spec.backward)

        def bindings(by):
            common = dict(BACKWARD_PHASES=phases, RECORD_NORMS=bool(record_norms))
            if by == "units":
                return dict(common, backward_pointwise=self._switch(
                    steps.backward_pointwise, steps.pointwise_switch, phases, suffix, **flags),
                    backward_projection=self._switch(
                        steps.backward_projection, steps.projection_switch, phases, suffix, **flags))
            pointwise = self._copies(steps.backward_pointwise, phases, suffix, **flags)
            projection = self._copies(steps.backward_projection, phases, suffix, **flags)
            return dict(common, **{f"POINTWISE_{p}": pointwise[p] for p in range(3)},
                        **{f"PROJECTION_{p}": projection[p] for p in range(3)})
        return self._loop("backward", by, f"{suffix}_n{int(record_norms)}", bindings)

    def _loop(self, direction, by, suffix, bindings):
        """Compile (once) the ``direction`` loop ``by`` units or rows; ``bindings(by)`` gives the
        step functions it binds."""
        key = (direction, by, suffix)
        if key not in self._loops:
            units, rows = LOOPS[direction]
            if by == "units":
                loop = _compile(units, suffix, parallel=True, **bindings(by))
            elif by == "rows":
                loop = _compile(rows, suffix, **bindings(by))
            else:
                raise ValueError(f"by: expected 'units' or 'rows', got {by!r}")
            if not self._announced and not cached_on_disk(loop):
                print(f"fastlstm: compiling {self.spec.label} {self.dtype.name} kernels, first use only",
                      file=sys.stderr, flush=True)
                self._announced = True
            self._loops[key] = loop
        return self._loops[key]


def cached_on_disk(dispatcher):
    """Whether Numba's on-disk cache holds compiled code of ``dispatcher`` (its index file exists)."""
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    return cache_file is not None and os.path.exists(cache_file._index_path)


_kernels = {}


def kernels_for(cell, dtype):
    """The :class:`CellKernels` of ``cell`` and ``dtype``, built on first use (nothing compiles
    until a loop is asked for)."""
    key = (cell, np.dtype(dtype))
    if key not in _kernels:
        _kernels[key] = CellKernels(cell, dtype)
    return _kernels[key]

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
import weakref

import numpy as np
from numba import typeof

from ...cells.bound import CompiledCell
from . import loops, steps
from .activations import FASTMATH, compiled_activations
from .calls import COMPILED_CALLERS_ONLY, AddressBook, address_of, type_key
from .regions import stamped, type_name
from .tiles import lanes
from .unit_values import vector_tail


def _compile(template, suffix, inline=False, from_python=True, **bindings):
    # the cell math is inlined with its activations: the flags of what it is inlined into apply
    options = dict(inline="always") if inline else dict(fastmath=set(FASTMATH))
    if not from_python:
        options.update(COMPILED_CALLERS_ONLY)
    dispatcher = stamped(template, suffix, options, **bindings)
    CELL_CODE.add(dispatcher)
    return dispatcher


# Every function compiled per cell (its phases and loops; :mod:`.warming` compiles them apart
# from the code every cell shares).
CELL_CODE = weakref.WeakSet()


# The loops' templates: per step by units (a parallel region per phase), by sequences (one
# block of rows, every step; :func:`.loops.rows_block` runs it on several blocks at once), by
# units held (one region per segment, a barrier per phase).
LOOPS = {
    "forward": (loops.forward_loop, loops.forward_rows, loops.forward_units_held),
    "backward": (loops.backward_loop, loops.backward_rows, loops.backward_units_held),
}


class CellKernels(CompiledCell):
    """The compiled loops of one cell and dtype (a :class:`~fastlstm.cells.bound.CompiledCell`)."""

    def __init__(self, cell, dtype):
        super().__init__(cell, dtype, compiled_activations(dtype),
                         lambda function, suffix, math: _compile(function, suffix, inline=True, **math))
        self._loops = {}
        self._phases = {}
        self._codes = AddressBook()
        self._announced = False

    def _copies(self, template, phases, suffix, arrays, **flags):
        """One compiled copy of ``template`` per phase, for the type of ``arrays`` (the
        structure it reads by address, :data:`.steps.ARRAYS`), built once and shared by every
        loop that calls them (through their addresses: :meth:`forward_phase_code`)."""
        arrays_type, tail = typeof(arrays), _vector_tail(arrays)
        key = (template.__name__, suffix, arrays_type, tail)
        if key not in self._phases:
            name = f"{suffix}_vt{int(tail)}_{type_name(arrays_type)}"
            self._phases[key] = [_compile(template, f"{name}_p{phase}", from_python=False, PHASE=phase,
                                          ARRAYS=arrays_type, VECTOR_TAIL=tail, **flags, **self.constants)
                                 for phase in range(phases)]
        return self._phases[key]

    def _variant(self, recurrent_dropout, zoneout, keep_tape=True):
        """The name suffix and the phases' flags of the loops with these regularisers inside;
        ``keep_tape`` False (inference) changes only a one-phase cell's forward."""
        keep = bool(keep_tape) or len(self.spec.forward) > 1
        suffix = f"{self.name}_rd{int(recurrent_dropout)}_zo{int(zoneout)}" + ("" if keep else "_inference")
        return suffix, dict(RECURRENT_DROPOUT=bool(recurrent_dropout), ZONEOUT=bool(zoneout), KEEP_TAPE=keep)

    def forward_loop(self, by="units", recurrent_dropout=False, zoneout=False, keep_tape=True):
        """The compiled forward loop with these regularisers inside it: ``by`` ``"units"``
        (:func:`.loops.forward_loop`), ``"held"`` (:func:`.loops.forward_units_held`) or ``"rows"``
        (:func:`.loops.forward_rows`, one block of rows); ``keep_tape`` False: for inference (a
        one-phase cell then writes no tape planes, :data:`.steps.KEEP_TAPE`). It calls the phases whose addresses its arrays carry
        (:meth:`forward_phase_code`)."""
        suffix, _ = self._variant(recurrent_dropout, zoneout, keep_tape)
        return self._loop("forward", by, suffix, dict(FORWARD_PHASES=len(self.spec.forward)))

    def forward_phase_code(self, arrays, recurrent_dropout=False, zoneout=False, keep_tape=True, key=None):
        """The addresses of the compiled phases of :meth:`forward_loop` (same options), compiled
        for ``arrays`` (:class:`.steps.ForwardArrays`; ``key``: its :func:`.calls.type_key`, if
        known), as its ``phase_code`` (3,) int64 (0: no such phase)."""
        suffix, flags = self._variant(recurrent_dropout, zoneout, keep_tape)

        def find():
            copies = self._copies(steps.forward_phase, len(self.spec.forward), suffix, arrays, **flags)
            self._announce(copies[0])
            code = np.zeros(3, np.int64)
            for phase, copy in enumerate(copies):
                code[phase] = address_of(copy, *(0,) * 10, arrays.work[0], 0)
            return code
        return self._codes.get(("forward", suffix, type_key(arrays) if key is None else key, _vector_tail(arrays)),
                               find)

    def backward_loop(self, by="units", recurrent_dropout=False, zoneout=False, record_norms=False):
        """The compiled backward loop with these regularisers (and the norms' record) inside it,
        ``by`` as :meth:`forward_loop`'s; it calls the phases of :meth:`backward_phase_code`."""
        suffix, _ = self._variant(recurrent_dropout, zoneout)
        return self._loop("backward", by, f"{suffix}_n{int(record_norms)}",
                          dict(BACKWARD_PHASES=len(self.spec.backward), RECORD_NORMS=bool(record_norms)))

    def backward_phase_code(self, arrays, recurrent_dropout=False, zoneout=False, key=None):
        """The addresses of the compiled phases of :meth:`backward_loop` (same options), compiled
        for ``arrays`` (:class:`.steps.BackwardArrays`; ``key`` as :meth:`forward_phase_code`'s):
        (2, 3) int64, its ``pointwise_code`` and ``projection_code``."""
        suffix, flags = self._variant(recurrent_dropout, zoneout)
        phases = len(self.spec.backward)

        def find():
            pointwise = self._copies(steps.backward_pointwise, phases, suffix, arrays, **flags)
            projection = self._copies(steps.backward_projection, phases, suffix, arrays, **flags)
            self._announce(pointwise[0])
            code = np.zeros((2, 3), np.int64)
            gradients = arrays.dstates[0]
            for phase in range(phases):
                code[0, phase] = address_of(pointwise[phase], *(0,) * 6, arrays.work[0], gradients, gradients, 0)
                code[1, phase] = address_of(projection[phase], *(0,) * 6, arrays.work[0], gradients, 0)
            return code
        return self._codes.get(("backward", suffix, type_key(arrays) if key is None else key, _vector_tail(arrays)),
                               find)

    def _loop(self, direction, by, suffix, bindings):
        """Compile (once) the ``direction`` loop ``by`` units or rows, binding ``bindings``."""
        key = (direction, by, suffix)
        if key not in self._loops:
            units, rows, held = LOOPS[direction]
            if by == "units":
                loop = _compile(units, suffix, **bindings)
            elif by == "rows":
                loop = _compile(rows, suffix, from_python=False, **bindings)
            elif by == "held":
                loop = _compile(held, suffix, **bindings)
            else:
                raise ValueError(f"by: expected 'units', 'rows' or 'held', got {by!r}")
            self._announce(loop)
            self._loops[key] = loop
        return self._loops[key]

    def _announce(self, dispatcher):
        """Say once, on stderr, that this cell's kernels compile, if ``dispatcher`` is not cached on disk."""
        if not self._announced and not cached_on_disk(dispatcher):
            print(f"fastlstm: compiling {self.spec.label} {self.dtype.name} kernels, first use only",
                  file=sys.stderr, flush=True)
            self._announced = True


def _vector_tail(arrays):
    """Whether the phases for ``arrays`` run the units past the last whole vector as one
    (:data:`.steps.VECTOR_TAIL`), by the layer's H and its dtype's lanes."""
    return bool(vector_tail(arrays.states.shape[3], lanes(arrays.states.dtype)))


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

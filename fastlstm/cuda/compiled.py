"""The recurrent kernels of one cell and dtype, compiled lazily from the shared templates.

Every function of :mod:`.recurrent` and :mod:`fastlstm.cellmath` is copied with the cell's
options, the dtype's activations (:func:`fastlstm.gatemath.activations_for`, the same
scalar code the CPU compiles) and constants bound as globals (:mod:`fastlstm.rebinding`),
then compiled with ``cuda.jit``: device functions first, so that each later copy sees the
compiled ones it calls.
"""
from dataclasses import dataclass

import numba
import numpy as np
from numba import cuda, types

from .. import cellmath, gatemath
from ..rebinding import rebind
from . import recurrent

_CELLMATH = ("lstm_forward", "lstm_backward", "gru_candidate", "gru_backward", "sigmoid_gradient",
             "rnn_forward", "rnn_backward")
_HELPERS = ("time_of", "carry_state", "clear_gradients", "store_gradient", "incoming_gradient",
            "padded_forward", "mask_at", "zone_at", "zone_out", "zone_split", "record_gradient", "keep_candidate",
            "block_units", "forward_gates", "backward_rows", "lane_dot", "lane_dot_masked", "project_gates",
            "sum_lanes")
_ROUNDS = ("forward_round", "backward_round")
_KERNELS = ("forward_persistent", "forward_step", "backward_persistent", "backward_step", "backward_finish")


@dataclass(frozen=True)
class CellLayout:
    """How a cell uses the shared loops.

    Attributes
    ----------
    gates : int
        Gate blocks of width H in the weights.
    forward_phases, backward_phases : int
        Grid-wide synchronisations per step.
    finish_gates : int
        Gate blocks whose gradients reach h through ``weight_hh`` at the start of a step.
    tape_planes : int
        Saved (B, H) activations per step.
    folded_gates : int
        Gate blocks of ``bias_hh`` added to the input projection before the loop.
    """

    gates: int
    forward_phases: int
    backward_phases: int
    finish_gates: int
    tape_planes: int
    folded_gates: int


def layout_of(cell):
    """The :class:`CellLayout` of a :class:`fastlstm.cells.Cell`."""
    if cell.kind == "lstm":
        return CellLayout(4, 1, 1, 4, 5, 4)
    if cell.kind == "gru" and cell.reset_after:
        return CellLayout(3, 1, 1, 3, 4, 2)
    if cell.kind == "gru":
        return CellLayout(3, 2, 2, 2, 4, 3)
    return CellLayout(1, 1, 1, 1, 0, 1)


class CellKernels:
    """The compiled kernels of one cell and dtype: attributes named as in :mod:`.recurrent`."""

    def __init__(self, cell, dtype):
        self.cell = cell
        self.dtype = np.dtype(dtype)
        self.layout = layout_of(cell)
        self.plans = {}            # the driver's loop plans, by (kernel, batch, hidden, forced loop)
        self.zero_vectors = {}     # by hidden size: (V, H) zeros for cells without element-wise parameters
        suffix = f"{cell.kind}_{int(cell.peephole)}{int(cell.reset_after)}_{cell.nonlinearity}_{self.dtype.name}"
        bindings = dict(
            DTYPE=numba.from_dtype(self.dtype), ONE=self.dtype.type(1), ZERO=self.dtype.type(0),
            PEEPHOLE=cell.peephole, RELU=cell.nonlinearity == "relu", RESET_AFTER=cell.reset_after,
            GATES=self.layout.gates, FORWARD_PHASES=self.layout.forward_phases,
            BACKWARD_PHASES=self.layout.backward_phases, FINISH_GATES=self.layout.finish_gates,
        )
        for name, function in gatemath.activations_for(self.dtype).items():
            bindings[name] = cuda.jit(device=True, cache=True)(function)
        for name in _CELLMATH:
            bindings[name] = _device(getattr(cellmath, name), suffix, bindings)
        for name in _HELPERS:
            bindings[name] = _device(getattr(recurrent, name), suffix, bindings)
        bindings["forward_unit"] = _device(getattr(recurrent, f"{cell.kind}_forward_unit"), suffix, bindings)
        bindings["backward_unit"] = _device(getattr(recurrent, f"{cell.kind}_backward_unit"), suffix, bindings)
        for name in _ROUNDS:
            bindings[name] = _device(getattr(recurrent, name), suffix, bindings)
        for name in _KERNELS:
            setattr(self, name, cuda.jit(cache=True)(rebind(getattr(recurrent, name), suffix, **bindings)))


    def ptx_signatures(self):
        """Every kernel with the one signature the driver launches it with.

        Returns
        -------
        list of (function, numba.core.typing.Signature)
            The kernels' (rebound) Python functions, e.g. for
            ``numba.cuda.compile_ptx(function, signature, cc=(9, 0))``.
        """
        real = numba.from_dtype(self.dtype)
        index = types.int64
        a1, a2, a3, a4 = (types.Array(real, ndim, "C") for ndim in (1, 2, 3, 4))
        lengths = types.Array(types.int64, 1, "C")
        # forward: xproj states tape y lengths weight_hh vectors direction keep; backward: dy states tape dgh
        # dgx carry lengths weight_hhᵀ vectors direction; both then mask zone_h zone_c candidates, and the
        # backward the record of its state gradients
        regularisers = (a2, a3, a3, a3)
        forward = (a3, a4, a4, a3, lengths, a1, a2, index, index) + regularisers
        backward = (a3, a4, a4, a3, a3, a3, lengths, a1, a2, index) + regularisers + (a3,)
        arguments = {
            "forward_persistent": forward + (index, index),
            "forward_step": (index, index) + forward + (index,),
            "backward_persistent": backward + (index, index),
            "backward_step": (index, index) + backward + (index,),
            "backward_finish": (a3, a3, a1, a2, index),
        }
        return [(getattr(self, name).py_func, types.void(*arguments[name])) for name in _KERNELS]


def _device(template, suffix, bindings):
    return cuda.jit(device=True, cache=True)(rebind(template, suffix, **bindings))


_compiled = {}


def kernels_for(cell, dtype):
    """The :class:`CellKernels` of ``cell`` and ``dtype``, built on first use."""
    key = (cell, np.dtype(dtype))
    if key not in _compiled:
        _compiled[key] = CellKernels(cell, dtype)
    return _compiled[key]


fold_bias = cuda.jit(cache=True)(recurrent.fold_bias)

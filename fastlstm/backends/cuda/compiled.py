"""The recurrent kernels of one cell and dtype, compiled lazily from the shared templates.

The cell's math (its module's ``forward``/``backward``, :mod:`fastlstm.cells`) and every
device function of :mod:`.recurrent` are copied with the dtype's activations
(:func:`fastlstm.cells.activations.activations_for`, the same scalar code the CPU compiles), the
dtype's constants, the cell's options and its spec's arities and phase tables bound as
globals (:mod:`fastlstm.rebinding`), and, per loop, the regularisers that run inside it;
then compiled with ``cuda.jit``: device functions first, so that each later copy sees the
compiled ones it calls. Only the loops a call needs are compiled.
"""
import numba
import numpy as np
from numba import cuda, types

from ...cells import activations
from ...cells.bound import CompiledCell
from ...rebinding import rebind
from . import recurrent

# device functions of .recurrent, in an order where each one's callees come before it
_HELPERS = ("time_of", "carry_state", "clear_gradients", "store_gradient", "incoming_gradient", "padded_forward",
            "mask_at", "zone_at", "record_gradient", "block_units", "backward_rows", "lane_dot",
            "lane_dot_masked", "project_gates", "sum_lanes", "forward_unit", "backward_unit", "forward_round",
            "backward_round")
_KERNELS = ("forward_persistent", "forward_step", "backward_persistent", "backward_step", "backward_finish",
            "forward_pointwise", "backward_pointwise")


def _device(template, suffix, bindings):
    return cuda.jit(device=True, cache=True)(rebind(template, suffix, **bindings))


class CellKernels(CompiledCell):
    """The compiled kernels of one cell and dtype (a :class:`~fastlstm.cells.bound.CompiledCell`).

    Attributes
    ----------
    plans : dict, the driver's loop plans, by (kernel, batch, hidden, forced loop)
    """

    def __init__(self, cell, dtype):
        device_activations = {name: cuda.jit(device=True, cache=True)(function)
                              for name, function in activations.activations_for(np.dtype(dtype)).items()}
        super().__init__(cell, dtype, device_activations, _device)
        self.plans = {}
        self._bindings = dict(self.constants, DTYPE=numba.from_dtype(self.dtype))
        self._loops = {}

    def loops(self, recurrent_dropout=False, zoneout=False):
        """The kernels (an object with one attribute per name of ``_KERNELS``) with these
        regularisers inside the loops."""
        key = (bool(recurrent_dropout), bool(zoneout))
        if key not in self._loops:
            suffix = f"{self.name}_rd{int(key[0])}_zo{int(key[1])}"
            bindings = dict(self._bindings, RECURRENT_DROPOUT=key[0], ZONEOUT=key[1])
            for name in _HELPERS:
                bindings[name] = _device(getattr(recurrent, name), suffix, bindings)
            self._loops[key] = _Loops({name: cuda.jit(cache=True)(rebind(getattr(recurrent, name), suffix, **bindings))
                                       for name in _KERNELS})
        return self._loops[key]

    def ptx_signatures(self, recurrent_dropout=False, zoneout=False):
        """Every kernel of :meth:`loops` with the one signature the driver launches it with.

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
        reg = types.NamedTuple((a2, a4, a4), recurrent.InLoop)
        # forward: xproj states tape y lengths weight_hh vectors bias_hh direction keep reg;
        # backward: dy states tape dgh dgx carry lengths weight_hhᵀ vectors direction reg record
        forward = (a3, a4, a4, a3, lengths, a1, a2, a1, index, index, reg)
        backward = (a3, a4, a4, a3, a3, a3, lengths, a1, a2, index, reg, a3)
        arguments = {
            "forward_persistent": forward + (index, index),
            "forward_step": (index, index) + forward + (index,),
            "backward_persistent": backward + (index, index),
            "backward_step": (index, index) + backward + (index,),
            "backward_finish": (a3, a3, a1, a2, index),
            # the GEMM loop's: the step's projection (B, G·H) or (B, H) in place of the weights;
            # forward, the next step's GEMM input h' ⊙ mask (B, H) last
            "forward_pointwise": (index, index, a2) + forward[:5] + forward[6:] + (a2,),
            "backward_pointwise": (index, index, a2) + backward[:7] + backward[8:],
        }
        loops = self.loops(recurrent_dropout, zoneout)
        return [(getattr(loops, name).py_func, types.void(*arguments[name])) for name in _KERNELS]


class _Loops:
    def __init__(self, kernels):
        self.__dict__.update(kernels)


_compiled = {}


def kernels_for(cell, dtype):
    """The :class:`CellKernels` of ``cell`` and ``dtype``, built on first use."""
    key = (cell, np.dtype(dtype))
    if key not in _compiled:
        _compiled[key] = CellKernels(cell, dtype)
    return _compiled[key]


fold_bias = cuda.jit(cache=True)(recurrent.fold_bias)

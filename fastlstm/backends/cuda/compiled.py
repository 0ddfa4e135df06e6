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
        device_activations = activations.activations_for(np.dtype(dtype), cuda.jit(device=True, cache=True))
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

    def argument_types(self, name):
        """The numba types of the arguments the driver launches kernel ``name`` with.

        One signature per kernel (every array C-contiguous), so that each kernel compiles once
        per cell, dtype and regularisers: each direction's arrays and scalars travel as one
        :class:`.recurrent.ForwardDirection` or :class:`.recurrent.BackwardDirection`, then come
        the step, the phase and the launch geometry, where the kernel takes them.

        Parameters
        ----------
        name : str, one of ``_KERNELS``

        Returns
        -------
        tuple of numba types
        """
        real = numba.from_dtype(self.dtype)
        index = types.int64
        a1, a2, a3, a4 = (types.Array(real, ndim, "C") for ndim in (1, 2, 3, 4))
        lengths = types.Array(types.int64, 1, "C")
        reg = _structure(recurrent.InLoop, mask=a2, zone=a4, candidates=a4)
        forward = _structure(recurrent.ForwardDirection, xproj=a3, states=a4, tape=a4, y=a3, lengths=lengths,
                             weights=a1, vectors=a2, bias_hh=a1, projection=a2, masked_state=a2, reg=reg,
                             direction=index, keep=index)
        backward = _structure(recurrent.BackwardDirection, dy=a3, states=a4, tape=a4, dgh=a3, dgx=a3, carry=a3,
                              lengths=lengths, weights=a1, vectors=a2, projection=a2, record=a3, reg=reg,
                              direction=index)
        return {
            "forward_persistent": (forward, index, index),     # units per block, lanes
            "forward_step": (forward, index, index, index),     # t, phase, lanes
            "backward_persistent": (backward, index, index),
            "backward_step": (backward, index, index, index),
            "backward_finish": (backward, index),               # lanes
            "forward_pointwise": (forward, index, index),       # t, phase
            "backward_pointwise": (backward, index, index),
        }[name]

    def ptx_signatures(self, recurrent_dropout=False, zoneout=False):
        """Every kernel of :meth:`loops` with the one signature the driver launches it with
        (:meth:`argument_types`).

        Returns
        -------
        list of (function, numba.core.typing.Signature)
            The kernels' (rebound) Python functions, e.g. for
            ``numba.cuda.compile_ptx(function, signature, cc=(9, 0))``.
        """
        loops = self.loops(recurrent_dropout, zoneout)
        return [(getattr(loops, name).py_func, types.void(*self.argument_types(name))) for name in _KERNELS]


def _structure(cls, **field_types):
    """The numba type of a NamedTuple ``cls`` whose fields have ``field_types``, as
    ``numba.typeof`` gives it for an instance with values of those types."""
    assert set(field_types) == set(cls._fields), (cls.__name__, sorted(set(field_types) ^ set(cls._fields)))
    return types.BaseTuple.from_types(tuple(field_types[name] for name in cls._fields), cls)


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

"""A layer's fixed configuration: cell, sizes, stacking, directions, dtype, backend."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .cells import Cell
from .regularisation import Regularisation
from .validation import check_bool, check_choice, check_positive_int, resolve_dtype

BACKENDS = ("reference", "cpu", "cuda")


@dataclass(frozen=True)
class LayerConfig:
    """Everything about a recurrent layer except its parameter values.

    Attributes
    ----------
    cell : Cell
    input_size, hidden_size, num_layers : int
    bidirectional, batch_first : bool
    dtype : numpy scalar type, ``np.float32`` or ``np.float64``
    backend : {"reference", "cpu", "cuda"}
    regularisation : Regularisation
        Dropout, variational dropout, zoneout and DropConnect rates (all 0 by default).
    bias : bool
        ``False``: the layer has no ``bias_ih``/``bias_hh`` parameters (the cell's biases are 0).
    """

    cell: Cell
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    dtype: type = np.float32
    backend: str = "cpu"
    regularisation: Regularisation = Regularisation()
    bias: bool = True

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.directions * self.hidden_size

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.output_size

    def suffix(self, layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction == 1 else "")

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's public name and shape, layer-major then direction (a new dict)."""
        return dict(_parameter_shapes(self))

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {}
        for layer in range(self.num_layers):
            for direction in range(self.directions):
                cell_shapes = self.cell.parameter_shapes(self.layer_input_size(layer), self.hidden_size)
                for name, shape in cell_shapes.items():
                    if self.bias or not name.startswith("bias_"):
                        shapes[name + self.suffix(layer, direction)] = shape
        return shapes

    def layer_parameters(self, params: dict, layer: int, direction: int) -> dict:
        """One layer-direction's entries of the stack's ``params``, named as in the cell
        (``weight_ih``, …): what a backend's ``forward_layer`` takes per direction."""
        return {name: params[full_name] for name, full_name in _layer_parameter_names(self, layer, direction)}

    def state_shape(self, batch: int) -> tuple[int, int, int]:
        """(num_layers·D, B, H)."""
        return (self.num_layers * self.directions, batch, self.hidden_size)


@functools.lru_cache(maxsize=64)
def _parameter_shapes(config):
    """:meth:`LayerConfig.parameter_shapes`, computed once per config (read-only: copied out)."""
    return config._shapes()


@functools.lru_cache(maxsize=256)
def _layer_parameter_names(config, layer, direction):
    """One layer-direction's parameters as (name in the cell, name in the stack's ``params``) pairs."""
    suffix = config.suffix(layer, direction)
    return tuple((name, name + suffix) for name in config.cell.parameter_shapes(1, 1))


def make_config(cell, input_size, hidden_size, num_layers=1, bidirectional=False,
                batch_first=False, dtype="float32", backend="cpu", regularisation=None, bias=True) -> LayerConfig:
    """Validate constructor arguments and build a :class:`LayerConfig`."""
    return LayerConfig(
        cell=cell,
        input_size=check_positive_int("input_size", input_size),
        hidden_size=check_positive_int("hidden_size", hidden_size),
        num_layers=check_positive_int("num_layers", num_layers),
        bidirectional=check_bool("bidirectional", bidirectional),
        batch_first=check_bool("batch_first", batch_first),
        dtype=resolve_dtype(dtype),
        backend=check_choice("backend", backend, BACKENDS),
        regularisation=regularisation or Regularisation(),
        bias=check_bool("bias", bias),
    )

"""Cell specifications: which recurrent cell, its options, and its parameter layout.

A :class:`Cell` is a small immutable description shared by every backend. It knows the
gate count, how many state tensors the cell carries, and the names and shapes of its
parameters for one layer and one direction (the names without the ``_l{k}`` suffix).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CELL_KINDS = ("lstm", "gru", "rnn")
NONLINEARITIES = ("tanh", "relu")
PEEPHOLE_NAMES = ("weight_ci", "weight_cf", "weight_co")


@dataclass(frozen=True)
class Cell:
    """One recurrent cell with its options.

    Parameters
    ----------
    kind : {"lstm", "gru", "rnn"}
    peephole : bool
        LSTM only: add the peephole vectors ``weight_ci``, ``weight_cf``, ``weight_co``.
    reset_after : bool
        GRU only: ``True`` applies the reset gate after the recurrent product
        (PyTorch, cuDNN), ``False`` before it (Cho et al. 2014).
    nonlinearity : {"tanh", "relu"}
        RNN only: the activation.
    """

    kind: str
    peephole: bool = False
    reset_after: bool = True
    nonlinearity: str = "tanh"

    @property
    def gates(self) -> int:
        """Number of gate blocks of width H in ``weight_ih`` and ``weight_hh``."""
        return {"lstm": 4, "gru": 3, "rnn": 1}[self.kind]

    @property
    def state_count(self) -> int:
        """Number of state tensors: 2 for the LSTM (h, c), 1 otherwise."""
        return 2 if self.kind == "lstm" else 1

    @property
    def vector_names(self) -> tuple[str, ...]:
        """Names of the (H,)-shaped element-wise parameters (the peepholes)."""
        return PEEPHOLE_NAMES if self.kind == "lstm" and self.peephole else ()

    @property
    def label(self) -> str:
        """A short human-readable name, e.g. ``"LSTM+peephole"`` or ``"GRU(reset_after=False)"``."""
        if self.kind == "lstm":
            return "LSTM+peephole" if self.peephole else "LSTM"
        if self.kind == "gru":
            return "GRU" if self.reset_after else "GRU(reset_after=False)"
        return f"RNN({self.nonlinearity})"

    def parameter_shapes(self, input_size: int, hidden_size: int) -> dict[str, tuple[int, ...]]:
        """Names and shapes of one layer-direction's parameters, in a fixed order.

        Returns
        -------
        dict
            ``weight_ih`` (G·H, I), ``weight_hh`` (G·H, H), ``bias_ih`` (G·H,),
            ``bias_hh`` (G·H,), then the peephole vectors (H,) when present.
        """
        gh = self.gates * hidden_size
        shapes = {
            "weight_ih": (gh, input_size),
            "weight_hh": (gh, hidden_size),
            "bias_ih": (gh,),
            "bias_hh": (gh,),
        }
        for name in self.vector_names:
            shapes[name] = (hidden_size,)
        return shapes


def make_cell(kind: str, *, peephole: bool = False, reset_after: bool = True,
              nonlinearity: str = "tanh") -> Cell:
    """Build a :class:`Cell`, rejecting unknown option values with a clear message."""
    if kind not in CELL_KINDS:
        raise ValueError(f"cell kind: expected one of {CELL_KINDS}, got {kind!r}")
    for name, value in (("peephole", peephole), ("reset_after", reset_after)):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name}: expected True or False, got {value!r}")
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity: expected one of {NONLINEARITIES}, got {nonlinearity!r}")
    return Cell(kind, bool(peephole), bool(reset_after), nonlinearity)

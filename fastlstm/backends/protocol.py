"""What every backend provides to the functional core (:mod:`fastlstm.functional`).

A backend runs one layer — every direction — forward and backward over time-major arrays,
with per-direction lists of parameter dicts (names without their ``_l{k}`` suffix) and of
state tuples; ``arrays`` (:mod:`fastlstm.placement`) says where its arrays live. Its tape
owns its format and answers what introspection asks (:meth:`LayerTape.gate_planes`).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Protocol, runtime_checkable

import numpy as np


class InTheLoop(NamedTuple):
    """The regularisers that act inside one direction's time loop.

    Attributes
    ----------
    recurrent_mask : ndarray (B, H) or None
        Recurrent dropout's keep-mask: ``weight_hh`` sees h ⊙ mask at every step.
    zoneout : tuple of (ndarray or None), one per state
        Zoneout's keep-previous indicators: (T, B, H) in natural time (training), a 0-d array
        holding the probability (inference), or None where the state has no zoneout.
    """

    recurrent_mask: Optional[np.ndarray]
    zoneout: tuple

    @property
    def active(self) -> bool:
        return self.recurrent_mask is not None or any(d is not None for d in self.zoneout)


class LayerForward(NamedTuple):
    """``forward_layer``'s result: y (T, B, D·H), the final state per direction, the tape."""

    y: object
    final: list
    tape: object


class LayerBackward(NamedTuple):
    """``backward_layer``'s result: dx (T, B, I), the initial state's gradient per direction,
    the parameters' gradients per direction (dicts keyed like the parameters)."""

    dx: object
    dstate0: list
    grads: list


@runtime_checkable
class LayerTape(Protocol):
    """What one layer's forward keeps for its backward."""

    def gate_planes(self) -> list:
        """The values the cell's spec names as its activations (``CellSpec.activations``).

        Returns
        -------
        list (one per direction) of ndarray (A, T, B, H), float64, on the host
            In natural time and the caller's batch order; NaN past each sequence's end.
        """


@runtime_checkable
class Backend(Protocol):
    """A place where layers run: ``"reference"``, ``"cpu"``, ``"cuda"``.

    A backend may also run a whole stack's inference call (no tape, no lengths, no masks) itself,
    with two methods outside this protocol, which :func:`fastlstm.functional.forward` looks for:
    ``serve_inference(config, params, x, state)``, asked first with the caller's unchecked
    arguments, returning ``(y, final)`` only for arguments that need no conversion (the general
    path then runs otherwise: it raises where they are wrong), else None; and
    ``infer(config, params, given, x, state)`` on validated and converted arguments (``x``
    time-major; ``given``: the caller's ``params``). The cpu backend's prepare such calls once
    (:mod:`.cpu.prepared`).
    """

    name: str
    arrays: object

    def is_device_array(self, value) -> bool:
        """Whether ``value`` is one of this backend's device arrays (results then stay there)."""

    def forward_layer(self, cell, params, x, state, lengths, *, keep_tape, in_the_loop) -> LayerForward:
        """Run one layer, every direction, forward.

        Parameters
        ----------
        cell : fastlstm.cells.Cell
        params : list of dict of arrays, per direction (forward first), C-contiguous, of x's dtype
        x : array (T, B, I), C-contiguous, of the layer's dtype; the tape may keep it
        state : list of tuple of arrays, per direction, each (B, H)
        lengths : ndarray of int64 (B,), or None (every sequence runs T steps)
        keep_tape : bool
            ``False``: inference; nothing is kept for a backward and the tape is ``None``.
        in_the_loop : list of InTheLoop, per direction, or None
        """

    def backward_layer(self, tape, dy, dstate, *, norms) -> LayerBackward:
        """Backpropagate through one layer's forward.

        Parameters
        ----------
        tape : the forward's tape
        dy : array (T, B, D·H); entries past a sequence's end are ignored
        dstate : list of tuple of arrays, per direction, each (B, H), or None
        norms : ndarray (D, T, B) or None
            Receives ‖∂L/∂h_t‖ of every step in natural time (host memory), NaN past each end.
        """

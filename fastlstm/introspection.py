"""Gradient-flow introspection: how gates behave, and how far gradients reach back in time.

Both are opt-in and cost nothing when not asked for:

- ``functional.backward(tape, dy, state_gradient_norms=True)`` (or
  ``layer.backward(dy, state_gradient_norms=True)``, which sets ``layer.state_gradient_norms``)
  also returns ‖∂L/∂h_t‖ for every layer, direction, step and sequence: the norm the
  backward loops see at each step. A plain RNN's shrink geometrically going back from the
  loss; gated cells keep them alive.
- :func:`gate_activations` and :func:`gate_statistics` read the gate values a
  forward kept on its tape (nothing is recomputed): e.g. the LSTM's mean forget gate, and
  the fraction of saturated gates (σ within ``saturation`` of 0 or 1, tanh within it of ±1),
  where gradients through the gate vanish.
"""
import warnings

import numpy as np

from .functional import Tape


def gate_activations(tape, layer=-1):
    """The gate values one layer kept on the tape of a forward (with ``tape=True``).

    Parameters
    ----------
    tape : fastlstm.functional.Tape, or a layer object (its last forward's tape)
    layer : int, default -1 (the last layer)

    Returns
    -------
    list (one per direction) of dict: gate name -> ndarray (T, B, H), float64
        In natural time and the caller's batch order; NaN past each sequence's end.
        LSTM: input, forget, cell (g), output; GRU: reset, update, candidate (n); RNN:
        hidden (its new state, before zoneout).
    """
    tape = _tape_of(tape)
    config = tape.config
    if not -config.num_layers <= layer < config.num_layers:
        raise IndexError(f"layer: expected an index into {config.num_layers} layers, got {layer}")
    names = [activation.name for activation in config.cell.spec.activations]
    planes = tape.layer_tapes[layer].gate_planes()
    return [{name: plane for name, plane in zip(names, direction)} for direction in planes]


def gate_statistics(tape, saturation=0.05):
    """Summary statistics of every layer's gates on one forward.

    Parameters
    ----------
    tape : fastlstm.functional.Tape, or a layer object (its last forward's tape)
    saturation : float in (0, 0.5)
        A sigmoid gate is saturated below ``saturation`` or above 1 − ``saturation``; a tanh
        one beyond ±(1 − ``saturation``); a relu one at 0.

    Returns
    -------
    list (per layer) of list (per direction) of dict: gate name -> dict with
        ``mean``, ``std``, ``saturated`` (fraction of valid entries) and ``mean_per_step``
        ((T,) over sequences and units; NaN where every sequence has ended).
    """
    if not 0 < saturation < 0.5:
        raise ValueError(f"saturation: expected a number in (0, 0.5), got {saturation!r}")
    tape = _tape_of(tape)
    saturates = {a.name: a.saturates for a in tape.config.cell.spec.activations}
    result = []
    for layer in range(tape.config.num_layers):
        per_direction = []
        for gates in gate_activations(tape, layer):
            stats = {}
            for name, values in gates.items():
                valid = values[~np.isnan(values)]
                if saturates[name] == "sigmoid":
                    saturated = (valid < saturation) | (valid > 1 - saturation)
                elif saturates[name] == "relu":
                    saturated = valid == 0
                else:
                    saturated = np.abs(valid) > 1 - saturation
                with warnings.catch_warnings():   # a step every sequence has passed: its mean is NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    stats[name] = dict(mean=float(valid.mean()) if valid.size else np.nan,
                                       std=float(valid.std()) if valid.size else np.nan,
                                       saturated=float(saturated.mean()) if valid.size else np.nan,
                                       mean_per_step=np.nanmean(values.reshape(values.shape[0], -1), axis=1))
            per_direction.append(stats)
        result.append(per_direction)
    return result


def _tape_of(value):
    tape = getattr(value, "tape", value) if not isinstance(value, Tape) else value
    if not isinstance(tape, Tape):
        raise TypeError("tape: expected the Tape of a forward with tape=True (or a layer after one), "
                        f"got {type(tape).__name__}")
    return tape

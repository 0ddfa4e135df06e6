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

from .backends import get_backend

GATE_NAMES = {"lstm": ("input", "forget", "cell", "output"), "gru": ("reset", "update", "candidate"),
              "rnn": ("hidden",)}
# which gates are sigmoids (saturate at 0 and 1); the others are tanh (or relu: "saturated" = 0)
SIGMOID_GATES = {"input", "forget", "output", "reset", "update"}


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
    names = GATE_NAMES[config.cell.kind]
    planes = get_backend(config.backend).gate_activations(tape.layer_tapes[layer])
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
    relu = tape.config.cell.kind == "rnn" and tape.config.cell.nonlinearity == "relu"
    result = []
    for layer in range(tape.config.num_layers):
        per_direction = []
        for gates in gate_activations(tape, layer):
            stats = {}
            for name, values in gates.items():
                valid = values[~np.isnan(values)]
                if name in SIGMOID_GATES:
                    saturated = (valid < saturation) | (valid > 1 - saturation)
                elif relu:
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
    from .functional import Tape

    tape = getattr(value, "tape", value) if not isinstance(value, Tape) else value
    if not isinstance(tape, Tape):
        raise TypeError("tape: expected the Tape of a forward with tape=True (or a layer after one), "
                        f"got {type(tape).__name__}")
    return tape


# ---------------------------------------------------------------- each backend's tape

def _natural_time(values, lengths, direction):
    """(T, B, H) in a direction's own time -> natural time (float64), NaN past each sequence's end."""
    from .cpu.driver import _reverse_index

    steps, batch = values.shape[:2]
    out = (values if direction == 0 else values[_reverse_index(steps, batch, lengths)]).astype(np.float64)
    out[np.arange(steps)[:, None] >= np.asarray(lengths)[None, :]] = np.nan
    return out


def reference_gate_activations(layer_tape):
    """The reference backend's layer tape -> per direction, (K, T, B, H) natural time."""
    keys = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": ("h_new",)}
    steps, batch, hidden = layer_tape["steps"], layer_tape["batch"], layer_tape["hidden"]
    out = []
    for direction, direction_tapes in enumerate(layer_tape["tapes"]):
        planes = None
        for rows, n, tape_seq in direction_tapes:
            names = keys[tape_seq["cell"].kind]
            if planes is None:
                planes = np.full((len(names), steps, batch, hidden), np.nan)
            if n == 0:
                continue
            for k, name in enumerate(names):
                seq = np.array([saved[name] for saved in tape_seq["steps"]]).reshape(n, -1, hidden)
                planes[k, :n, rows] = seq if direction == 0 else seq[::-1]
        out.append(planes)
    return out


def cpu_gate_activations(layer_tape):
    """The cpu backend's layer tape -> per direction, (K, T, B, H) natural time.

    Its arrays are in the direction's own time and the batch sorted by length."""
    from .cpu.driver import _unsort

    cell, order, active = layer_tape.kernels.cell, layer_tape.order, layer_tape.active
    batch = layer_tape.x.shape[1]
    sorted_lengths = (np.arange(batch)[None, :] < active[:, None]).sum(axis=0)
    out = []
    for direction, saved in enumerate(layer_tape.saved):
        if cell.kind == "rnn":
            candidates = layer_tape.candidates[direction] if layer_tape.candidates else None
            planes = (layer_tape.states[direction] if candidates is None else candidates)[0:1, 1:]
        else:
            planes = saved[:, :len(GATE_NAMES[cell.kind])].transpose(1, 0, 2, 3)
        out.append(np.stack([_unsort(_natural_time(p, sorted_lengths, direction), order, axis=1) for p in planes]))
    return out


def cuda_gate_activations(layer_tape):
    """The cuda backend's layer tape -> per direction, (K, T, B, H) natural time (copied to the host)."""
    cell = layer_tape.kernels.cell
    lengths = layer_tape.lengths.copy_to_host()
    out = []
    for direction, saved in enumerate(layer_tape.tapes):
        if cell.kind == "rnn":
            candidates = layer_tape.regularisers[direction][3]
            planes = candidates.copy_to_host()[None] if candidates.size else \
                layer_tape.states[direction].copy_to_host()[0:1, 1:]
        else:
            planes = saved.copy_to_host()[:len(GATE_NAMES[cell.kind])]
        out.append(np.stack([_natural_time(p, lengths, direction) for p in planes]))
    return out

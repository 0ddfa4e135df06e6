"""The functional core: stateless forward and backward over a whole layer stack.

The classes in :mod:`fastlstm.layers` are a thin shell over these two functions. Code that
needs several forwards alive at once keeps the tapes itself::

    y, state, tape = functional.forward(config, params, x)
    dx, dstate0, grads = functional.backward(tape, dy)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends import get_backend
from .config import LayerConfig
from .validation import as_float_array, check_ndim, check_shape


@dataclass
class Tape:
    """Everything :func:`backward` needs from one :func:`forward`.

    Attributes
    ----------
    config : LayerConfig
    params : dict of ndarray, the converted parameters the forward ran with
    steps, batch : int
    layer_tapes : list of list
        The backend's tape for each layer (outer) and direction (inner).
    """

    config: LayerConfig
    params: dict
    steps: int
    batch: int
    layer_tapes: list


def _check_params(config, params):
    expected = config.parameter_shapes()
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
    missing = sorted(set(expected) - set(params))
    unknown = sorted(set(params) - set(expected))
    if missing or unknown:
        raise ValueError(f"params: expected the names {sorted(expected)}, "
                         f"missing {missing}, unexpected {unknown}")
    converted = {}
    for name, shape in expected.items():
        converted[name] = as_float_array(f"params[{name!r}]", params[name], config.dtype)
        check_shape(f"params[{name!r}]", converted[name], shape, "")
    return converted


def _time_major(config, name, value, feature_size, copy):
    array = as_float_array(name, value, config.dtype, copy=copy)
    layout = "(B, T, features)" if config.batch_first else "(T, B, features)"
    check_ndim(name, array, 3, layout)
    if array.shape[2] != feature_size:
        raise ValueError(f"{name}: expected {feature_size} features in the last axis of {layout}, "
                         f"got shape {array.shape}")
    if config.batch_first:
        array = np.ascontiguousarray(array.transpose(1, 0, 2))
    if array.shape[1] < 1:
        raise ValueError(f"{name}: expected at least one sequence in the batch, got shape {array.shape}")
    return array


def _batch_major(config, array):
    return np.ascontiguousarray(array.transpose(1, 0, 2)) if config.batch_first else array


def _state_tensors(config, name, state, batch):
    """Return the state as a tuple of (L·D, B, H) arrays: (h,) or, for the LSTM, (h, c)."""
    shape = config.state_shape(batch)
    meaning = "(num_layers*directions, B, H)"
    if config.cell.kind == "lstm":
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name}: expected a pair (h, c) of arrays of shape {shape}, "
                            f"got {type(state).__name__}")
        parts = [(f"{name}[0] (h)", state[0]), (f"{name}[1] (c)", state[1])]
    else:
        if isinstance(state, (tuple, list)):
            raise TypeError(f"{name}: expected one array of shape {shape}, got a {type(state).__name__}")
        parts = [(name, state)]
    tensors = []
    for part_name, value in parts:
        array = as_float_array(part_name, value, config.dtype)
        check_shape(part_name, array, shape, meaning)
        tensors.append(array)
    return tuple(tensors)


def _public_state(config, tensors):
    return tensors if config.cell.kind == "lstm" else tensors[0]


def _layer_params(config, params, layer, direction):
    suffix = config.suffix(layer, direction)
    return {name: params[name + suffix]
            for name in config.cell.parameter_shapes(1, 1)}


def forward(config: LayerConfig, params, x, state=None, lengths=None):
    """Run the layer stack forward.

    Parameters
    ----------
    config : LayerConfig
    params : dict of ndarray
        Every name of ``config.parameter_shapes()`` with that shape.
    x : array_like, shape (T, B, I), or (B, T, I) with ``batch_first``
    state : array_like or pair of array_like, optional
        Initial state, each (num_layers·D, B, H): ``(h0, c0)`` for the LSTM, ``h0`` otherwise.
        ``None`` means zeros.
    lengths : None
        Variable lengths are not supported yet; must be ``None``.

    Returns
    -------
    y : ndarray, shape (T, B, D·H), or (B, T, D·H) with ``batch_first``
    final_state : ndarray or pair of ndarray, each (num_layers·D, B, H)
    tape : Tape
    """
    backend = get_backend(config.backend)
    if lengths is not None:
        raise NotImplementedError("lengths: variable-length batches are not supported yet; pass None")
    params = _check_params(config, params)
    x = _time_major(config, "x", x, config.input_size, copy=True)
    steps, batch = x.shape[0], x.shape[1]
    if state is None:
        state = tuple(np.zeros(config.state_shape(batch), config.dtype)
                      for _ in range(config.cell.state_count))
    else:
        state = _state_tensors(config, "state", state, batch)

    final = tuple(np.empty(config.state_shape(batch), config.dtype) for _ in state)
    layer_input, layer_tapes = x, []
    for layer in range(config.num_layers):
        outputs, tapes = [], []
        for direction in range(config.directions):
            index = layer * config.directions + direction
            x_dir = layer_input if direction == 0 else np.ascontiguousarray(layer_input[::-1])
            y_dir, final_dir, tape_dir = backend.forward(
                config.cell, _layer_params(config, params, layer, direction),
                x_dir, tuple(s[index] for s in state))
            outputs.append(y_dir if direction == 0 else y_dir[::-1])
            tapes.append(tape_dir)
            for k, s in enumerate(final_dir):
                final[k][index] = s
        layer_input = np.ascontiguousarray(np.concatenate(outputs, axis=2), dtype=config.dtype)
        layer_tapes.append(tapes)
    y = _batch_major(config, layer_input)
    return y, _public_state(config, final), Tape(config, params, steps, batch, layer_tapes)


def backward(tape: Tape, dy, dstate=None):
    """Backpropagate through the forward that produced ``tape``.

    Parameters
    ----------
    tape : Tape
    dy : array_like, the shape of that forward's ``y``
        Gradient of the loss with respect to ``y``.
    dstate : array_like or pair of array_like, optional
        Gradient with respect to the final state, shaped like it; ``None`` means zeros.

    Returns
    -------
    dx : ndarray, the shape of ``x``
    dstate0 : ndarray or pair of ndarray
        Gradient with respect to the initial state.
    grads : dict of ndarray
        Gradient of every parameter, keyed like ``params``.
    """
    config = tape.config
    backend = get_backend(config.backend)
    expected = (tape.steps, tape.batch, config.output_size)
    if config.batch_first:
        expected = (tape.batch, tape.steps, config.output_size)
    dy = as_float_array("dy", dy, config.dtype)
    check_shape("dy", dy, expected, "(the shape of the forward's y)")
    if config.batch_first:
        dy = np.ascontiguousarray(dy.transpose(1, 0, 2))
    dfinal = None if dstate is None else _state_tensors(config, "dstate", dstate, tape.batch)

    hidden = config.hidden_size
    dinitial = tuple(np.empty(config.state_shape(tape.batch), config.dtype)
                     for _ in range(config.cell.state_count))
    grads = {}
    d_output = dy
    for layer in reversed(range(config.num_layers)):
        d_input = None
        for direction in range(config.directions):
            index = layer * config.directions + direction
            dy_dir = d_output[:, :, direction * hidden:(direction + 1) * hidden]
            if direction == 1:
                dy_dir = dy_dir[::-1]
            dstate_dir = None if dfinal is None else tuple(d[index] for d in dfinal)
            dx_dir, dstate0_dir, grads_dir = backend.backward(
                tape.layer_tapes[layer][direction], np.ascontiguousarray(dy_dir), dstate_dir)
            if direction == 1:
                dx_dir = dx_dir[::-1]
            d_input = dx_dir if d_input is None else d_input + dx_dir
            for k, d in enumerate(dstate0_dir):
                dinitial[k][index] = d
            suffix = config.suffix(layer, direction)
            for name, value in grads_dir.items():
                grads[name + suffix] = np.asarray(value, dtype=config.dtype)
        d_output = np.ascontiguousarray(d_input, dtype=config.dtype)
    grads = {name: grads[name] for name in config.parameter_shapes()}
    return _batch_major(config, d_output), _public_state(config, dinitial), grads

"""The functional core: stateless forward and backward over a whole layer stack.

The classes in :mod:`fastlstm.layers` are a thin shell over these two functions. Code that
needs several forwards alive at once keeps the tapes itself::

    y, state, tape = functional.forward(config, params, x)
    dx, dstate0, grads, _ = functional.backward(tape, dy)
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from .backends import InTheLoop, get_backend
from .config import LayerConfig
from .regularisation import Masks, draw_masks, needs_masks
from .validation import check_bool, check_generator, check_names, check_shape


@dataclass
class Tape:
    """Everything :func:`backward` needs from one :func:`forward`.

    Attributes
    ----------
    config : LayerConfig
    params : dict of ndarray, the converted parameters the forward ran with
    steps, batch : int
    layer_tapes : list
        The backend's tape for each layer.
    masks : fastlstm.regularisation.Masks or None
        The regularisers' masks this forward used; pass them as ``masks=`` to replay it.
    unbatched : bool
        The forward's ``x`` was one unbatched (T, I) sequence (``batch`` is then 1).
    """

    config: LayerConfig
    params: dict
    steps: int
    batch: int
    layer_tapes: list
    masks: Masks = None
    unbatched: bool = False


class Gradients(NamedTuple):
    """What :func:`backward` returns.

    Attributes
    ----------
    dx : ndarray, the shape of the forward's ``x``; zero past each sequence's end
    dstate : ndarray or pair of ndarray, the gradient with respect to the initial state
    grads : dict of ndarray, the gradient of every parameter, keyed like ``params``
    norms : ndarray (num_layers, D, T, B) float64, or None
        ‖∂L/∂h_t‖ when ``state_gradient_norms=True`` was asked for (:mod:`fastlstm.introspection`).
    """

    dx: object
    dstate: object
    grads: dict
    norms: Optional[np.ndarray] = None


def _check_params(config, arrays, params):
    expected = config.parameter_shapes()
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
    check_names("params", params, expected)
    converted = {}
    for name, shape in expected.items():
        converted[name] = arrays.convert(_parameter_label(name), params[name], config.dtype)
        check_shape(_parameter_label(name), converted[name], shape, "")
    if not config.bias:          # the kernels add biases; a layer without them adds zeros
        for layer in range(config.num_layers):
            for direction in range(config.directions):
                suffix = config.suffix(layer, direction)
                width = config.cell.gates * config.hidden_size
                for name in ("bias_ih", "bias_hh"):
                    converted[name + suffix] = arrays.zeros((width,), config.dtype)
    return converted


@functools.lru_cache(maxsize=1024)
def _parameter_label(name):
    """How errors name the parameter ``name``: params['name']."""
    return f"params[{name!r}]"


def _state_tensors(config, arrays, name, state, batch, copy=False):
    """Return the state as a tuple of (L·D, B, H) arrays: (h,) or, for the LSTM, (h, c); with
    ``copy``, new arrays (a tape keeps the initial state: never the caller's)."""
    shape = config.state_shape(batch)
    meaning = "(num_layers*directions, B, H)"
    names = config.cell.spec.states
    if len(names) > 1:
        if not isinstance(state, (tuple, list)) or len(state) != len(names):
            raise TypeError(f"{name}: expected a {'pair' if len(names) == 2 else 'tuple'} ({', '.join(names)}) "
                            f"of arrays of shape {shape}, got {type(state).__name__}")
        parts = [(f"{name}[{k}] ({n})", state[k]) for k, n in enumerate(names)]
    else:
        if isinstance(state, (tuple, list)):
            raise TypeError(f"{name}: expected one array of shape {shape}, got a {type(state).__name__}")
        parts = [(name, state)]
    tensors = []
    for part_name, value in parts:
        array = (arrays.copy if copy else arrays.convert)(part_name, value, config.dtype)
        check_shape(part_name, array, shape, meaning)
        tensors.append(array)
    return tuple(tensors)


def _public_state(config, tensors):
    return tensors if len(tensors) > 1 else tensors[0]


def _is_unbatched(value):
    """Whether a sequence argument is 2-d: one unbatched (T, features) sequence, as in PyTorch."""
    shape = getattr(value, "shape", None)
    return len(np.shape(value) if shape is None else shape) == 2


def _batched_sequence(config, name, value, features):
    """An unbatched (T, features) sequence as a batch of one: (T, 1, features), or (1, T, features)
    with ``batch_first`` (a view of ``value``; never modified)."""
    if not hasattr(value, "reshape"):
        value = np.asarray(value)
    steps, given = value.shape
    if given != features:
        raise ValueError(f"{name}: expected {features} features in the last axis of an unbatched "
                         f"(T, features) sequence, got shape {tuple(value.shape)}")
    return value.reshape((1, steps, features) if config.batch_first else (steps, 1, features))


def _batched_state(config, name, state):
    """An unbatched state, each part (num_layers·D, H), as a batch of one: (num_layers·D, 1, H)."""
    if state is None:
        return None
    names = config.cell.spec.states
    parts = list(state) if len(names) > 1 and isinstance(state, (tuple, list)) else None
    expected = (config.num_layers * config.directions, config.hidden_size)
    reshaped = []
    for k, part in enumerate(parts if parts is not None else [state]):
        part_name = f"{name}[{k}] ({names[k]})" if parts is not None and k < len(names) else name
        if not hasattr(part, "reshape"):
            part = np.asarray(part)
        if tuple(part.shape) != expected:
            raise ValueError(f"{part_name}: expected shape {expected}, (num_layers*directions, H) for an "
                             f"unbatched x of shape (T, I), got {tuple(part.shape)}")
        reshaped.append(part.reshape(expected[0], 1, expected[1]))
    return tuple(reshaped) if parts is not None else reshaped[0]


def _unbatched(tensors, *shape):
    """Results of a batch of one, each reshaped to ``shape`` (dropping the batch axis)."""
    return tuple(t.reshape(shape) for t in tensors)


def _check_lengths(arrays, lengths, steps, batch):
    if lengths is None:
        return None
    array = arrays.host(lengths)
    if array.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got an array of dtype {array.dtype}")
    if array.shape != (batch,):
        raise ValueError(f"lengths: expected shape ({batch},), one length per sequence, got {array.shape}")
    if batch and (array.min() < 0 or array.max() > steps):
        raise ValueError(f"lengths: expected values in [0, T={steps}], got values in "
                         f"[{array.min()}, {array.max()}]")
    return array.astype(np.int64)


def _per_direction(config, tensors, layer):
    """The state tensors (each (L·D, B, H)) of one layer, as a list over its directions."""
    return [tuple(s[layer * config.directions + d] for s in tensors) for d in range(config.directions)]


def _times(arrays, value, mask):
    """value ⊙ mask, or value when there is no mask (a new array: inputs are never modified)."""
    return value if mask is None else arrays.times(value, mask)


def _forward_layers(config, backend, params, x, state, lengths, keep_tape, training, rng, masks):
    """Run the stack layer by layer on validated arguments (:func:`forward`'s general path).

    Returns
    -------
    y : (T, B, D·H), time-major
    final : tuple of arrays, each (num_layers·D, B, H)
    masks : Masks or None, the masks the call ran with
    layer_tapes : list, per layer, of the backend's tape (None without ``keep_tape``)
    """
    arrays = backend.arrays
    steps, batch = x.shape[0], x.shape[1]
    if state is None:
        state = tuple(arrays.zeros(config.state_shape(batch), config.dtype)
                      for _ in range(config.cell.state_count))
    else:
        state = _state_tensors(config, arrays, "state", state, batch, copy=True)
    lengths = _check_lengths(arrays, lengths, steps, batch)
    if lengths is not None:
        arrays.clear_padding(x, lengths)       # what padding holds never reaches a result
    if masks is None:
        needs_rng = training and config.regularisation and rng is None   # a new generator costs ~10 µs
        masks = draw_masks(config, steps, batch, training, np.random.default_rng() if needs_rng else rng)
    elif not isinstance(masks, Masks):
        raise TypeError(f"masks: expected the Masks of a tape (tape.masks) or None, got {type(masks).__name__}")
    if masks is not None:
        masks = masks.as_dtype(config.dtype)

    final = tuple(arrays.empty(config.state_shape(batch), config.dtype) for _ in state)
    layer_input, layer_tapes = x, []
    for layer in range(config.num_layers):
        layer_params = [config.layer_parameters(params, layer, d) for d in range(config.directions)]
        in_the_loop = None
        if masks is not None:
            for d, weight_mask in enumerate(masks.weights[layer]):
                if weight_mask is not None:
                    layer_params[d] = dict(layer_params[d],
                                          weight_hh=arrays.times(layer_params[d]["weight_hh"], weight_mask))
            layer_input = _times(arrays, layer_input, masks.inputs[layer])
            in_the_loop = [InTheLoop(mask, zoneout[:config.cell.state_count]) for mask, zoneout
                           in zip(masks.recurrent[layer], masks.zoneout[layer])]
            if not any(d.active for d in in_the_loop):
                in_the_loop = None
        y, layer_final, layer_tape = backend.forward_layer(
            config.cell, layer_params, layer_input, _per_direction(config, state, layer), lengths,
            keep_tape=keep_tape, in_the_loop=in_the_loop)
        for direction, direction_final in enumerate(layer_final):
            for k, s in enumerate(direction_final):
                arrays.assign(final[k], layer * config.directions + direction, s)
        layer_input = arrays.as_dtype(y, config.dtype)
        if masks is not None:
            layer_input = _times(arrays, layer_input, masks.outputs[layer])
        layer_tapes.append(layer_tape)
    return layer_input, final, masks, layer_tapes


def forward(config: LayerConfig, params, x, state=None, lengths=None, *, tape=True, training=False, rng=None,
            masks=None):
    """Run the layer stack forward.

    Parameters
    ----------
    config : LayerConfig
    params : dict of ndarray
        Every name of ``config.parameter_shapes()`` with that shape.
    x : array_like, shape (T, B, I), or (B, T, I) with ``batch_first``, or (T, I)
        (T, I) is one unbatched sequence, as in PyTorch: ``y`` is then (T, D·H) and every state
        (num_layers·D, H).
    state : array_like or pair of array_like, optional
        Initial state, each (num_layers·D, B, H): ``(h0, c0)`` for the LSTM, ``h0`` otherwise.
        ``None`` means zeros.
    lengths : array_like of int, shape (B,), optional
        Each sequence's number of valid steps, in [0, T], in any order. Outputs past a
        sequence's end are 0; its final state is the one after its last valid step; the
        reverse direction starts at its last valid step. ``None``: every sequence has T.
    tape : bool, default True
        ``False`` runs inference: nothing is kept for :func:`backward` (less memory, and
        the CPU kernels skip writing the saved activations), and the returned tape is ``None``.
    training : bool, default False
        Apply the config's regularisers with fresh masks (:mod:`fastlstm.regularisation`);
        ``False``: no dropout, zoneout at its expectation.
    rng : numpy.random.Generator, optional
        Where the masks come from in training (a new unseeded generator if ``None``).
    masks : fastlstm.regularisation.Masks, optional
        Masks to use instead of drawing them (``tape.masks`` of an earlier forward).

    Returns
    -------
    y : ndarray, shape (T, B, D·H), or (B, T, D·H) with ``batch_first``
    final_state : ndarray or pair of ndarray, each (num_layers·D, B, H)
    tape : Tape, or None when ``tape=False``

    With ``backend="cuda"``, results are device arrays when ``x`` is one (an object with
    ``__cuda_array_interface__``) and NumPy arrays otherwise.
    """
    if not isinstance(config, LayerConfig):
        raise TypeError(f"config: expected a LayerConfig (fastlstm.config.make_config, or a layer's .config), "
                        f"got {type(config).__name__}")
    keep_tape = check_bool("tape", tape)
    training = check_bool("training", training)
    rng = check_generator("rng", rng)
    backend = get_backend(config.backend)
    # a whole-stack inference call, where the backend prepares those (its cpu does)
    infer = (getattr(backend, "infer", None) if not keep_tape and lengths is None and masks is None
             and not needs_masks(config, training) else None)
    if infer is not None:
        served = backend.serve_inference(config, params, x, state)
        if served is not None:
            return served[0], _public_state(config, served[1]), None
    arrays = backend.arrays
    on_device = backend.is_device_array(x)
    given = params
    params = _check_params(config, arrays, params)
    unbatched = _is_unbatched(x)
    if unbatched:
        if lengths is not None:
            raise ValueError("lengths: an unbatched x of shape (T, I) is one whole sequence; expected "
                             f"lengths=None, got {lengths!r}")
        x = _batched_sequence(config, "x", x, config.input_size)
        state = _batched_state(config, "state", state)
    # the tape keeps x, and lengths clear its padding: both need fastlstm's own copy
    time_major = arrays.time_major_copy if keep_tape or lengths is not None else arrays.time_major_input
    x = time_major("x", x, config.dtype, config.batch_first, config.input_size)
    steps, batch = x.shape[0], x.shape[1]
    if infer is not None:
        state = None if state is None else _state_tensors(config, arrays, "state", state, batch)
        layer_input, final = infer(config, params, given, x, state)
    else:
        layer_input, final, masks, layer_tapes = _forward_layers(config, backend, params, x, state, lengths,
                                                                 keep_tape, training, rng, masks)
    y = arrays.time_major(layer_input) if config.batch_first else layer_input
    y, final = arrays.result(y, on_device), tuple(arrays.result(s, on_device) for s in final)
    if unbatched:
        y, = _unbatched([y], steps, config.output_size)
        final = _unbatched(final, config.num_layers * config.directions, config.hidden_size)
    if not keep_tape:
        return y, _public_state(config, final), None
    return y, _public_state(config, final), Tape(config, params, steps, batch, layer_tapes, masks, unbatched)


def backward(tape: Tape, dy, dstate=None, *, state_gradient_norms=False):
    """Backpropagate through the forward that produced ``tape``.

    Parameters
    ----------
    tape : Tape
    dy : array_like, the shape of that forward's ``y``
        Gradient of the loss with respect to ``y``; entries past a sequence's end are ignored.
    dstate : array_like or pair of array_like, optional
        Gradient with respect to the final state, shaped like it; ``None`` means zeros.
    state_gradient_norms : bool, default False
        Also return ‖∂L/∂h_t‖ for every layer, direction, step and sequence (gradient-flow
        introspection, :mod:`fastlstm.introspection`).

    Returns
    -------
    Gradients
        ``(dx, dstate, grads, norms)``: dx the shape of ``x``, zero past each sequence's end;
        the gradient with respect to the initial state; every parameter's gradient, keyed like
        ``params``; and, with ``state_gradient_norms``, ``norms`` (num_layers, D, T, B) float64:
        the Euclidean norm over the hidden units of the gradient of the loss with respect to
        each layer-direction's output state h_t (through every later step, before zoneout's
        split), in natural time, NaN past each sequence's end (``None`` otherwise).

    With ``backend="cuda"``, results are device arrays when ``dy`` is one and NumPy arrays
    otherwise.
    """
    if not isinstance(tape, Tape):
        raise TypeError(f"tape: expected the Tape of a forward run with tape=True, got {type(tape).__name__}")
    state_gradient_norms = check_bool("state_gradient_norms", state_gradient_norms)
    config = tape.config
    backend = get_backend(config.backend)
    arrays = backend.arrays
    on_device = backend.is_device_array(dy)
    expected = (tape.steps, tape.batch, config.output_size)
    if config.batch_first:
        expected = (tape.batch, tape.steps, config.output_size)
    if tape.unbatched:
        expected = (tape.steps, config.output_size)
    dy = arrays.convert("dy", dy, config.dtype)
    check_shape("dy", dy, expected, "(the shape of the forward's y)")
    if tape.unbatched:
        dy = _batched_sequence(config, "dy", dy, config.output_size)
        dstate = _batched_state(config, "dstate", dstate)
    if config.batch_first:
        dy = arrays.time_major(dy)
    dfinal = None if dstate is None else _state_tensors(config, arrays, "dstate", dstate, tape.batch)

    dinitial = tuple(arrays.empty(config.state_shape(tape.batch), config.dtype)
                     for _ in range(config.cell.state_count))
    grads = {}
    d_output = dy
    masks = tape.masks
    norms = np.full((config.num_layers, config.directions, tape.steps, tape.batch), np.nan) \
        if state_gradient_norms else None
    for layer in reversed(range(config.num_layers)):
        dstate_layer = None if dfinal is None else _per_direction(config, dfinal, layer)
        if masks is not None:
            d_output = _times(arrays, d_output, masks.outputs[layer])
        d_input, layer_dstate0, layer_grads = backend.backward_layer(
            tape.layer_tapes[layer], d_output, dstate_layer, norms=None if norms is None else norms[layer])
        layer_grads = [dict(g) for g in layer_grads]
        if masks is not None:
            d_input = _times(arrays, d_input, masks.inputs[layer])
            for direction, weight_mask in enumerate(masks.weights[layer]):
                if weight_mask is not None:
                    layer_grads[direction]["weight_hh"] = arrays.times(layer_grads[direction]["weight_hh"],
                                                                       weight_mask)
        for direction in range(config.directions):
            for k, d in enumerate(layer_dstate0[direction]):
                arrays.assign(dinitial[k], layer * config.directions + direction, d)
            suffix = config.suffix(layer, direction)
            for name, value in layer_grads[direction].items():
                grads[name + suffix] = arrays.result(arrays.as_dtype(value, config.dtype), on_device)
        d_output = arrays.as_dtype(d_input, config.dtype)
    grads = {name: grads[name] for name in config.parameter_shapes()}
    dx = arrays.time_major(d_output) if config.batch_first else d_output
    dinitial = tuple(arrays.result(d, on_device) for d in dinitial)
    dx = arrays.result(dx, on_device)
    if tape.unbatched:
        dx, = _unbatched([dx], tape.steps, config.input_size)
        dinitial = _unbatched(dinitial, config.num_layers * config.directions, config.hidden_size)
    return Gradients(dx, _public_state(config, dinitial), grads, norms)

"""fastlstm layers from Keras 3's ``LSTM``, ``GRU``, ``SimpleRNN`` and ``Bidirectional``.

Keras stores one layer-direction as ``kernel`` (I, G·H), ``recurrent_kernel`` (H, G·H) and
``bias`` (G·H,) — (2, G·H) for ``GRU(reset_after=True)``: row 0 the input bias, row 1 the
recurrent bias — with the gates side by side along the columns, LSTM i, f, c, o (fastlstm's
order) and GRU z, r, h (fastlstm: r, z, n). :func:`from_keras` transposes and restacks them
into fastlstm's ``weight_ih_l0`` (G·H, I), ``weight_hh_l0`` (G·H, H), ``bias_ih_l0``,
``bias_hh_l0`` (G·H,). A single Keras bias (LSTM, SimpleRNN, ``GRU(reset_after=False)``)
goes to ``bias_ih_l0``, and ``bias_hh_l0`` is zeros: the cells add the two, and in the
reset-before GRU ``b_hn`` sits outside the reset product (fastlstm's equations), so the sum
is the same function. Keras's ``GRU(reset_after=True)`` applies its recurrent bias inside
the reset product, r ⊙ (W_hn h + b_hn), exactly as fastlstm's (and PyTorch's) default GRU.

What carries over, and what does not:

- Keras layers are batch-first: the fastlstm layer has ``batch_first=True``.
- ``return_sequences`` / ``return_state`` only choose which outputs Keras returns; a fastlstm
  layer always returns both the sequence ``y`` and the final state.
- ``dropout`` becomes ``input_dropout`` and ``recurrent_dropout`` stays ``recurrent_dropout``:
  variational masks, drawn once per call and used at every step, acting in training only.
  The masks are drawn differently: with ``recurrent_dropout > 0`` Keras draws one mask per
  gate (its ``implementation=1``), fastlstm one mask shared by every gate
  (:mod:`fastlstm.regularisation`), and in a ``Bidirectional`` fastlstm shares the input mask
  between the two directions. Rates, expectations and inference agree; training draws do not.
- A Keras layer runs in inference unless called with ``training=True``; the fastlstm layer
  is returned in inference mode (``layer.eval()``) to match: call ``layer.train()`` to train.
- ``use_bias=False`` gives ``bias=False``; ``unroll`` and ``use_cudnn`` choose how Keras
  computes, not what, and are ignored; initialisers, regularisers and constraints act only
  at creation or in Keras's training, and are ignored.
- Refused by name (``ValueError``): an ``activation`` other than ``"tanh"`` (``"tanh"`` or
  ``"relu"`` for ``SimpleRNN``), a ``recurrent_activation`` other than ``"sigmoid"``,
  ``go_backwards=True``, ``stateful=True``, a ``Bidirectional`` ``merge_mode`` other than
  ``"concat"`` or whose two layers differ, and a layer not built yet.

Keras is never imported here: the layers are read through their own methods
(``get_config()``, ``built``, ``cell.kernel.numpy()``).
"""
from __future__ import annotations

import warnings

import numpy as np

from .gates import from_peer

# Keras class name -> (fastlstm cell kind, fastlstm class name)
_KERAS_LAYERS = {"LSTM": ("lstm", "LSTM"), "GRU": ("gru", "GRU"), "SimpleRNN": ("rnn", "RNN")}
_FLOAT_DTYPES = ("float32", "float64")


def from_keras(layer, *, dtype=None, backend="cpu"):
    """A fastlstm layer with the configuration and (copied) weights of a built Keras 3 layer.

    Parameters
    ----------
    layer : keras.layers.LSTM, GRU, SimpleRNN, or Bidirectional wrapping one of them
        Built (called once, or ``layer.build(input_shape)``). A ``Bidirectional`` must have
        ``merge_mode="concat"`` and two layers of the same configuration.
    dtype : {"float32", "float64"} or None
        The layer's dtype; ``None`` takes the Keras weights' dtype, which must then be
        float32 or float64.
    backend : {"cpu", "reference", "cuda"}, default "cpu"

    Returns
    -------
    fastlstm.LSTM, fastlstm.GRU or fastlstm.RNN
        One layer (``num_layers=1``), ``batch_first=True``, ``bidirectional=True`` for a
        ``Bidirectional``; ``GRU(reset_after=...)`` as Keras's; ``RNN(nonlinearity=...)`` the
        ``SimpleRNN``'s activation; in inference mode (see the module docstring). Its
        parameters are new arrays: nothing is shared with Keras. ``x`` is (B, T, I), ``y``
        (B, T, D·H), states (D, B, H).

    Raises
    ------
    TypeError
        ``layer`` is not one of the supported Keras layers.
    ValueError
        The layer is not built, or uses what fastlstm cannot honour (named in the message).
    """
    import fastlstm

    class_name = type(layer).__name__
    if class_name == "Bidirectional":
        merge_mode = getattr(layer, "merge_mode", None)
        if merge_mode != "concat":
            raise ValueError(f"layer: Bidirectional merge_mode={merge_mode!r} is not supported; fastlstm "
                             f"concatenates the two directions (merge_mode='concat')")
        _check_built(layer, "layer")
        directions = [(layer.forward_layer, "layer.forward_layer", False),
                      (layer.backward_layer, "layer.backward_layer", True)]
    elif class_name in _KERAS_LAYERS:
        directions = [(layer, "layer", False)]
    else:
        raise TypeError(f"layer: expected a Keras LSTM, GRU, SimpleRNN or Bidirectional, got {class_name}")

    described = [_describe(part, name, reverse) for part, name, reverse in directions]
    forward = described[0]
    if len(described) == 2:
        _check_same_configuration(forward, described[1])
    if dtype is None:
        dtype = forward["dtype"]
        if dtype not in _FLOAT_DTYPES:
            raise ValueError(f"dtype: the Keras weights are {dtype}; fastlstm computes in float32 or float64: "
                             f"pass dtype='float32' or dtype='float64' to convert them")
    kind = forward["kind"]
    result = getattr(fastlstm, _KERAS_LAYERS[forward["class"]][1])(
        forward["input_size"], forward["hidden_size"], bidirectional=len(described) == 2, batch_first=True,
        dtype=dtype, backend=backend, **forward["options"])
    params = {}
    for direction, (part, _, _) in enumerate(directions):
        suffix = "_l0" + ("_reverse" if direction else "")
        weights = _fastlstm_weights(part, kind, forward["hidden_size"], forward["options"]["bias"])
        params.update({name + suffix: value for name, value in weights.items()})
    result.load_state_dict(params)
    return result.eval()


def _check_built(layer, name):
    if not getattr(layer, "built", False):
        raise ValueError(f"{name}: the Keras {type(layer).__name__} is not built, so it has no weights yet; "
                         f"call it on an input or call layer.build(input_shape) first")


def _describe(layer, name, reverse):
    """One Keras recurrent layer's fastlstm configuration, after refusing what fastlstm cannot honour.

    Parameters
    ----------
    layer : a Keras LSTM, GRU or SimpleRNN
    name : str
        How error messages name it (``"layer"``, ``"layer.backward_layer"``).
    reverse : bool
        It is a ``Bidirectional``'s backward layer, which must run backwards in time.

    Returns
    -------
    dict
        ``class`` (Keras class name), ``kind`` (fastlstm cell kind), ``input_size``,
        ``hidden_size``, ``dtype`` (the weights' dtype name) and ``options`` (fastlstm
        constructor keywords: ``bias``, the regularisers and the cell's option).
    """
    class_name = type(layer).__name__
    if class_name not in _KERAS_LAYERS:
        raise TypeError(f"{name}: expected a Keras LSTM, GRU or SimpleRNN, got {class_name}")
    _check_built(layer, name)
    kind = _KERAS_LAYERS[class_name][0]
    config = layer.get_config()
    if config.get("stateful", False):
        raise ValueError(f"{name}: stateful=True is not supported (a fastlstm layer keeps no state between "
                         f"calls; pass the previous final state as state=)")
    if bool(config.get("go_backwards", False)) != reverse:
        raise ValueError(f"{name}: go_backwards={config.get('go_backwards')} is not supported; a fastlstm layer "
                         f"runs forwards in time (use a Bidirectional layer for a reverse direction)")
    activation = config.get("activation")
    options = {}
    if kind == "rnn":
        if activation not in ("tanh", "relu"):
            raise ValueError(f"{name}: activation={activation!r} is not supported; a SimpleRNN converts with "
                             f"activation 'tanh' or 'relu'")
        options["nonlinearity"] = activation
    else:
        if activation != "tanh":
            raise ValueError(f"{name}: activation={activation!r} is not supported; fastlstm's {class_name} "
                             f"uses activation 'tanh'")
        recurrent_activation = config.get("recurrent_activation")
        if recurrent_activation != "sigmoid":
            raise ValueError(f"{name}: recurrent_activation={recurrent_activation!r} is not supported; "
                             f"fastlstm's {class_name} uses recurrent_activation 'sigmoid'")
    if kind == "gru":
        options["reset_after"] = bool(config.get("reset_after", True))
    options["bias"] = bool(config.get("use_bias", True))
    options["input_dropout"] = float(config.get("dropout", 0.0))
    options["recurrent_dropout"] = float(config.get("recurrent_dropout", 0.0))
    kernel = layer.cell.kernel
    return {"class": class_name, "kind": kind, "input_size": int(kernel.shape[0]),
            "hidden_size": int(config["units"]), "dtype": _dtype_name(kernel), "options": options}


def _check_same_configuration(forward, backward):
    for key in ("class", "input_size", "hidden_size", "dtype"):
        if forward[key] != backward[key]:
            raise ValueError(f"layer.backward_layer: its {key} {backward[key]!r} differs from the forward "
                             f"layer's {forward[key]!r}; fastlstm's two directions share one configuration")
    for key, value in forward["options"].items():
        if backward["options"][key] != value:
            raise ValueError(f"layer.backward_layer: {key}={backward['options'][key]!r} differs from the "
                             f"forward layer's {key}={value!r}; fastlstm's two directions share one "
                             f"configuration")


def _fastlstm_weights(layer, kind, hidden_size, bias):
    """One Keras layer's weights as fastlstm's ``weight_ih``, ``weight_hh`` (and ``bias_ih``,
    ``bias_hh``), new arrays in fastlstm's gate order."""
    cell = layer.cell
    weights = {
        "weight_ih": from_peer(_numpy(cell.kernel), kind, "keras", hidden_size, axis=1).T,
        "weight_hh": from_peer(_numpy(cell.recurrent_kernel), kind, "keras", hidden_size, axis=1).T,
    }
    if bias:
        keras_bias = _numpy(cell.bias)
        if keras_bias.ndim == 2:           # GRU(reset_after=True): input bias, recurrent bias
            weights["bias_ih"] = from_peer(keras_bias[0], kind, "keras", hidden_size)
            weights["bias_hh"] = from_peer(keras_bias[1], kind, "keras", hidden_size)
        else:
            weights["bias_ih"] = from_peer(keras_bias, kind, "keras", hidden_size)
            weights["bias_hh"] = np.zeros_like(weights["bias_ih"])
    return weights


def _numpy(variable):
    """A Keras variable's values as a NumPy float array (float64 for float types NumPy lacks)."""
    with warnings.catch_warnings():
        # Keras 3's variables predate NumPy 2's __array__(copy=...) protocol, and say so on every read.
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword",
                                category=DeprecationWarning)
        value = np.asarray(variable.numpy())
    if value.dtype.name not in _FLOAT_DTYPES:
        value = value.astype(np.float64)
    return value


def _dtype_name(variable):
    dtype = variable.dtype
    return dtype if isinstance(dtype, str) else str(getattr(dtype, "name", dtype))

"""Saving and loading layers and models: one ``.npz`` file, parameters and a JSON config.

The file holds every parameter as a NumPy array (``param/<name>``) and one string array,
``fastlstm.json``: the object's class, every constructor argument, its train/eval mode, the
state of its regularisers' random generator, the package version and the format version.
Loading reads it with ``allow_pickle=False`` (nothing in the file is ever executed), rebuilds
the object from the arguments (validated as a constructor call would be) and checks that the
arrays are exactly the parameters that configuration has, with their shapes and dtype.
"""
from __future__ import annotations

import json
import os

import numpy as np

FORMAT = "fastlstm"
FORMAT_VERSION = 1
CONFIG_KEY = "fastlstm.json"
PARAM_PREFIX = "param/"
# Bit generators whose state a file may restore, by name (never looked up beyond this list).
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def save(obj, path):
    """Write a layer (``fastlstm.LSTM``/``GRU``/``RNN``) or a ``training.SequenceModel`` to ``path``.

    Parameters
    ----------
    obj : fastlstm layer or fastlstm.training.SequenceModel
    path : str or os.PathLike
        The ``.npz`` file to write (NumPy appends ``.npz`` to a name without it).

    :func:`load` returns an object of the same class that gives bitwise the same results,
    in both modes (its regularisers' generator continues where ``obj``'s was).
    """
    from . import __version__
    config, params = _describe(obj)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "fastlstm_version": __version__, **config}
    arrays = {PARAM_PREFIX + name: np.asarray(value) for name, value in params.items()}
    arrays[CONFIG_KEY] = np.array(json.dumps(config))
    np.savez(os.fspath(path), **arrays)


def load(path, *, backend=None):
    """Read what :func:`save` wrote.

    Parameters
    ----------
    path : str or os.PathLike
    backend : {"cpu", "reference", "cuda"}, optional
        Run the loaded layer on this backend instead of the saved one (e.g. a model trained
        on a GPU, loaded on a machine without one).

    Returns
    -------
    fastlstm layer or fastlstm.training.SequenceModel

    Raises
    ------
    ValueError
        When the file is not a fastlstm file, was written in a newer format version, or its
        arrays do not match its configuration (names, shapes, dtype).
    """
    with np.load(os.fspath(path), allow_pickle=False) as file:
        if CONFIG_KEY not in file.files:
            raise ValueError(f"path: {os.fspath(path)!r} is not a file written by fastlstm.save "
                             f"(it has no {CONFIG_KEY!r} entry)")
        try:
            config = json.loads(str(file[CONFIG_KEY]))
        except json.JSONDecodeError as error:
            raise ValueError(f"path: the {CONFIG_KEY!r} entry of {os.fspath(path)!r} is not JSON: {error}") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ValueError(f"path: {os.fspath(path)!r} is not a file written by fastlstm.save")
        version = config.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"path: {os.fspath(path)!r} has format version {version!r}, newer than this fastlstm "
                             f"reads ({FORMAT_VERSION}; it was written by fastlstm "
                             f"{config.get('fastlstm_version')}): upgrade fastlstm to load it")
        params = {name[len(PARAM_PREFIX):]: file[name] for name in file.files if name.startswith(PARAM_PREFIX)}
        unknown = sorted(set(file.files) - {CONFIG_KEY} - {PARAM_PREFIX + name for name in params})
    if unknown:
        raise ValueError(f"path: unexpected entries {unknown} in {os.fspath(path)!r}")
    return _rebuild(config, params, backend)


def _describe(obj):
    """(config dict, params dict) of a layer or a SequenceModel."""
    from .layers import _RecurrentLayer
    from .training import SequenceModel
    if isinstance(obj, _RecurrentLayer):
        return _layer_config(obj), obj.params
    if isinstance(obj, SequenceModel):
        config = {"class": "SequenceModel", "out_features": obj.out_features, "head": obj.head,
                  "learn_initial_state": obj.initial_state is not None, "recurrent": _layer_config(obj.recurrent)}
        return config, obj.params
    raise TypeError(f"obj: expected a fastlstm layer (LSTM, GRU, RNN) or a training.SequenceModel, "
                    f"got {type(obj).__name__}")


def _layer_config(layer):
    state = layer.rng.bit_generator.state
    return {"class": type(layer).__name__, "arguments": layer.init_arguments(), "training": layer.training,
            "rng": state}


def _rebuild(config, params, backend):
    from .training import SequenceModel
    kind = config.get("class")
    if kind == "SequenceModel":
        recurrent = _rebuild_layer(config.get("recurrent"), backend)
        model = SequenceModel(recurrent, config.get("out_features"), head=config.get("head"),
                              learn_initial_state=config.get("learn_initial_state"))
        _check_arrays(model.params, params)
        for name, value in model.params.items():
            value[...] = params[name]          # the model's own arrays, which the optimisers update
        return model
    layer = _rebuild_layer(config, backend)
    _check_arrays(layer.params, params)
    layer.load_state_dict(params)
    return layer


def _rebuild_layer(config, backend):
    from . import layers
    classes = {"LSTM": layers.LSTM, "GRU": layers.GRU, "RNN": layers.RNN}
    if not isinstance(config, dict) or config.get("class") not in classes:
        found = config.get("class") if isinstance(config, dict) else config
        raise ValueError(f"path: expected a saved layer of class LSTM, GRU or RNN, got {found!r}")
    arguments = dict(config.get("arguments") or {})
    if backend is not None:
        arguments["backend"] = backend
    layer = classes[config["class"]](**arguments)
    layer.train(config.get("training", True))
    rng = config.get("rng")
    if rng is not None:
        name = rng.get("bit_generator") if isinstance(rng, dict) else None
        if name not in BIT_GENERATORS:
            raise ValueError(f"path: unknown random generator {name!r}; expected one of {BIT_GENERATORS}")
        layer.rng = np.random.Generator(getattr(np.random, name)())
        layer.rng.bit_generator.state = rng
    return layer


def _check_arrays(expected, found):
    """Raise unless ``found`` holds exactly the names of ``expected``, with their shapes and dtypes."""
    missing = sorted(set(expected) - set(found))
    unknown = sorted(set(found) - set(expected))
    if missing or unknown:
        raise ValueError(f"path: the file's arrays do not match its config: missing {missing}, unexpected {unknown}")
    for name, value in expected.items():
        if found[name].shape != value.shape or found[name].dtype != value.dtype:
            raise ValueError(f"path: the file's array {name!r} is {found[name].dtype} {found[name].shape}; its "
                             f"config says {value.dtype} {value.shape}")

"""Recurrent weights in and out of PyTorch, Keras and ONNX.

Each peer stacks gates in its own order and lays out biases its own way: PyTorch (and
fastlstm) i, f, g, o for the LSTM and r, z, n for the GRU, two biases; Keras i, f, c, o and
z, r, h, one bias (two rows for ``reset_after=True``); ONNX i, o, f, c and z, r, h, one
``B`` tensor ``[Wb, Rb]``, peepholes i, o, f. The functions here move weights between them
and fastlstm's layers, and refuse, by name, options one side cannot express. The peers are
optional: each is imported only inside the functions that need it.
"""


def from_torch(module, **options):
    """A fastlstm layer from a ``torch.nn.LSTM``/``GRU``/``RNN`` (see :mod:`fastlstm.interop.pytorch`)."""
    from .pytorch import from_torch as convert
    return convert(module, **options)


def to_torch(layer):
    """A ``torch.nn.LSTM``/``GRU``/``RNN`` from a fastlstm layer (see :mod:`fastlstm.interop.pytorch`)."""
    from .pytorch import to_torch as convert
    return convert(layer)


def from_keras(layer, **options):
    """A fastlstm layer from a Keras 3 ``LSTM``/``GRU``/``SimpleRNN``/``Bidirectional``
    (see :mod:`fastlstm.interop.keras`)."""
    from .keras import from_keras as convert
    return convert(layer, **options)


def to_onnx(layer, path=None, **options):
    """An ONNX model of a fastlstm layer (see :mod:`fastlstm.interop.onnx`)."""
    from .onnx import to_onnx as convert
    return convert(layer, path, **options)


def from_onnx(path_or_model, **options):
    """A fastlstm layer from an ONNX model of recurrent nodes (see :mod:`fastlstm.interop.onnx`)."""
    from .onnx import from_onnx as convert
    return convert(path_or_model, **options)


__all__ = ["from_torch", "to_torch", "from_keras", "to_onnx", "from_onnx"]

"""fastlstm layers from and to PyTorch's ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN``.

fastlstm uses PyTorch's parameter names, shapes and gate orders (LSTM i, f, g, o; GRU r, z,
n), so the weights move unchanged; what is converted is the configuration. PyTorch is
imported only inside these functions.

What one side cannot express is refused by name with a ``ValueError``: PyTorch's
``proj_size`` (LSTM projections) has no fastlstm counterpart; fastlstm's peepholes, its
reset-before GRU (``reset_after=False``) and its regularisers other than ``dropout``
(``input_dropout``, ``recurrent_dropout``, ``zoneout``, ``zoneout_cell``, ``weight_dropout``)
have no PyTorch counterpart.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..regularisation import RATES
from ..validation import check_names

# torch module mode -> (fastlstm class name, cell options)
_TORCH_MODES = {
    "LSTM": ("LSTM", {}),
    "GRU": ("GRU", {}),
    "RNN_TANH": ("RNN", {"nonlinearity": "tanh"}),
    "RNN_RELU": ("RNN", {"nonlinearity": "relu"}),
}


def from_torch(module, *, dtype=None, backend="cpu"):
    """A fastlstm layer with the configuration and (copied) parameters of a PyTorch module.

    Parameters
    ----------
    module : torch.nn.LSTM, torch.nn.GRU or torch.nn.RNN
        Any ``num_layers``, ``bidirectional``, ``batch_first``, ``bias``, ``dropout`` and (RNN)
        ``nonlinearity``; its parameters may live on any device. ``proj_size`` must be 0.
    dtype : {"float32", "float64"} or None
        The layer's dtype; ``None`` takes the module's parameter dtype, which must then be
        float32 or float64 (pass ``dtype`` to convert a float16/bfloat16 module).
    backend : {"cpu", "reference", "cuda"}, default "cpu"

    Returns
    -------
    fastlstm.LSTM, fastlstm.GRU or fastlstm.RNN
        Parameters equal to the module's (``weight_ih_l{k}`` (G·H, I_k), ``weight_hh_l{k}``
        (G·H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (G·H,), ``_reverse`` for the reverse
        direction), held in new arrays: the layer shares no memory with the module. The
        layer is in training mode when the module is (``dropout`` acts then), else in
        inference mode.

    Raises
    ------
    TypeError
        ``module`` is not one of the three PyTorch recurrent modules.
    ValueError
        ``proj_size > 0``, or the module's dtype is neither float32 nor float64 and
        ``dtype`` was not given.
    """
    import torch
    import fastlstm

    if not isinstance(module, torch.nn.RNNBase) or getattr(module, "mode", None) not in _TORCH_MODES:
        raise TypeError(f"module: expected a torch.nn.LSTM, torch.nn.GRU or torch.nn.RNN, "
                        f"got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError(f"module: proj_size={module.proj_size} (an LSTM with projections) has no fastlstm "
                         f"counterpart; fastlstm's LSTM needs proj_size=0")
    parameters = {name: value.detach() for name, value in module.named_parameters()}
    if dtype is None:
        dtype = _numpy_dtype_of(next(iter(parameters.values())).dtype)
    class_name, cell_options = _TORCH_MODES[module.mode]
    with warnings.catch_warnings():
        # PyTorch already warned, when the module was built, that dropout with num_layers=1 does nothing.
        warnings.filterwarnings("ignore", message="dropout=", category=UserWarning)
        layer = getattr(fastlstm, class_name)(
            module.input_size, module.hidden_size, module.num_layers, bidirectional=module.bidirectional,
            batch_first=module.batch_first, bias=module.bias, dtype=dtype, backend=backend,
            dropout=float(module.dropout), **cell_options)
    layer.load_state_dict({name: _to_numpy(value) for name, value in parameters.items()})
    layer.train(module.training)
    return layer


def to_torch(layer):
    """A PyTorch module with the configuration and (copied) parameters of a fastlstm layer.

    Parameters
    ----------
    layer : fastlstm.LSTM, fastlstm.GRU or fastlstm.RNN
        Any ``num_layers``, ``bidirectional``, ``batch_first``, ``bias``, ``dropout``, dtype
        and backend (a ``"cuda"`` layer's parameters are copied to the host).

    Returns
    -------
    torch.nn.LSTM, torch.nn.GRU or torch.nn.RNN
        On the CPU, of the layer's dtype (``torch.float32``/``torch.float64``), in training mode
        when the layer is, with the layer's parameters copied in.

    Raises
    ------
    TypeError
        ``layer`` is not a fastlstm layer.
    ValueError
        The layer uses what PyTorch cannot express: ``peephole=True``, a GRU with
        ``reset_after=False``, or a regulariser other than ``dropout`` (``input_dropout``,
        ``recurrent_dropout``, ``zoneout``, ``zoneout_cell``, ``weight_dropout``).
    """
    import fastlstm

    if not isinstance(layer, (fastlstm.LSTM, fastlstm.GRU, fastlstm.RNN)):
        raise TypeError(f"layer: expected a fastlstm.LSTM, GRU or RNN, got {type(layer).__name__}")
    config = layer.config
    cell = config.cell
    if cell.kind == "lstm" and cell.peephole:
        raise ValueError("layer: peephole=True has no PyTorch counterpart (nn.LSTM has no peephole "
                         "connections); only a peephole=False LSTM converts")
    if cell.kind == "gru" and not cell.reset_after:
        raise ValueError("layer: reset_after=False (the reset-before GRU of Cho et al. 2014) has no PyTorch "
                         "counterpart (nn.GRU applies the reset gate after the recurrent product); only a "
                         "reset_after=True GRU converts")
    unsupported = [f"{name}={getattr(config.regularisation, name)}" for name in RATES
                   if name != "dropout" and getattr(config.regularisation, name)]
    if unsupported:
        raise ValueError(f"layer: {', '.join(unsupported)} has no PyTorch counterpart; of the regularisers "
                         f"only dropout (between stacked layers) converts")

    import torch

    torch_dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(config.dtype)]
    module_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell.kind]
    options = {"nonlinearity": cell.nonlinearity} if cell.kind == "rnn" else {}
    with warnings.catch_warnings():
        # fastlstm already warned, when the layer was built, that dropout with num_layers=1 does nothing.
        warnings.filterwarnings("ignore", message="dropout option adds dropout", category=UserWarning)
        module = module_class(config.input_size, config.hidden_size, config.num_layers, bias=config.bias,
                              batch_first=config.batch_first, dropout=config.regularisation.dropout,
                              bidirectional=config.bidirectional, dtype=torch_dtype, **options)
    expected = dict(module.named_parameters())
    check_names("layer.params", layer.params, expected)
    with torch.no_grad():
        for name, parameter in expected.items():
            value = np.ascontiguousarray(_host(layer.params[name]), dtype=config.dtype)
            if value.shape != tuple(parameter.shape):
                raise ValueError(f"layer.params[{name!r}]: expected shape {tuple(parameter.shape)}, "
                                 f"got {value.shape}")
            parameter.copy_(torch.from_numpy(value))
    module.train(layer.training)
    return module


def _numpy_dtype_of(torch_dtype):
    """float32/float64 for the matching torch dtype; ValueError for any other."""
    import torch

    dtypes = {torch.float32: "float32", torch.float64: "float64"}
    if torch_dtype not in dtypes:
        raise ValueError(f"dtype: the module's parameters are {torch_dtype}; fastlstm computes in float32 or "
                         f"float64: pass dtype='float32' or dtype='float64' to convert them")
    return dtypes[torch_dtype]


def _to_numpy(tensor):
    """A detached tensor's values as a NumPy array on the host (float64 for the dtypes NumPy lacks)."""
    import torch

    tensor = tensor.cpu()
    if tensor.dtype not in (torch.float32, torch.float64, torch.float16):
        tensor = tensor.to(torch.float64)     # bfloat16 and friends: exact in float64
    return tensor.numpy()


def _host(array):
    """A parameter as a NumPy array, copied from the GPU when it lives there."""
    if hasattr(array, "copy_to_host"):
        return array.copy_to_host()
    if hasattr(array, "__cuda_array_interface__") and not isinstance(array, np.ndarray):
        from numba import cuda

        return cuda.as_cuda_array(array).copy_to_host()
    return np.asarray(array)

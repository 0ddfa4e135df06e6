"""Which step functions serve which cell, built lazily and once per cell options and dtype."""
import numpy as np

_kernels = {}


def kernels_for(cell, dtype):
    """Return the kernel adaptor for ``cell`` (a :class:`fastlstm.cells.Cell`) in ``dtype``."""
    key = (cell, np.dtype(dtype))
    if key not in _kernels:
        if cell.kind == "lstm":
            from .lstm import LSTMKernels as adaptor
        elif cell.kind == "gru" and cell.reset_after:
            from .gru import GRUKernels as adaptor
        elif cell.kind == "gru":
            from .gru import GRUResetBeforeKernels as adaptor
        else:
            from .rnn import RNNKernels as adaptor
        _kernels[key] = adaptor(cell, dtype)
    return _kernels[key]

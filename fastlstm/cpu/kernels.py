"""Which step functions serve which cell, built lazily and once per cell options."""
_kernels = {}


def kernels_for(cell):
    """Return the kernel adaptor for ``cell`` (a :class:`fastlstm.cells.Cell`)."""
    if cell not in _kernels:
        if cell.kind == "lstm":
            from .lstm import LSTMKernels as adaptor
        else:
            raise NotImplementedError(f"the cpu backend has no {cell.label} yet")
        _kernels[cell] = adaptor(cell)
    return _kernels[cell]

"""The numba.cuda backend: one layer (every direction) forward and backward per cell.

Loaded only when a layer with ``backend="cuda"`` is first built (``import fastlstm`` never
loads Numba or CUDA), after :func:`.arrays.require_gpu` has said why it cannot run, if it
cannot: this package's own ``__init__`` imports nothing, so that check always gets to speak.
"""

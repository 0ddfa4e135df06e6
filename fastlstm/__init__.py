"""fastlstm: Numba-accelerated LSTM, GRU and RNN layers with forward and backward passes.

``import fastlstm`` loads NumPy only; Numba compiles a backend's kernels on first use.
"""
from .backends.cpu.threads import yield_in_barriers
from .layers import GRU, LSTM, RNN
from .precompile import precompile
from .saving import load, save

yield_in_barriers()      # before anything loads GNU OpenMP (see its docstring)

__version__ = "0.1.0"
__all__ = ["LSTM", "GRU", "RNN", "precompile", "save", "load", "__version__"]

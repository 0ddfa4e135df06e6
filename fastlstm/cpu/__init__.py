"""The Numba CPU backend: one layer (every direction) forward and backward per cell."""
from .driver import backward_layer, forward_layer
from .kernels import kernels_for

__all__ = ["forward_layer", "backward_layer", "kernels_for"]

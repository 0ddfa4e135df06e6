"""The Numba CPU backend: one layer-direction forward and backward per cell."""
from .driver import backward, forward
from .kernels import kernels_for

__all__ = ["forward", "backward", "kernels_for"]

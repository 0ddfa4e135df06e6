"""Scalar activation functions used inside the fused gate kernels.

These are plain Python functions on purpose: each backend compiles them for itself
(``numba.njit`` on the CPU), so the CPU and GPU paths share one piece of code per formula.
"""
import math


def sigmoid(a):
    """Logistic function 1 / (1 + exp(-a)); exp overflows to inf for very negative a, giving 0."""
    return 1.0 / (1.0 + math.exp(-a))


def tanh(a):
    """Hyperbolic tangent."""
    return math.tanh(a)

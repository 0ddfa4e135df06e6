"""How close a backend must come to the float64 reference, per dtype.

An array passes when

    max|result − reference| ≤ rtol · max|reference| + atol + slack · naive_error

float64: rtol = 1e-9 and no slack; the float64 kernels differ from the reference only in
summation order and stay below 1e-12 relative on every tested problem.

float32: every sum and activation runs in float32 (unit roundoff 6e-8), so some error is
inherent, and how much depends on the problem. Through a saturated gate the derivative
σ(a)(1 − σ(a)) is formed from a σ(a) rounded to float32, so a gradient can be tiny and
still carry an absolute error of about 6e-8 times its unsaturated size — a relative error
far above any fixed rtol. ``naive_error`` measures that conditioning on the very problem:
it is the error of the reference's own equations evaluated in float32 NumPy. A float32
kernel passes when it is within rtol = 2e-3 of the largest value, or within ``slack`` = 8
times that naive error (a wrong kernel is off by O(1), far beyond either).
"""
import numpy as np

TOLERANCE = {np.float32: (2e-3, 1e-6, 8.0), np.float64: (1e-9, 1e-12, 0.0)}


def tolerance(dtype):
    """(rtol, atol, slack) for ``dtype``."""
    return TOLERANCE[np.dtype(dtype).type]

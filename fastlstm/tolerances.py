"""How close a backend must come to the float64 reference, per dtype.

An array passes when max|result − reference| ≤ rtol · max|reference| + atol.

float32: every sum and activation runs in float32 (unit roundoff 6e-8). A pre-activation
sums I + H products; with the magnitudes the tests use (inputs up to 300, weights up to
3/√H) and a few chained steps, the worst errors observed stay ~10× below rtol = 2e-3.
The absolute floor covers arrays whose every entry is near zero (saturated gates).
float64: the same chains stay below 1e-12 relative.
"""
import numpy as np

TOLERANCE = {np.float32: (2e-3, 1e-5), np.float64: (1e-9, 1e-12)}


def tolerance(dtype):
    """(rtol, atol) for ``dtype``."""
    return TOLERANCE[np.dtype(dtype).type]

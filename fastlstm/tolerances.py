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
kernel passes when it is within rtol = 2e-3 of the largest value, or within ``slack`` = 32
times that naive error (a wrong kernel is off by O(1), far beyond either). The naive error is
one draw of float32 rounding, and where a gradient sums a few terms through a saturated gate
the draws spread widely: over 400 random problems of up to 8 steps and 6 units a correct
kernel needed at most 0.81 times the naive error beyond rtol, but on one (an RNN of one unit
over 8 steps, inputs scaled by 300: ``tests/test_cpu_matches_reference.py``'s example) the
naive float32 evaluation was off by 0.4 % and the kernel by 9 %, 17 times the naive error.
"""
import numpy as np

TOLERANCE = {np.float32: (2e-3, 1e-6, 32.0), np.float64: (1e-9, 1e-12, 0.0)}
NAIVE_FLOAT32 = "reference-float32"   # the backend name of the reference's equations in float32


def tolerance(dtype):
    """(rtol, atol, slack) for ``dtype``."""
    return TOLERANCE[np.dtype(dtype).type]


def naive_float32_backend():
    """The name under which the reference's equations evaluated in float32 NumPy run (registered
    on first use): the ``naive`` of :func:`judged` for a float32 result."""
    from . import backends
    from .backends.reference import ReferenceBackend

    try:
        backends.get_backend(NAIVE_FLOAT32)
    except ValueError:
        backends.register(NAIVE_FLOAT32, ReferenceBackend(np.float32))
    return NAIVE_FLOAT32


def errors(result, expected):
    """Per array: (max |result − expected|, max |expected|).

    Parameters
    ----------
    result, expected : dict of str -> array_like
        ``result`` holds at least every name of ``expected``, each of the same shape.

    Returns
    -------
    dict of str -> (float, float)
    """
    found = {}
    for name, reference in expected.items():
        reference = np.asarray(reference, dtype=np.float64)
        value = np.asarray(result[name], dtype=np.float64)
        if value.shape != reference.shape:
            raise ValueError(f"{name}: expected shape {reference.shape}, got {value.shape}")
        found[name] = (float(np.abs(value - reference).max(initial=0.0)), float(np.abs(reference).max(initial=0.0)))
    return found


def judged(result, expected, dtype, naive=None):
    """Every array's error against what the rule above allows it.

    Parameters
    ----------
    result, expected : dict of str -> array_like
        A backend's arrays and the float64 reference's, by name.
    dtype : numpy.dtype, the dtype ``result`` was computed in
    naive : dict of str -> array_like, optional
        The same problem run by :func:`naive_float32_backend` (float32 results; without it the
        slack term is 0, the stricter test).

    Returns
    -------
    dict of str -> dict
        Per name: ``error``, ``allowed``, ``max_reference`` and ``ok`` (``error <= allowed``).
    """
    rtol, atol, slack = tolerance(dtype)
    naive_errors = errors(naive, expected) if naive is not None else {}
    verdicts = {}
    for name, (error, scale) in errors(result, expected).items():
        allowed = rtol * scale + atol + slack * naive_errors.get(name, (0.0, 0.0))[0]
        verdicts[name] = dict(error=error, allowed=allowed, max_reference=scale, ok=bool(error <= allowed))
    return verdicts

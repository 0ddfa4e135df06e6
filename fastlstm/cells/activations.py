"""Scalar activation functions used inside the fused gate kernels.

These are plain Python functions on purpose: each backend compiles them for itself
(``numba.njit`` on the CPU), so the CPU and GPU paths share one piece of code per formula.

``sigmoid`` and ``tanh`` are exact (library ``exp``/``tanh``). ``tanh_float64`` is as accurate
(≤ 2 ulp) and built on ``exp`` and a polynomial, about 3× faster than the library ``tanh``
inside a gate loop; the CPU kernels use it and ``sigmoid`` for float64.
``sigmoid_float32`` and ``tanh_float32`` are pure float32 arithmetic (no library calls, no
branches that a compiler cannot turn into selects), so LLVM vectorises a loop that calls them;
PyPI's llvmlite has no SVML, so ``math.exp``/``math.tanh`` are scalar calls that block the
loop vectoriser. Every constant they use is a module-level ``np.float32``: Numba types a Python
float literal as float64, which would promote the whole computation to float64.
"""
import math
from fractions import Fraction

import numpy as np

from ..rebinding import rebind


# Below this argument exp(-a) overflows: inf on a device and in compiled code, but an
# OverflowError in plain Python, where the CUDA simulator runs these functions. sigmoid is then
# below 1e-308, tanh(x) rounds to 1 from x = 19.1.
_SIGMOID_ZERO_BELOW = -709.0
_TANH_ONE_ABOVE = 20.0


def sigmoid(a):
    """Logistic function 1 / (1 + exp(-a)) of a float64; 0 for a < -709, NaN for NaN."""
    return 0.0 if a < _SIGMOID_ZERO_BELOW else 1.0 / (1.0 + math.exp(-a))


def tanh(a):
    """Hyperbolic tangent."""
    return math.tanh(a)


def _tanh_taylor_coefficients(count):
    """The first ``count`` coefficients c_k of tanh x = Σ c_k x^(2k+1), as floats.

    c_k = 2^(2n) (2^(2n) − 1) B_(2n) / (2n)! with n = k + 1, from the Bernoulli numbers
    B_m computed exactly (Σ_{j<m+1} C(m+1, j) B_j = 0), then each rounded once.
    """
    bernoulli = [Fraction(1)]
    for m in range(1, 2 * count + 1):
        total = sum(math.comb(m + 1, j) * bernoulli[j] for j in range(m))
        bernoulli.append(-total / (m + 1))
    return [float(Fraction(4 ** n * (4 ** n - 1)) * bernoulli[2 * n] / math.factorial(2 * n))
            for n in range(1, count + 1)]


# Below this |x| the series; above it 1 − 2 / (exp(2|x|) + 1), whose subtraction then loses
# under a bit (tanh(0.5) = 0.46). The series' terms shrink by (2x/π)² ≤ 0.101 each at 0.5:
# 17 terms leave a truncation below 1e-17 of the first.
_TANH_SERIES_BELOW = 0.5
(_T0, _T1, _T2, _T3, _T4, _T5, _T6, _T7, _T8, _T9, _T10, _T11, _T12, _T13, _T14, _T15,
 _T16) = _tanh_taylor_coefficients(17)


def tanh_float64(a):
    """Hyperbolic tangent of a float64 from ``exp`` and a polynomial (no library ``tanh``).

    Parameters
    ----------
    a : float64

    Returns
    -------
    float64
        tanh(a); NaN for NaN, ±1 for ±inf, exactly odd.

    Notes
    -----
    Library ``tanh`` costs ~14 ns a value in a Numba loop; ``exp`` ~4 ns (both scalar calls:
    no SVML). Error: at most 2 ulp of np.tanh, checked by the tests over 400,000 values.
    """
    x = abs(a)
    t = x * x
    series = x * (_T0 + t * (_T1 + t * (_T2 + t * (_T3 + t * (_T4 + t * (_T5 + t * (_T6 + t * (
        _T7 + t * (_T8 + t * (_T9 + t * (_T10 + t * (_T11 + t * (_T12 + t * (_T13 + t * (
            _T14 + t * (_T15 + t * _T16))))))))))))))))
    via_exp = 1.0 if x > _TANH_ONE_ABOVE else 1.0 - 2.0 / (math.exp(2.0 * x) + 1.0)
    return math.copysign(series if x < _TANH_SERIES_BELOW else via_exp, a)


# ---------------------------------------------------------------------------------------------
# float32 approximations: half-angle construction.
#
# For x = |a| the rational function below gives the small correction
#     c(x) = x - 2 tanh(x/2) = x t A(t) / B(t),    t = x^2,
# from which h = x - c = 2 tanh(x/2) and m = (1 - x/2) + c/2 = 1 - tanh(x/2) (1 - x/2 is exact in
# float32 for the x where m is used), and then
#     tanh(x) = x - (c + h (h/2)^2 / (1 + (h/2)^2))   for x <  ln 3   (tanh(x) < 0.8),
#     tanh(x) = 1 - m^2 / (1 + (1 - m)^2)              for x >= ln 3.
# Why this and not a single x P(x^2) / Q(x^2): that form (numerator of degree 13, denominator 6,
# fitted the same way to 7e-9) is off by up to 5.3 * 2**-24 in float32 (every 64th float32 in
# [0, 10]), because P and Q are large sums whose rounding errors pass straight into values near 1.
# Here (1) rounding errors in c enter in proportion to c, which is small where tanh is not near 1,
# (2) the half-angle step damps an error in tanh(x/2) by 1/cosh(x), and (3) each branch ends with
# one subtraction from a value of the result's own size, so the last rounding is the only
# full-size one. The price is a second division (both vectorise) and a select between branches.
#
# Coefficients: fitted in float64 (script kept outside the package) by linearised rational least
# squares with Lawson reweighting, minimising the maximum relative error of the resulting tanh(x)
# (an error e in c/(x t) moves tanh(x) by the relative amount e (x/h - 1) / cosh(x)) over
# x in [0, 9.02], degrees 2 (A) and 3 (B, B(0) = 1); then rounded to float32 and polished by
# coordinate descent over neighbouring float32 values. Maximum relative error of the formula
# evaluated in float64 with these float32 coefficients: 2.4e-9 (0.04 ulp); everything else in the
# measured error is float32 rounding.
_CORRECTION_NUM0 = np.float32(0.0833333283662796)
_CORRECTION_NUM1 = np.float32(0.0012522308388724923)
_CORRECTION_NUM2 = np.float32(2.807360488077393e-06)
_CORRECTION_DEN1 = np.float32(0.11502674967050552)
_CORRECTION_DEN2 = np.float32(0.0014173208037391305)
_CORRECTION_DEN3 = np.float32(2.902236474255915e-06)

_ZERO = np.float32(0.0)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
# tanh(x) = 0.8, tanh(x/2) = 1/2: where the second formula takes over.
_LARGE_BRANCH_FROM = np.float32(math.log(3.0))
# Beyond this x, float32 tanh(x) rounds to 1 (from 9.011): m is set to 0 exactly, so tanh(+-inf)
# is exactly +-1, sigmoid(+-inf) exactly 1 / 0, and overflowed intermediates (inf, NaN from a
# huge x) are discarded instead of propagated.
_SATURATION = np.float32(9.02)


def tanh_float32(a):
    """Hyperbolic tangent of a float32, in float32 arithmetic only (vectorisable).

    Parameters
    ----------
    a : float32
        Argument. Compiled for float32, every operation stays float32.

    Returns
    -------
    float32
        tanh(a), in [-1, 1]; NaN for NaN, +-1 for +-inf, -0.0 for -0.0. Exactly odd.

    Notes
    -----
    Measured with ``numba.njit`` as the CPU kernels compile it (FMA contraction; the maxima are
    the same without it) over every float32 in [-10, 10], against float64 ``np.tanh``:

    - maximum absolute error 8.07e-8 = 1.355 * 2**-24, at |a| = 1.0518492;
    - maximum error in ulps of the true value: 1.355 for |a| >= 0.5, 0.77 for
      2**-12 <= |a| < 0.5; for |a| < 2**-12 (subnormals included) the result is a itself, which is
      the correctly rounded value there;
    - |a| >= 9.02 gives exactly +-1 (float32 rounding of the true value is +-1 from 9.011).

    Not exactly monotonic: 174010 steps back of exactly one ulp for a in [0.86201876, 9.015144]
    (and mirrored), where the true value is near a rounding boundary and float32 rounding noise
    decides; none for |a| < 0.86201876.
    """
    x = abs(a)
    t = x * x
    correction = x * t * (_CORRECTION_NUM0 + t * (_CORRECTION_NUM1 + t * _CORRECTION_NUM2)) / (
        _ONE + t * (_CORRECTION_DEN1 + t * (_CORRECTION_DEN2 + t * _CORRECTION_DEN3)))
    double_half_tanh = x - correction                                   # 2 tanh(x/2)
    one_minus_half_tanh = (_ONE - _HALF * x) + _HALF * correction       # 1 - tanh(x/2)
    one_minus_half_tanh = _ZERO if x >= _SATURATION else one_minus_half_tanh
    large = x >= _LARGE_BRANCH_FROM
    half_tanh = _ONE - one_minus_half_tanh if large else _HALF * double_half_tanh
    half_tanh_squared = half_tanh * half_tanh
    numerator = one_minus_half_tanh * one_minus_half_tanh if large else double_half_tanh * half_tanh_squared
    quotient = numerator / (_ONE + half_tanh_squared)
    magnitude = _ONE - quotient if large else x - (correction + quotient)
    return math.copysign(magnitude, a)


def sigmoid_float32(a):
    """Logistic function 1 / (1 + exp(-a)) of a float32, in float32 arithmetic only (vectorisable).

    Parameters
    ----------
    a : float32
        Argument. Compiled for float32, every operation stays float32.

    Returns
    -------
    float32
        sigmoid(a), in [0, 1]; NaN for NaN, 1 for +inf, 0 for -inf.

    Notes
    -----
    sigmoid(a) = 1/2 + tanh(a/2)/2 on :func:`tanh_float32` (halving and the product by 1/2 are
    exact): 16 % less work than a construction of its own, the same absolute error. Measured
    with ``numba.njit`` as the CPU kernels compile it (FMA contraction), over every float32 in
    [-20, 20], against the float64 logistic:

    - maximum absolute error 5.87e-8 = 0.986 * 2**-24, at a = 2.4173124 (0.986 ulp of the
      value); for a < 0, 4.04e-8 = 0.68 * 2**-24, at a = -2.1036985;
    - the accuracy is absolute, not relative, for a < 0 (the value is 1/2 minus tanh's
      half): relative error up to 2.1e-5 where sigmoid >= 1e-3, 1.7e-3 where >= 1e-5, 0.15
      where >= 1e-7; a <= -18.04 gives exactly 0 (true value <= 1.46e-8 = 0.25 * 2**-24). A gate
      multiplies what it lets through, so its absolute error is what reaches a result;
    - a >= 18.04 gives exactly 1 (float32 rounding of the true value is 1 from 17.33).

    Not exactly monotonic, as tanh: for a >= 0, 86865 one-ulp steps back in [1.7275021,
    16.929754]; for a < 0, steps back in [-18.030289, -1.7240375] of at most 2**-25 (half a
    unit of the absolute accuracy); none between -1.7240375 and 1.7275021.
    """
    return _HALF + _HALF * tanh_float32(_HALF * a)


def activations_for(dtype, compile):
    """The sigmoid and tanh every backend's kernels use for ``dtype``, compiled, as a dict.

    float32: the vectorisable rational approximations above; float64: the library ``exp``
    for sigmoid and :func:`tanh_float64`.

    Parameters
    ----------
    dtype : numpy dtype, float32 or float64
    compile : callable, the backend's compiler of a scalar function (``numba.njit(...)``,
        ``numba.cuda.jit(device=True)``). ``sigmoid_float32`` calls ``tanh_float32``: its copy
        is bound to tanh's compiled one (:func:`fastlstm.rebinding.rebind`).
    """
    if np.dtype(dtype) == np.float32:
        tanh_compiled = compile(tanh_float32)
        return {"sigmoid": compile(rebind(sigmoid_float32, "compiled", tanh_float32=tanh_compiled)),
                "tanh": tanh_compiled}
    return {"sigmoid": compile(sigmoid), "tanh": compile(tanh_float64)}

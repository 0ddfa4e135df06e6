"""The float32 activations of ``fastlstm.cells.activations``, compiled the way the CPU backend compiles them.

Error bounds are in units of 2**-24, the float32 spacing in [0.5, 1). The exhaustive maxima (every
float32 in [-10, 10] for tanh, [-20, 20] for sigmoid, compiled as the CPU kernels compile them) are
1.355 and 0.986 of those units; the
samples here are every float32 in windows around the places that matter plus 2 million evenly
spread values, so these tests catch a regression without walking all 2**32 values.
"""
import functools
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numba import float32, njit

from fastlstm.backends.cpu.activations import FASTMATH
from fastlstm.cells import activations

UNIT = 2.0 ** -24
TANH_BOUND = 1.5 * UNIT
SIGMOID_BOUND = 1.25 * UNIT
HALF_WINDOW = 2**18  # consecutive float32 values on each side of a window's centre


# The options of ``fastlstm.backends.cpu.activations``: inlined, IEEE division (lets the loop
# vectorise), FMA contraction (the kernels' flags, under which the bounds were measured).
OPTIONS = dict(error_model="numpy", fastmath=set(FASTMATH))


def compile_scalar(function):
    return njit(inline="always", **OPTIONS)(function)


@functools.cache
def compiled(name):
    """``tanh_float32`` or ``sigmoid_float32`` as the backends compile them (:func:`activations.activations_for`)."""
    return activations.activations_for(np.float32, compile_scalar)[name.split("_")[0]]


@functools.cache
def mapped(name):
    """A loop applying the compiled scalar function over a float32 array (what the kernels do)."""
    scalar = compiled(name)

    @njit(**OPTIONS)
    def apply(values):
        out = np.empty_like(values)
        for i in range(values.size):
            out[i] = scalar(values[i])
        return out

    return apply


def exact_tanh(values):
    return np.tanh(values.astype(np.float64))


def exact_sigmoid(values):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-values.astype(np.float64)))


CASES = {
    "tanh_float32": dict(
        exact=exact_tanh, bound=TANH_BOUND, low=-1.0,
        # 2**-12: below it tanh(x) rounds to x; 1.0518: the exhaustive maximum error; ln 3: the
        # switch between the two formulas; 0.8620: the first one-ulp step back; 9.011: float32 tanh
        # rounds to 1 beyond; 9.02: the saturation threshold.
        centres=[0.0, 2.0**-12, 1.0518492, math.log(3.0), 0.86201876, 9.0110, 9.02],
    ),
    "sigmoid_float32": dict(
        exact=exact_sigmoid, bound=SIGMOID_BOUND, low=0.0,
        # 2.4173 / -2.1037: exhaustive maxima on each side; 4 ln 3: tanh's formula switch at a/2;
        # 1.7275 / -1.7240: first step back on each side; 17.33: float32 rounds the true value to
        # 1 beyond; 18.04: saturation.
        centres=[0.0, 2.4173124, -2.1036985, 4 * math.log(3.0), 1.7275021, -1.7240375, 17.33, 18.04],
    ),
}


def window(centre):
    """Every float32 within HALF_WINDOW values of ``centre`` (same sign as ``centre``), ascending."""
    magnitude_bits = int(np.float32(abs(centre)).view(np.uint32))
    bits = np.arange(max(magnitude_bits - HALF_WINDOW, 0), magnitude_bits + HALF_WINDOW, dtype=np.uint32)
    values = bits.view(np.float32)
    return -values[::-1] if centre < 0 else values


@functools.cache
def samples(name):
    """(label, ascending float32 inputs) pairs: windows of both signs and 2e6 values in [-12, 12]."""
    pieces = []
    for centre in CASES[name]["centres"]:
        if centre == 0:
            pieces.append(("window at +0", window(0.0)))
            pieces.append(("window at -0", -window(0.0)[::-1]))
        else:
            pieces.append((f"window at {centre!r}", window(centre)))
            pieces.append((f"window at {-centre!r}", window(-centre)))
    pieces.append(("spread over [-12, 12]", np.linspace(-12, 12, 2_000_001).astype(np.float32)))
    return pieces


@functools.cache
def evaluated(name):
    apply = mapped(name)
    return [(label, values, apply(values)) for label, values in samples(name)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_absolute_error_within_bound(name):
    case = CASES[name]
    for label, values, results in evaluated(name):
        error = np.abs(results.astype(np.float64) - case["exact"](values))
        worst = int(np.argmax(error))
        assert error[worst] <= case["bound"], (
            f"{name} {label}: error {error[worst]:.3e} = {error[worst] / UNIT:.3f} * 2**-24 "
            f"at {values[worst]!r}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_results_stay_in_range(name):
    low = CASES[name]["low"]
    for label, _values, results in evaluated(name):
        assert np.all((results >= low) & (results <= 1)), f"{name} {label}"


def test_tanh_float32_is_the_identity_for_tiny_arguments_and_exactly_odd():
    tanh = mapped("tanh_float32")
    tiny = window(2.0**-12)
    tiny = tiny[tiny < 2.0**-12]
    for values in (window(0.0), tiny):  # the smallest subnormals, and up to 2**-12
        assert np.array_equal(tanh(values).view(np.uint32), values.view(np.uint32))
        assert np.array_equal(tanh(-values).view(np.uint32), (-values).view(np.uint32))
    for _, values, results in evaluated("tanh_float32"):
        assert np.array_equal(tanh(-values), -results)


@pytest.mark.parametrize("name, at_inf, at_minus_inf",
                         [("tanh_float32", 1.0, -1.0), ("sigmoid_float32", 1.0, 0.0)])
def test_special_values(name, at_inf, at_minus_inf):
    function = compiled(name)
    assert math.isnan(function(np.float32(np.nan)))
    assert function(np.float32(np.inf)) == at_inf
    assert function(np.float32(-np.inf)) == at_minus_inf
    huge = np.float32(np.finfo(np.float32).max)
    assert function(huge) == at_inf
    assert function(-huge) == at_minus_inf
    values = np.array([np.nan, np.inf, -np.inf, 1.0, np.nan], dtype=np.float32)
    results = mapped(name)(values)
    assert np.isnan(results[[0, 4]]).all() and not np.isnan(results[1:4]).any()


def test_saturation_is_exact():
    """From |a| = 9.02 (tanh) / 18.04 (sigmoid) on, results are exactly +-1 / 1 and 0, and -0 stays -0."""
    tanh, sigmoid = mapped("tanh_float32"), mapped("sigmoid_float32")
    beyond = np.linspace(9.02, 200, 100_001).astype(np.float32)
    assert np.all(tanh(beyond) == 1) and np.all(tanh(-beyond) == -1)
    assert np.all(sigmoid(2 * beyond) == 1) and np.all(sigmoid(-2 * beyond) == 0)
    assert tanh(np.array([-0.0], dtype=np.float32)).view(np.uint32)[0] == 0x80000000


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_code_stays_float32_and_vectorises(name):
    function = compiled(name)
    function(np.float32(0.5))
    assert [signature.return_type for signature in function.nopython_signatures] == [float32]
    apply = mapped(name)
    values = np.linspace(-3, 3, 64).astype(np.float32)
    assert apply(values).dtype == np.float32
    ir = apply.inspect_llvm(apply.signatures[0])
    assert re.search(r"fdiv (?:[a-z]+ )*<\d+ x float>", ir), "the loop was not vectorised"
    assert not re.search(r"\bdouble\b", ir), "a float64 operation crept in (a Python float constant?)"
    assert not re.search(r"@(?:llvm\.)?(?:tanh|exp)", ir), "a library call crept in"


def test_the_cell_math_loops_vectorise_with_the_widest_registers():
    """``widest_vectors()`` marks a function so that its loops use the host's widest SIMD registers
    (512-bit with AVX-512, where LLVM's own choice is 256-bit), with the same results."""
    from fastlstm.backends.cpu.activations import widest_vectors
    from fastlstm.backends.cpu.tiles import VECTOR_BYTES

    tanh = compiled("tanh_float32")

    def apply(values, out):
        for i in range(values.size):
            out[i] = tanh(values[i])

    def apply_wide(values, out):
        widest_vectors()
        for i in range(values.size):
            out[i] = tanh(values[i])

    values = np.linspace(-12, 12, 4099).astype(np.float32)
    results = []
    for function in (apply, apply_wide):
        compiled_function = njit(**OPTIONS)(function)
        out = np.empty_like(values)
        compiled_function(values, out)
        results.append(out)
        assembly = compiled_function.inspect_asm(compiled_function.signatures[0])
        if function is apply_wide and VECTOR_BYTES == 64:
            assert re.search(r"vdivps\s+%zmm", assembly), "the marked loop did not use 512-bit registers"
    np.testing.assert_array_equal(results[0], results[1])


def drops(values, results):
    """For an ascending input, how far each result falls below its predecessor (0 where it does not)."""
    step = results[:-1].astype(np.float64) - results[1:].astype(np.float64)
    return np.maximum(step, 0.0)


def float32_ulp(results):
    """Spacing of float32 values at each result (the smallest normal spacing for zeros)."""
    return np.spacing(np.maximum(np.abs(results), np.finfo(np.float32).tiny))


def test_tanh_float32_monotonicity():
    """Not exactly monotonic: float32 rounding noise steps back by one ulp near rounding boundaries.

    Exhaustively over [-10, 10]: 174010 such steps for x in [0.86201876, 9.015144] (and mirrored),
    each exactly one ulp; none between -0.86201876 and 0.86201876.
    """
    for label, values, results in evaluated("tanh_float32"):
        fall = drops(values, results)
        assert np.all(fall <= float32_ulp(results[1:])), label
        first = np.float32(0.86201876)  # the pairs (0.86201876 - ulp, 0.86201876) and its mirror
        inner = (values[:-1] > -first) & (values[1:] < first)
        assert not np.any(fall[inner]), label


def test_sigmoid_float32_monotonicity():
    """Not exactly monotonic. Exhaustively over [-20, 20]: for a >= 0, 86865 one-ulp steps back,
    all in [1.7275, 16.930]; for a < 0, 174010 steps back in [-18.031, -1.7240], because there the
    accuracy is absolute (values 1/2 + tanh(a/2)/2): each at most 2**-25, many ulps of the small
    values there. None between -1.7240375 and 1.7275021.
    """
    for label, values, results in evaluated("sigmoid_float32"):
        fall = drops(values, results)
        positive = values[1:] >= 0
        assert np.all(fall[positive] <= float32_ulp(results[1:])[positive]), label
        assert np.all(fall[~positive] <= 2.0**-25), label
        inner = (values[:-1] > np.float32(-1.7240375)) & (values[1:] < np.float32(1.7275021))
        assert not np.any(fall[inner]), label


@given(st.floats(width=32, allow_nan=True, allow_infinity=True))
def test_any_float32(value):
    argument = np.float32(value)
    for name, case in CASES.items():
        result = compiled(name)(argument)
        if math.isnan(value):
            assert math.isnan(result)
            continue
        assert case["low"] <= result <= 1
        if math.isfinite(value):
            assert abs(result - case["exact"](np.array([argument]))[0]) <= case["bound"]


def test_exact_functions_in_float64():
    values = np.random.default_rng(0).uniform(-20, 20, 20_000)
    values = np.concatenate([values, [0.0, 1e-300, -1e-300, 1e-8, -1e-8, 700.0, -700.0]])

    sigmoid = compile_scalar(activations.sigmoid)
    tanh = compile_scalar(activations.tanh)

    @njit(**OPTIONS)
    def apply(function_values, which):
        out = np.empty_like(function_values)
        for i in range(function_values.size):
            out[i] = sigmoid(function_values[i]) if which == 0 else tanh(function_values[i])
        return out

    with np.errstate(over="ignore"):
        expected_sigmoid = 1.0 / (1.0 + np.exp(-values))
    for which, expected in ((0, expected_sigmoid), (1, np.tanh(values))):
        results = apply(values, which)
        assert results.dtype == np.float64
        scale = np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
        assert np.max(np.abs(results - expected) / scale) <= 1e-15


def test_tanh_float64_within_two_ulp_of_numpy():
    rng = np.random.default_rng(2)
    switch = 0.5
    values = np.concatenate([
        rng.uniform(-20, 20, 200_000), rng.uniform(-0.6, 0.6, 200_000),
        np.linspace(switch - 1e-3, switch + 1e-3, 20_001), -np.linspace(switch - 1e-3, switch + 1e-3, 2001),
        [0.0, 1e-300, -1e-300, 5e-324, 1e-8, 710.0, -710.0]])
    tanh = compile_scalar(activations.tanh_float64)

    @njit(**OPTIONS)
    def apply(arguments):
        out = np.empty_like(arguments)
        for i in range(arguments.size):
            out[i] = tanh(arguments[i])
        return out

    results, expected = apply(values), np.tanh(values)
    ulps = np.abs(results - expected) / np.spacing(np.abs(expected))
    assert ulps.max() <= 2.0
    assert np.array_equal(apply(-values), -results)
    specials = apply(np.array([np.nan, np.inf, -np.inf, -0.0]))
    assert np.isnan(specials[0]) and specials[1] == 1.0 and specials[2] == -1.0
    assert specials[3] == 0.0 and np.signbit(specials[3])

"""Hypothesis properties: the cpu backend against the float64 reference."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support import (CELL_VARIANTS, LOOP_STRATEGIES, assert_matches_reference, loop_strategy,
                     make_problem, run)

sizes = st.integers(1, 6)


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
@given(
    steps=st.integers(1, 8), batch=sizes, inputs=sizes, hidden=sizes,
    dtype=st.sampled_from([np.float32, np.float64]),
    x_scale=st.sampled_from([0.1, 1.0, 30.0, 300.0]),
    param_scale=st.sampled_from([1.0, 3.0]),
    with_state=st.booleans(), with_dstate=st.booleans(), batch_first=st.booleans(),
    seed=st.integers(0, 2**32 - 1), loop=st.sampled_from(LOOP_STRATEGIES),
)
def test_cpu_matches_reference(variant, steps, batch, inputs, hidden, dtype, x_scale, param_scale,
                               with_state, with_dstate, batch_first, seed, loop):
    problem = make_problem(variant, steps, batch, inputs, hidden, dtype, seed, x_scale=x_scale,
                           param_scale=param_scale, with_state=with_state, with_dstate=with_dstate,
                           batch_first=batch_first)
    naive = run(problem, "reference-float32") if dtype == np.float32 else None
    with loop_strategy(loop):
        result = run(problem, "cpu")
    assert_matches_reference(result, run(problem, "reference"), dtype, naive)


def test_zero_length_sequence_returns_the_initial_state():
    problem = make_problem("lstm", 0, 3, 2, 4, np.float64, seed=1)
    result, expected = run(problem, "cpu"), run(problem, "reference")
    assert result["y"].shape == (0, 3, 4)
    np.testing.assert_array_equal(result["final[0]"], problem["state"][0])
    assert_matches_reference(result, expected, np.float64)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's GEMMs report the overflow
def test_relu_overflow_becomes_inf_in_float32_without_raising():
    """A relu RNN whose pre-activations exceed float32's range gives IEEE inf, and no exception."""
    problem = make_problem("rnn_relu", 3, 2, 3, 4, np.float32, seed=5, with_state=False)
    problem["params"] = {k: np.abs(v) for k, v in problem["params"].items()}  # nothing cancels
    problem["params"]["weight_ih_l0"][:] = 1.0
    problem["x"] = np.full_like(problem["x"], 3e38)      # finite in float32; W_ih x = 9e38 is not
    result, expected = run(problem, "cpu"), run(problem, "reference")
    assert np.all(expected["y"] > np.finfo(np.float32).max)
    assert np.isposinf(result["y"]).all()
    assert not np.isfinite(result["grad[weight_hh_l0]"]).all()   # it multiplies the infinite states


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
@settings(max_examples=max(4, settings().max_examples // 4))
@given(
    steps=st.integers(1, 4), batch=st.integers(1, 40), hidden=st.integers(7, 40),
    dtype=st.sampled_from([np.float32, np.float64]),
    x_scale=st.sampled_from([1.0, 30.0]), seed=st.integers(0, 2**32 - 1), loop=st.sampled_from(LOOP_STRATEGIES),
)
def test_cpu_matches_reference_on_wide_layers(variant, steps, batch, hidden, dtype, x_scale, seed, loop):
    """Hidden sizes that fill the vectorised gate loops and several panels of the projections'
    tiles (and their remainders), batches of many tiles of rows."""
    problem = make_problem(variant, steps, batch, 5, hidden, dtype, seed, x_scale=x_scale,
                           with_state=True, with_dstate=True)
    naive = run(problem, "reference-float32") if dtype == np.float32 else None
    with loop_strategy(loop):
        result = run(problem, "cpu")
    assert_matches_reference(result, run(problem, "reference"), dtype, naive)

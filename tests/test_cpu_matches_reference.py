"""Hypothesis properties: the cpu backend against the float64 reference."""
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from support import (BLAS_LIBRARIES, CELL_VARIANTS, LOOP_STRATEGIES, assert_matches_reference,
                     loop_strategy, make_problem, run)

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
# a few terms through a saturated tanh: a draw of float32 rounding far from the naive one's
@example(steps=8, batch=1, inputs=1, hidden=1, dtype=np.float32, x_scale=300.0, param_scale=3.0, with_state=False,
         with_dstate=False, batch_first=False, seed=1, loop="auto")
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
    steps=st.integers(1, 4), batch=st.integers(1, 40), inputs=st.integers(1, 40), hidden=st.integers(7, 40),
    dtype=st.sampled_from([np.float32, np.float64]),
    x_scale=st.sampled_from([1.0, 30.0]), seed=st.integers(0, 2**32 - 1), loop=st.sampled_from(LOOP_STRATEGIES),
)
def test_cpu_matches_reference_on_wide_layers(variant, steps, batch, inputs, hidden, dtype, x_scale, seed, loop):
    """Hidden sizes that fill the vectorised gate loops and several panels of the projections'
    tiles (and their remainders), batches of many tiles of rows, inputs on both sides of one
    SIMD vector (dx by BLAS, or by the tile kernel)."""
    problem = make_problem(variant, steps, batch, inputs, hidden, dtype, seed, x_scale=x_scale,
                           with_state=True, with_dstate=True)
    naive = run(problem, "reference-float32") if dtype == np.float32 else None
    with loop_strategy(loop):
        result = run(problem, "cpu")
    assert_matches_reference(result, run(problem, "reference"), dtype, naive)


@pytest.mark.parametrize("library", BLAS_LIBRARIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("whole_vector", [False, True], ids=["dx-by-blas", "dx-by-tiles"])
@pytest.mark.parametrize("variant", ["lstm", "gru"])
def test_dx_of_inputs_short_of_and_filling_one_simd_vector(variant, whole_vector, dtype, library):
    """dx of a layer whose inputs fill less than one SIMD vector comes from BLAS on weight_ih as
    stored, of a wider one from the tile kernel on weight_ih packed: both directions (the reverse
    one adds its dx at each sequence's own reverse time), padded sequences, two segments; the
    weight gradients from BLAS too, either library (tuning's ``cpu_blas``)."""
    from fastlstm import tuning
    from fastlstm.backends.cpu.tiles import lanes

    inputs = lanes(dtype) - 1 + int(whole_vector)
    problem = make_problem(variant, 7, 4, inputs, 9, dtype, seed=inputs, bidirectional=True,
                           lengths=np.array([7, 2, 0, 5]))
    naive = run(problem, "reference-float32") if dtype == np.float32 else None
    # segments of 4 steps, products of 4 blocks
    with tuning.override(segment_rows=16, segment_bytes=0, gemm_rows=4, cpu_blas=library):
        result = run(problem, "cpu")
    assert_matches_reference(result, run(problem, "reference"), dtype, naive)


@pytest.mark.parametrize("library", BLAS_LIBRARIES[1:])      # MKL (skipped where it is not installed)
@pytest.mark.parametrize("variant", ["lstm", "lstm_peephole", "gru_reset_before", "rnn_tanh"])
def test_input_projections_on_mkl(variant, library):
    """Input projections (with their bias) of a wide layer on MKL's GEMM instead of the tile
    kernel (:func:`fastlstm.backends.cpu.gemm.on_blas`, here for every one): a training call, both
    directions, padded sequences, two segments of products in 4 blocks of rows; and a prepared
    inference call (its projections run by the compiled direction), against the reference."""
    from fastlstm import functional, tuning
    from support import with_backend

    problem = make_problem(variant, 7, 4, 33, 19, np.float32, seed=3, bidirectional=True,
                           lengths=np.array([7, 2, 0, 5]))
    naive = run(problem, "reference-float32")
    blas_everywhere = dict(cpu_blas=library, mkl_product_rows=1, mkl_product_side=1, segment_rows=16,
                           segment_bytes=0, gemm_rows=4)
    with tuning.override(**blas_everywhere):
        result = run(problem, "cpu")
    assert_matches_reference(result, run(problem, "reference"), np.float32, naive)
    config, params, x = problem["config"], problem["params"], problem["x"]
    expected, _, _ = functional.forward(with_backend(config, "reference"), params, x, problem["state"], tape=False)
    with tuning.override(**blas_everywhere):
        for _ in range(2):          # the second call served by the prepared entry
            y, _, _ = functional.forward(config, params, x, problem["state"], tape=False)
            np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("library", BLAS_LIBRARIES[1:])      # MKL (skipped where it is not installed)
def test_input_projections_on_mkl_in_float64_through_a_stack(library):
    """MKL's ``dgemm`` where it is forced (``cpu_blas='mkl'``), a second layer projecting the first's
    two directions, batch-first input: against the reference."""
    from fastlstm import tuning

    problem = make_problem("lstm", 6, 3, 20, 11, np.float64, seed=1, bidirectional=True, num_layers=2,
                           batch_first=True, lengths=np.array([6, 1, 4]))
    with tuning.override(cpu_blas=library, mkl_product_rows=1, mkl_product_side=1, segment_rows=8, segment_bytes=0,
                         gemm_rows=2):
        result = run(problem, "cpu")
    assert_matches_reference(result, run(problem, "reference"), np.float64)


@pytest.mark.parametrize("loop", ["single", "units", "units-regions"])
@pytest.mark.parametrize("hidden", [23, 37])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
def test_units_past_the_last_whole_vector(variant, dtype, hidden, loop):
    """A block whose units end inside a SIMD vector runs them as one more whole vector that
    recomputes some units (forward, and the backward's first phase): each must still be right,
    with the in-loop regularisers too. Units blocks of 16 units split 37 into 16 + 21."""
    from dataclasses import replace

    from fastlstm import functional, tuning
    from fastlstm.regularisation import make_regularisation
    from support import state_parts, with_backend

    problem = make_problem(variant, 5, 3, 4, hidden, dtype, seed=hidden, bidirectional=True)
    naive = run(problem, "reference-float32") if dtype == np.float32 else None
    with loop_strategy(loop), tuning.override(step_units=16):
        result = run(problem, "cpu")
    assert_matches_reference(result, run(problem, "reference"), dtype, naive)

    rates = dict(recurrent_dropout=0.3, zoneout=0.3, **({"zoneout_cell": 0.4} if variant.startswith("lstm") else {}))
    args = (problem["params"], problem["x"], problem["state"])
    reference = replace(with_backend(problem["config"], "reference"),
                        regularisation=make_regularisation(problem["config"].cell, **rates))
    y, final, tape = functional.forward(reference, *args, training=True, rng=np.random.default_rng(3))
    expected = functional.backward(tape, problem["dy"], problem["dstate"])
    cpu = replace(problem["config"], regularisation=reference.regularisation)
    with loop_strategy(loop), tuning.override(step_units=16):
        y_cpu, final_cpu, tape_cpu = functional.forward(cpu, *args, masks=tape.masks)
        got = functional.backward(tape_cpu, problem["dy"], problem["dstate"])
    tolerance = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    pairs = [(y_cpu, y), *zip(state_parts(final_cpu), state_parts(final)), (got[0], expected[0]),
             *zip(state_parts(got[1]), state_parts(expected[1])), *((got[2][n], expected[2][n]) for n in expected[2])]
    for index, (g, e) in enumerate(pairs):
        np.testing.assert_allclose(g, e, err_msg=f"output {index}", **tolerance)

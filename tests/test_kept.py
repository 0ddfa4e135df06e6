"""Training calls' setups kept per thread and shape (fastlstm.backends.cpu.kept): every call still
answers for the parameters, input and tape it is given."""
import numpy as np
import pytest

from fastlstm import buffers, functional, tuning
from fastlstm.backends.cpu import kept

from support import CELL_VARIANTS, assert_matches_reference, loop_strategy, make_problem, run, run_in_threads


def _assert_training_matches_reference(problem):
    result = run(problem, "cpu")
    assert_matches_reference(result, run(problem, "reference"), problem["config"].dtype)
    return result


def _with(problem, **changes):
    return dict(problem, **changes)


@pytest.mark.parametrize("loop", ["auto", "sequences", "units"])
@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
def test_repeated_training_calls_answer_for_their_own_parameters_and_input(variant, loop):
    problem = make_problem(variant, 9, 3, 4, 16, np.float32, seed=21, bidirectional=True)
    rng = np.random.default_rng(22)
    kept.clear()
    with loop_strategy(loop):
        first = _assert_training_matches_reference(problem)
        copies = {name: value.copy() for name, value in first.items()}
        for _ in range(2):
            # new values in the same parameter arrays (an optimiser's step), and a new input
            for value in problem["params"].values():
                value += (0.1 * rng.standard_normal(value.shape)).astype(value.dtype)
            x = rng.standard_normal(problem["x"].shape).astype(np.float32)
            _assert_training_matches_reference(_with(problem, x=x))
    for name, value in first.items():    # nothing returned is a buffer a later call reuses
        np.testing.assert_array_equal(value, copies[name], err_msg=name)


def test_a_tape_used_after_later_forwards_answers_for_its_own_forward():
    problem = make_problem("lstm_peephole", 12, 4, 5, 16, np.float32, seed=23, num_layers=2, bidirectional=True)
    config, params = problem["config"], problem["params"]
    other_x = np.random.default_rng(24).standard_normal(problem["x"].shape).astype(np.float32)
    other_params = {name: (0.5 * value).astype(np.float32) for name, value in params.items()}
    kept.clear()
    _, _, tape = functional.forward(config, params, problem["x"], problem["state"])
    for later_params, later_x in [(other_params, other_x), (params, other_x)]:     # the same shape: the same setups
        _, _, later = functional.forward(config, later_params, later_x, problem["state"])
        functional.backward(later, problem["dy"], problem["dstate"])
    dx, dstate0, grads, _ = functional.backward(tape, problem["dy"], problem["dstate"])
    expected = run(problem, "reference")
    result = {"dx": dx, **{f"grad[{name}]": value for name, value in grads.items()},
              **{f"dstate0[{k}]": value for k, value in enumerate(dstate0)}}
    assert_matches_reference(result, {name: expected[name] for name in result}, np.float32)


def test_shapes_lengths_and_regularisers_between_calls_of_one_shape():
    problem = make_problem("gru", 10, 4, 3, 16, np.float32, seed=25, bidirectional=True)
    rng = np.random.default_rng(26)
    kept.clear()
    _assert_training_matches_reference(problem)
    shorter = make_problem("gru", 7, 2, 3, 16, np.float32, seed=27, bidirectional=True)
    _assert_training_matches_reference(_with(shorter, params=problem["params"]))
    lengths = rng.integers(0, 11, size=4)
    _assert_training_matches_reference(_with(problem, lengths=lengths))
    _assert_training_matches_reference(problem)


def test_threads_training_at_once_each_get_their_own_answer():
    problems = [make_problem("lstm", 15, 3, 4, 16, np.float32, seed=seed) for seed in range(30, 34)]

    def work(problem):
        for _ in range(3):
            _assert_training_matches_reference(problem)

    run_in_threads(work, problems)


def test_a_thread_keeps_at_most_prepared_calls_setups_their_buffers_within_kept_setup_bytes():
    problem = make_problem("rnn_tanh", 6, 2, 3, 8, np.float32, seed=35)
    rng = np.random.default_rng(36)
    shapes = [(5, 2), (9, 1), (4, 3), (5, 2), (7, 2)]
    kept.clear()
    with tuning.override(prepared_calls=2):
        for steps, batch in shapes:
            x = rng.standard_normal((steps, batch, 3)).astype(np.float32)
            dy = rng.standard_normal((steps, batch, 8)).astype(np.float32)
            _assert_training_matches_reference(_with(problem, x=x, dy=dy, state=None, dstate=None))
            assert len(kept._setups()) <= 2
    kept.clear()
    _assert_training_matches_reference(problem)
    sizes = sorted(setup.kept_scratch.nbytes for setup in kept._setups().values())
    assert len(sizes) == 2 and all(size > 0 for size in sizes)      # its forward's and its backward's
    for limit, count in [(sizes[1], 2), (sizes[1] - 1, 1 if sizes[0] < sizes[1] else 0), (sizes[0] - 1, 0)]:
        kept.clear()
        with tuning.override(kept_setup_bytes=limit):
            for _ in range(2):      # the second call on what the first kept, or on new buffers
                result = _assert_training_matches_reference(problem)
                setups = kept._setups().values()
                assert len(setups) == 2, limit
                assert sum(setup.kept_scratch is not None for setup in setups) == count, limit
                assert all(setup.kept_scratch.nbytes <= limit for setup in setups if setup.kept_scratch is not None)
    again = _assert_training_matches_reference(problem)
    for name in result:                           # buffers kept or new every call: the same bits
        np.testing.assert_array_equal(result[name], again[name], err_msg=name)


def test_a_large_setup_holds_no_buffers_between_calls():
    problem = make_problem("lstm", 40, 16, 32, 128, np.float32, seed=39)   # scratch and weights over 1 MiB
    kept.clear()
    leased = buffers.statistics()["leased_bytes"]
    for _ in range(2):
        _assert_training_matches_reference(problem)
        assert len(kept._setups()) == 2
        assert all(setup.kept_scratch is None for setup in kept._setups().values())
        assert buffers.statistics()["leased_bytes"] == leased     # every buffer of the calls back in the pool


def test_the_held_units_loop_falls_back_to_regions_when_threads_drop():
    from numba import get_num_threads, set_num_threads

    if get_num_threads() < 2:
        pytest.skip("needs two Numba threads")
    problem = make_problem("lstm", 8, 2, 3, 32, np.float32, seed=37)
    config = problem["config"]
    kept.clear()
    with loop_strategy("units"):
        expected = _assert_training_matches_reference(problem)
        threads = get_num_threads()
        _, _, tape = functional.forward(config, problem["params"], problem["x"], problem["state"])
        set_num_threads(1)
        try:
            dx, _, grads, _ = functional.backward(tape, problem["dy"], problem["dstate"])
        finally:
            set_num_threads(threads)
    np.testing.assert_array_equal(dx, expected["dx"])
    for name, value in grads.items():
        np.testing.assert_array_equal(value, expected[f"grad[{name}]"], err_msg=name)


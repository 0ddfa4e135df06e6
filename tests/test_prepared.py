"""Inference calls prepared once and reused (fastlstm.backends.cpu.prepared): every call still
answers for the parameters and input it is given."""
import numpy as np
import pytest

from fastlstm import functional, tuning
from fastlstm.backends.cpu import prepared
from fastlstm.backends.cpu.digest import LANES

from support import CELL_VARIANTS, assert_matches_reference, make_problem, run_in_threads, state_parts, with_backend


def _inference(config, params, x, state=None):
    y, final, _ = functional.forward(config, params, x, state, tape=False)
    return {"y": y, **{f"final[{k}]": s for k, s in enumerate(state_parts(final))}}


def _assert_matches_reference(config, params, x, state=None):
    result = _inference(config, params, x, state)
    expected = _inference(with_backend(config, "reference"), params, x, state)
    assert_matches_reference(result, expected, config.dtype)
    return result


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
def test_repeated_calls_answer_for_their_own_input(variant, dtype):
    problem = make_problem(variant, 7, 3, 5, 12, dtype, seed=1, num_layers=2, bidirectional=True)
    config, params = problem["config"], problem["params"]
    rng = np.random.default_rng(2)
    first = _assert_matches_reference(config, params, problem["x"], problem["state"])
    kept = {name: value.copy() for name, value in first.items()}
    for _ in range(2):
        x = rng.standard_normal(problem["x"].shape).astype(dtype)
        _assert_matches_reference(config, params, x, problem["state"])
    for name, value in first.items():   # nothing returned is a buffer a later call reuses
        np.testing.assert_array_equal(value, kept[name], err_msg=name)


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
def test_parameters_changed_in_place_are_packed_again(variant):
    problem = make_problem(variant, 6, 2, 4, 16, np.float32, seed=3)
    config, params, x = problem["config"], problem["params"], problem["x"]
    before = _assert_matches_reference(config, params, x)["y"]
    for name in params:                  # in place: the same arrays, other values
        params[name] *= np.float32(0.5)
        params[name] += np.float32(0.01)
    after = _assert_matches_reference(config, params, x)["y"]
    assert not np.allclose(before, after)
    params[sorted(params)[-1]][0] = np.nan     # one value changed; NaN must reach the result
    assert np.isnan(_inference(config, params, x)["y"]).any()


def test_one_value_changed_in_place_in_a_large_weight_is_seen():
    problem = make_problem("lstm", 4, 2, 8, 128, np.float32, seed=12)   # weight_hh 256 KiB
    config, params, x = problem["config"], problem["params"], problem["x"]
    prepared.clear()
    before = _assert_matches_reference(config, params, x)["y"]
    params["weight_hh_l0"][300, 77] += np.float32(5.0)                  # deep inside, one value
    after = _assert_matches_reference(config, params, x)["y"]
    assert not np.array_equal(before[1:], after[1:])


def test_changes_in_place_that_a_weak_digest_would_cancel_are_seen():
    problem = make_problem("lstm", 4, 2, 8, 64, np.float32, seed=13)
    config, params, x = problem["config"], problem["params"], problem["x"]
    prepared.clear()
    results = [_assert_matches_reference(config, params, x)["y"]]
    weight = params["weight_hh_l0"].reshape(-1)
    lane_apart = 2 * LANES                     # two float32 values a word, LANES lanes in a part
    weight[[3, 3 + lane_apart]] *= np.float32(-1)      # the top bits of two words of one lane
    results.append(_assert_matches_reference(config, params, x)["y"])
    weight[[8, 8 + lane_apart]] = weight[[8 + lane_apart, 8]]   # two values of one lane swapped
    results.append(_assert_matches_reference(config, params, x)["y"])
    assert all(not np.array_equal(a[1:], b[1:]) for a, b in zip(results, results[1:]))


def test_the_last_value_of_a_parameter_of_an_odd_number_of_words_changed_in_place_is_seen():
    problem = make_problem("gru", 5, 2, 3, 5, np.float32, seed=14)      # bias_ih 15 values: 7 words and 4 bytes
    config, params, x = problem["config"], problem["params"], problem["x"]
    prepared.clear()
    before = _assert_matches_reference(config, params, x)["y"]
    params["bias_ih_l0"][-1] += np.float32(1.0)    # folded into the bias the input projection adds
    after = _assert_matches_reference(config, params, x)["y"]
    assert not np.array_equal(before, after)


def test_an_entry_per_shape_and_at_most_prepared_calls():
    problem = make_problem("lstm", 5, 2, 3, 8, np.float32, seed=4)
    config, params = problem["config"], problem["params"]
    rng = np.random.default_rng(5)
    prepared.clear()
    with tuning.override(prepared_calls=2):
        for steps, batch in [(5, 2), (9, 1), (4, 3), (5, 2), (9, 1)]:
            x = rng.standard_normal((steps, batch, 3)).astype(np.float32)
            _assert_matches_reference(config, params, x)
            assert len(prepared._entries()) <= 2
    prepared.clear()
    assert len(prepared._entries()) == 0


def test_the_entries_of_a_thread_hold_at_most_prepared_bytes_together():
    problem = make_problem("lstm", 6, 2, 3, 8, np.float32, seed=9)
    config, params = problem["config"], problem["params"]
    rng = np.random.default_rng(9)
    inputs = [rng.standard_normal((steps, batch, 3)).astype(np.float32) for steps, batch in [(30, 2), (20, 3)]]
    prepared.clear()
    for x in inputs:
        _assert_matches_reference(config, params, x)
    sizes = [entry.nbytes for entry in prepared._entries().values()]
    assert len(sizes) == 2 and all(size > 0 for size in sizes)
    for budget, kept in [(sum(sizes), 2), (sum(sizes) - 1, 1), (min(sizes) - 1, 0)]:
        prepared.clear()
        with tuning.override(prepared_bytes=budget):
            for x in inputs:
                _assert_matches_reference(config, params, x)
            entries = prepared._entries()
            assert len(entries) == kept, budget
            assert sum(entry.nbytes for entry in entries.values()) <= budget
            if kept == 1:   # the most recent call's
                assert list(entries.values())[0].output_shape[:2] == inputs[1].shape[:2]


def test_too_large_or_disabled_is_built_every_call_with_the_same_bits():
    problem = make_problem("gru", 8, 4, 6, 24, np.float32, seed=6, bidirectional=True)
    config, params, x = problem["config"], problem["params"], problem["x"]
    prepared.clear()
    kept = _inference(config, params, x)
    assert len(prepared._entries()) == 1
    prepared.clear()
    with tuning.override(prepared_bytes=0):
        built = _inference(config, params, x)
        assert len(prepared._entries()) == 0
    for name in kept:
        np.testing.assert_array_equal(built[name], kept[name], err_msg=name)


def test_a_knob_changed_between_calls_is_honoured():
    problem = make_problem("lstm", 6, 4, 3, 20, np.float32, seed=7)
    config, params, x = problem["config"], problem["params"], problem["x"]
    prepared.clear()
    for loop in ("single", "units", "sequences"):
        with tuning.override(cpu_loop=loop, batch_rows=1):
            _assert_matches_reference(config, params, x)
    assert len(prepared._entries()) == 3


@pytest.mark.parametrize("loop", ["single", "units", "sequences"])
def test_segments_and_parallel_projection_blocks_of_every_direction_and_layer(loop):
    problem = make_problem("lstm", 23, 4, 5, 9, np.float32, seed=13, num_layers=2, bidirectional=True)
    config, params, x, state = problem["config"], problem["params"], problem["x"], problem["state"]
    prepared.clear()
    # several segments (the reverse direction's inputs gathered per segment), each projection in
    # several blocks run in a parallel region, several blocks of rows or units
    with tuning.override(cpu_loop=loop, batch_rows=1, segment_rows=8, segment_bytes=0, gemm_rows=4,
                         parallel_flops=0):
        for call_state in (None, state):
            _assert_matches_reference(config, params, x, call_state)
            assert prepared.serve(config, params, x, call_state) is not None


def test_threads_calling_at_once_each_get_their_own_answer():
    problem = make_problem("lstm_peephole", 20, 2, 4, 16, np.float32, seed=8)
    config, params = problem["config"], problem["params"]
    inputs = [np.random.default_rng(seed).standard_normal((20, 2, 4)).astype(np.float32) for seed in range(4)]

    def work(x):
        for _ in range(5):
            _assert_matches_reference(config, params, x)

    run_in_threads(work, inputs)


@pytest.mark.parametrize("options", [dict(batch_first=True), dict(bias=False), dict(num_layers=3, bidirectional=True)],
                         ids=["batch_first", "no_bias", "3_layers_bidirectional"])
@pytest.mark.parametrize("variant", ["lstm", "gru"])
def test_conforming_calls_are_served_before_conversion_and_match_the_reference(variant, options):
    problem = make_problem(variant, 9, 3, 5, 12, np.float32, seed=9, **options)
    config, params, x, state = problem["config"], problem["params"], problem["x"], problem["state"]
    prepared.clear()
    for call_state in (None, state):
        first = _assert_matches_reference(config, params, x, call_state)
        served = prepared.serve(config, params, x, call_state)     # what the next call runs
        assert served is not None
        again = _assert_matches_reference(config, params, x, call_state)
        for name in first:
            np.testing.assert_array_equal(again[name], first[name], err_msg=name)


def _expect_rejected(config, params, x, state, error, match):
    with pytest.raises(error, match=match):
        functional.forward(config, params, x, state, tape=False)


def test_a_served_call_rejects_what_the_general_path_rejects():
    lstm = make_problem("lstm", 6, 2, 4, 8, np.float32, seed=10)
    gru = make_problem("gru", 6, 2, 4, 8, np.float32, seed=10)
    prepared.clear()
    for problem in (lstm, gru):
        _inference(problem["config"], problem["params"], problem["x"], problem["state"])
        assert prepared.serve(problem["config"], problem["params"], problem["x"], problem["state"]) is not None
    _expect_rejected(gru["config"], gru["params"], gru["x"], (gru["state"],), TypeError, "expected one array")
    _expect_rejected(lstm["config"], lstm["params"], lstm["x"], lstm["state"][0], TypeError, "pair")
    _expect_rejected(lstm["config"], lstm["params"], lstm["x"], (lstm["state"][0][:, :1], lstm["state"][1]),
                     ValueError, r"state\[0\]")
    _expect_rejected(lstm["config"], dict(lstm["params"], extra=np.zeros(3, np.float32)), lstm["x"], None,
                     ValueError, "unexpected")
    params = dict(lstm["params"])
    weight = params["weight_hh_l0"]
    weight.shape = weight.shape[::-1]            # in place: the same object and bytes, another shape
    _expect_rejected(lstm["config"], params, lstm["x"], None, ValueError, "weight_hh_l0")


@pytest.mark.parametrize("convert", ["float64", "strided", "list"])
def test_arguments_converted_first_are_prepared_once(convert):
    problem = make_problem("lstm", 7, 3, 4, 10, np.float32, seed=11)
    config, params, x = problem["config"], problem["params"], problem["x"]
    given = {"float64": x.astype(np.float64), "strided": np.repeat(x, 2, axis=2)[:, :, ::2],
             "list": x.tolist()}[convert]
    prepared.clear()
    for _ in range(3):
        assert prepared.serve(config, params, given, None) is None
        _assert_matches_reference(config, params, given)
    assert len(prepared._entries()) == 1


def test_a_held_units_loop_is_rebuilt_when_the_threads_no_longer_allow_it():
    """An entry whose units loop holds its blocks at a barrier (one thread each) is run only while
    as many threads run at once: with one Numba thread it is built again, on a region per phase,
    the same bits (a held loop run on one thread would wait at its first barrier for ever)."""
    import numba

    from fastlstm.backends.cpu.strategy import held_threads

    if held_threads() < 2:
        pytest.skip("needs two Numba threads")
    problem = make_problem("gru", 7, 3, 4, 32, np.float32, seed=15)
    config, params, x = problem["config"], problem["params"], problem["x"]
    before = numba.get_num_threads()
    prepared.clear()
    with tuning.override(cpu_loop="units", step_units=8):
        held = _assert_matches_reference(config, params, x)["y"]
        entry = next(iter(prepared._entries().values()))
        assert entry.held_blocks == 2
        try:
            numba.set_num_threads(1)
            alone = _assert_matches_reference(config, params, x)["y"]
            assert next(iter(prepared._entries().values())).held_blocks == 0
        finally:
            numba.set_num_threads(before)
    np.testing.assert_array_equal(alone, held)

"""Stacks, directions, variable lengths, batch_first and states in and out (PyTorch's packed
sequences / ONNX's sequence_lens semantics, the README's Contract), on every backend against the reference."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastlstm import functional, tuning
from support import (CELL_VARIANTS, LOOP_STRATEGIES, assert_matches_reference, loop_strategy, make_problem,
                     numeric_gradient, run, state_parts, with_backend)


@st.composite
def sequence_problems(draw, variant):
    steps, batch = draw(st.integers(1, 7)), draw(st.integers(1, 5))
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(0, steps), min_size=batch, max_size=batch)))
    return dict(
        variant=variant, steps=steps, batch=batch, inputs=draw(st.integers(1, 4)),
        hidden=draw(st.integers(1, 5)), dtype=draw(st.sampled_from([np.float32, np.float64])),
        seed=draw(st.integers(0, 2**32 - 1)), x_scale=draw(st.sampled_from([0.3, 1.0, 30.0])),
        with_state=draw(st.booleans()), with_dstate=draw(st.booleans()),
        lengths=None if lengths is None else np.array(lengths),
        num_layers=draw(st.integers(1, 3)), bidirectional=draw(st.booleans()),
        batch_first=draw(st.booleans()),
    )


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
@given(data=st.data())
def test_cpu_matches_reference_with_every_sequence_option(variant, data):
    """Also over the segment length (one step per segment, a few, or all at once) and the loop
    strategy."""
    options = data.draw(sequence_problems(variant))
    segment_rows = data.draw(st.sampled_from([1, 3, 8, 2048]))
    problem = make_problem(**options)
    dtype = options["dtype"]
    naive = run(problem, "reference-float32") if dtype == np.float32 else None
    with tuning.override(segment_rows=segment_rows, segment_bytes=0), loop_strategy(data.draw(
            st.sampled_from(LOOP_STRATEGIES))):
        result = run(problem, "cpu")
    assert_matches_reference(result, run(problem, "reference"), dtype, naive)


def _sequence_alone(problem, b, backend):
    """Sequence b run on its own, over its valid steps only, with no lengths argument."""
    config = with_backend(problem["config"], backend)
    n = int(problem["lengths"][b])
    x = problem["x"][:n, b:b + 1]
    state = problem["state"]
    state_b = tuple(s[:, b:b + 1] for s in state) if isinstance(state, tuple) else state[:, b:b + 1]
    return functional.forward(config, problem["params"], x, state_b)


@pytest.mark.parametrize("variant", ["lstm_peephole", "gru_reset_before", "rnn_relu"])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_each_sequence_behaves_as_if_run_alone(variant, backend):
    lengths = np.array([3, 0, 6, 1, 6])
    problem = make_problem(variant, 6, 5, 3, 4, np.float64, seed=2, lengths=lengths,
                           num_layers=2, bidirectional=True)
    config = with_backend(problem["config"], backend)
    y, final, _ = functional.forward(config, problem["params"], problem["x"], problem["state"], lengths)
    for b, n in enumerate(lengths):
        y_b, final_b, _ = _sequence_alone(problem, b, backend)
        np.testing.assert_allclose(y[:n, b], y_b[:, 0], rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(y[n:, b], 0.0)
        for s, s_b in zip(state_parts(final), state_parts(final_b)):
            np.testing.assert_allclose(s[:, b], s_b[:, 0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_gradients_ignore_padded_positions(backend):
    lengths = np.array([2, 5, 0, 4])
    problem = make_problem("gru", 5, 4, 3, 3, np.float64, seed=3, lengths=lengths, bidirectional=True)
    before = run(problem, backend)
    padded = np.arange(5)[:, None] >= lengths[None, :]
    problem["dy"] = problem["dy"].copy()
    problem["dy"][padded] = 1e6
    after = run(problem, backend)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert np.all(after["dx"][padded] == 0.0)


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_truncated_bptt_chunks_equal_one_long_call(variant, backend):
    """Feeding one chunk's final state into the next gives the long call's outputs, and
    chaining the backward through dstate gives its gradients."""
    problem = make_problem(variant, 9, 3, 2, 4, np.float64, seed=4, num_layers=2)
    config = with_backend(problem["config"], backend)
    params, x, state, dy = problem["params"], problem["x"], problem["state"], problem["dy"]
    y, final, tape = functional.forward(config, params, x, state)
    dx, dstate0, grads, _ = functional.backward(tape, dy)

    y1, state1, tape1 = functional.forward(config, params, x[:4], state)
    y2, state2, tape2 = functional.forward(config, params, x[4:], state1)
    np.testing.assert_array_equal(np.concatenate([y1, y2]), y)
    for a, b in zip(state_parts(state2), state_parts(final)):
        np.testing.assert_array_equal(a, b)

    dx2, dmid, grads2, _ = functional.backward(tape2, dy[4:])
    dx1, dstart, grads1, _ = functional.backward(tape1, dy[:4], dmid)
    np.testing.assert_allclose(np.concatenate([dx1, dx2]), dx, rtol=1e-12, atol=1e-14)
    for a, b in zip(state_parts(dstart), state_parts(dstate0)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for name in grads:
        np.testing.assert_allclose(grads1[name] + grads2[name], grads[name], rtol=1e-12, atol=1e-14)


def test_reference_with_lengths_bidirectional_and_two_layers_matches_finite_differences():
    lengths = np.array([3, 1, 4])
    problem = make_problem("lstm_peephole", 4, 3, 2, 2, np.float64, seed=6, lengths=lengths,
                           num_layers=2, bidirectional=True)
    config = with_backend(problem["config"], "reference")
    params, x, state = problem["params"], problem["x"], problem["state"]
    dy, dstate = problem["dy"], problem["dstate"]

    def loss():
        y, final, _ = functional.forward(config, params, x, state, lengths)
        return float(np.sum(dy * y) + sum(np.sum(d * s) for d, s in zip(dstate, final)))

    _, _, tape = functional.forward(config, params, x, state, lengths)
    dx, dstate0, grads, _ = functional.backward(tape, dy, dstate)
    checks = [("x", dx, x)] + [(f"state[{k}]", dstate0[k], state[k]) for k in range(2)]
    checks += [(name, grads[name], params[name]) for name in params]
    for name, analytic, array in checks:
        numeric = numeric_gradient(loss, array)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def _padded(steps, lengths, batch_first):
    """The (T, B) — or (B, T) — positions past each sequence's end."""
    padded = np.arange(steps)[:, None] >= np.asarray(lengths)[None, :]
    return padded.T if batch_first else padded


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
def test_non_finite_padding_reaches_no_result(variant, backend, poison):
    """Whatever padded positions of x and dy hold, every result equals that of zero padding."""
    lengths = np.array([2, 5, 0, 4])
    batch_first = variant.startswith("gru")
    problem = make_problem(variant, 5, 4, 3, 3, np.float32, seed=4, lengths=lengths, bidirectional=True,
                           num_layers=2, batch_first=batch_first)
    padded = _padded(5, lengths, batch_first)
    problem["x"], problem["dy"] = problem["x"].copy(), problem["dy"].copy()
    problem["x"][padded], problem["dy"][padded] = 0, 0
    clean = run(problem, backend)
    problem["x"][padded], problem["dy"][padded] = poison, poison
    given_x, given_dy = problem["x"].copy(), problem["dy"].copy()
    poisoned = run(problem, backend)
    for name in clean:
        assert np.all(np.isfinite(poisoned[name])), name
        np.testing.assert_array_equal(poisoned[name], clean[name], err_msg=name)
    np.testing.assert_array_equal(problem["x"], given_x)         # the caller's arrays are untouched
    np.testing.assert_array_equal(problem["dy"], given_dy)


@pytest.mark.parametrize("variant", ["lstm", "gru"])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_changing_the_inputs_after_the_forward_leaves_the_backward_alone(variant, backend):
    """The backward uses what the forward saw: x and the initial state are the tape's own copies."""
    problem = make_problem(variant, 4, 3, 2, 3, np.float64, seed=5)
    expected = run(problem, backend)
    config = with_backend(problem["config"], backend)
    x = problem["x"].copy()
    state = tuple(s.copy() for s in state_parts(problem["state"]))
    given = state if len(state) > 1 else state[0]
    _, _, tape = functional.forward(config, problem["params"], x, given)
    x[...] = 5.0
    for part in state:
        part[...] = -3.0
    dx, dstate0, grads, _ = functional.backward(tape, problem["dy"], problem["dstate"])
    np.testing.assert_array_equal(dx, expected["dx"])
    for name, value in grads.items():
        np.testing.assert_array_equal(value, expected[f"grad[{name}]"], err_msg=name)

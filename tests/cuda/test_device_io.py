"""The cuda backend's array contract: device arrays in place, results where the inputs were,
inputs never modified, errors before any kernel runs."""
import numpy as np
import pytest
from numba import cuda

import fastlstm
from fastlstm import functional
from fastlstm.backends.cuda import arrays
from support import assert_matches_reference, make_problem, run, with_backend

SHAPE = dict(steps=3, batch=2, inputs=3, hidden=2)


def _problem(variant="lstm", dtype=np.float64, **options):
    return make_problem(variant=variant, dtype=dtype, seed=7, **SHAPE, **options)


def _on_device(value):
    if isinstance(value, tuple):
        return tuple(cuda.to_device(v) for v in value)
    return cuda.to_device(value)


def _host(value):
    if isinstance(value, tuple):
        return tuple(_host(v) for v in value)
    return arrays.to_host(value) if arrays.is_device_array(value) else value


@pytest.mark.parametrize("batch_first", [False, True])
def test_device_inputs_give_device_results_equal_to_the_reference(batch_first):
    problem = _problem(batch_first=batch_first, lengths=np.array([3, 1]))
    config = with_backend(problem["config"], "cuda")
    params = {k: cuda.to_device(v) for k, v in problem["params"].items()}
    x, state = cuda.to_device(problem["x"]), _on_device(problem["state"])
    y, final, tape = functional.forward(config, params, x, state, problem["lengths"])
    dy, dstate = cuda.to_device(problem["dy"]), _on_device(problem["dstate"])
    dx, dstate0, grads, _ = functional.backward(tape, dy, dstate)

    for result in (y, *final, dx, *dstate0, *grads.values()):
        assert arrays.is_device_array(result)
    result = {"y": _host(y), "dx": _host(dx), "final[0]": _host(final[0]), "final[1]": _host(final[1]),
              "dstate0[0]": _host(dstate0[0]), "dstate0[1]": _host(dstate0[1])}
    result.update({f"grad[{k}]": _host(v) for k, v in grads.items()})
    assert_matches_reference(result, run(problem, "reference"), np.float64, None)

    # inputs read in place are never written
    np.testing.assert_array_equal(_host(x), problem["x"])
    np.testing.assert_array_equal(_host(dy), problem["dy"])
    for name, value in params.items():
        np.testing.assert_array_equal(_host(value), problem["params"][name])
    for device_part, host_part in zip(state + dstate, problem["state"] + problem["dstate"]):
        np.testing.assert_array_equal(_host(device_part), host_part)


def test_host_inputs_give_host_results():
    problem = _problem(variant="gru")
    config = with_backend(problem["config"], "cuda")
    y, final, tape = functional.forward(config, problem["params"], problem["x"], problem["state"])
    dx, dstate0, grads, _ = functional.backward(tape, problem["dy"], problem["dstate"])
    for result in (y, final, dx, dstate0, *grads.values()):
        assert isinstance(result, np.ndarray)


def test_float32_device_input_to_a_float64_layer_is_converted_not_modified():
    problem = _problem(variant="rnn_tanh")
    config = with_backend(problem["config"], "cuda")
    x32 = problem["x"].astype(np.float32)
    x = cuda.to_device(x32)
    y, _, _ = functional.forward(config, problem["params"], x, problem["state"], tape=False)
    expected, _, _ = functional.forward(with_backend(config, "reference"), problem["params"],
                                        x32.astype(np.float64), problem["state"], tape=False)
    np.testing.assert_allclose(_host(y), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(_host(x), x32)


def test_empty_sequence():
    problem = make_problem(variant="lstm", steps=0, batch=2, inputs=3, hidden=2, dtype=np.float64, seed=1)
    result = run(problem, "cuda")
    expected = run(problem, "reference")
    for name, value in expected.items():
        np.testing.assert_array_equal(result[name], value, err_msg=name)


def test_layer_with_device_parameters():
    layer = fastlstm.GRU(3, 4, backend="cuda", dtype=np.float64, seed=3)
    twin = fastlstm.GRU(3, 4, backend="reference", dtype=np.float64, seed=3)
    layer.params = {k: cuda.to_device(v) for k, v in layer.params.items()}
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    y, h = layer(x)
    y_ref, h_ref = twin(x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h, h_ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("bad, error, words", [
    (np.zeros((3, 2, 5)), ValueError, "x"),                    # 5 features, the layer takes 3
    (np.zeros((3, 2)), ValueError, "x"),                       # not 3-d
    (np.zeros((3, 2, 3), np.complex128), TypeError, "x"),      # not real
])
def test_bad_device_input_is_a_clear_error(bad, error, words):
    layer = fastlstm.LSTM(3, 2, backend="cuda", dtype=np.float32)
    with pytest.raises(error, match=words):
        layer(cuda.to_device(bad))


@pytest.mark.parametrize("variant", ["lstm_peephole", "gru", "rnn_relu"])
def test_non_finite_padding_reaches_no_result(variant):
    """NaN in x and dy past each sequence's end (device inputs): every result equals that of zero
    padding, as on the host backends."""
    lengths = np.array([3, 1])
    problem = _problem(variant=variant, lengths=lengths, bidirectional=True)
    padded = np.arange(SHAPE["steps"])[:, None] >= lengths[None, :]
    problem["x"], problem["dy"] = problem["x"].copy(), problem["dy"].copy()
    problem["x"][padded], problem["dy"][padded] = 0, 0
    clean = run(problem, "cuda")
    problem["x"][padded], problem["dy"][padded] = np.nan, np.inf
    config = with_backend(problem["config"], "cuda")
    x, dy = cuda.to_device(problem["x"]), cuda.to_device(problem["dy"])
    y, _, tape = functional.forward(config, problem["params"], x, problem["state"], lengths)
    dx, _, grads, _ = functional.backward(tape, dy, problem["dstate"])
    np.testing.assert_array_equal(_host(y), clean["y"])
    np.testing.assert_array_equal(_host(dx), clean["dx"])
    for name, value in grads.items():
        np.testing.assert_array_equal(_host(value), clean[f"grad[{name}]"], err_msg=name)
    np.testing.assert_array_equal(_host(x), problem["x"])        # the caller's array is untouched


def test_changing_a_device_input_after_the_forward_leaves_the_gradients_alone():
    """The tape keeps a copy of x: the backward uses what the forward saw."""
    problem = _problem(variant="lstm")
    expected = run(problem, "cuda")
    config = with_backend(problem["config"], "cuda")
    x = cuda.to_device(problem["x"])
    _, _, tape = functional.forward(config, problem["params"], x, problem["state"])
    x.copy_to_device(np.full_like(problem["x"], 5.0))
    _, _, grads, _ = functional.backward(tape, problem["dy"], problem["dstate"])
    for name, value in grads.items():
        np.testing.assert_array_equal(value, expected[f"grad[{name}]"], err_msg=name)


def test_unbatched_device_input_without_biases_matches_the_reference():
    """bias=False and an unbatched (T, I) x on the device: the reference's results, on the device."""
    problem = _problem(variant="gru", bias=False)
    assert not [name for name in problem["params"] if name.startswith("bias")]
    x, state, dy = (np.ascontiguousarray(problem[k][:, 0]) for k in ("x", "state", "dy"))
    params = {k: cuda.to_device(v) for k, v in problem["params"].items()}
    y, final, tape = functional.forward(with_backend(problem["config"], "cuda"), params, cuda.to_device(x),
                                        cuda.to_device(state))
    dx, dstate0, grads, _ = functional.backward(tape, cuda.to_device(dy))
    expected_y, expected_final, reference_tape = functional.forward(
        with_backend(problem["config"], "reference"), problem["params"], x, state)
    expected_dx, expected_dstate0, expected_grads, _ = functional.backward(reference_tape, dy)
    assert y.shape == (SHAPE["steps"], SHAPE["hidden"]) and final.shape == (1, SHAPE["hidden"])
    for got, expected in [(y, expected_y), (final, expected_final), (dx, expected_dx),
                          (dstate0, expected_dstate0), *[(grads[k], expected_grads[k]) for k in expected_grads]]:
        assert arrays.is_device_array(got)
        np.testing.assert_allclose(_host(got), expected, rtol=0, atol=1e-12)

"""The public contract of the layer classes, beyond numerical agreement."""
import inspect
import re
import warnings

import numpy as np
import pytest

import fastlstm
from fastlstm import functional
from support import CELL_VARIANTS, make_problem, run, with_backend


def _snapshot(value):
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_snapshot(v) for v in value)
    return np.copy(value) if isinstance(value, np.ndarray) else value


def _assert_same(a, b, where="problem"):
    if isinstance(b, dict):
        for k in b:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(b, tuple):
        for k, (u, v) in enumerate(zip(a, b)):
            _assert_same(u, v, f"{where}[{k}]")
    elif isinstance(b, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_inputs_are_never_modified(backend):
    problem = make_problem("lstm_peephole", 5, 3, 2, 4, np.float32, seed=3)
    before = _snapshot(problem)
    run(problem, backend)
    _assert_same(problem, before)


@pytest.mark.parametrize("lengths", [None, np.array([5, 2, 4])])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_inference_reads_the_inputs_without_modifying_or_returning_them(backend, lengths):
    """An inference call without lengths reads the caller's own x (no copy): it must neither
    write into it nor hand it, or a view of it, back."""
    problem = make_problem("gru", 5, 3, 2, 4, np.float32, seed=5, bidirectional=True, lengths=lengths)
    before = _snapshot(problem)
    config = with_backend(problem["config"], backend)
    for _ in range(2):
        y, final, _ = functional.forward(config, problem["params"], problem["x"], problem["state"],
                                         problem["lengths"], tape=False)
        y[...] = np.nan
        final[...] = np.nan
    _assert_same(problem, before)


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_repeated_calls_are_identical(variant, dtype):
    problem = make_problem(variant, 6, 5, 3, 7, dtype, seed=4)
    first, second = run(problem, "cpu"), run(problem, "cpu")
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_output_dtypes_and_shapes():
    for dtype in ("float32", "float64"):
        layer = fastlstm.LSTM(3, 4, dtype=dtype, seed=0)
        y, (h, c) = layer(np.ones((5, 2, 3), dtype=np.int64))
        dx, (dh, dc) = layer.backward(np.ones_like(y))
        for array, shape in [(y, (5, 2, 4)), (h, (1, 2, 4)), (c, (1, 2, 4)), (dx, (5, 2, 3)),
                             (dh, (1, 2, 4)), (dc, (1, 2, 4))]:
            assert array.dtype == np.dtype(dtype) and array.shape == shape
        assert set(layer.grads) == set(layer.params)
        assert all(layer.grads[k].shape == v.shape and layer.grads[k].dtype == np.dtype(dtype)
                   for k, v in layer.params.items())


def test_initialisation_is_uniform_in_the_stated_bound_and_reproducible():
    a = fastlstm.LSTM(3, 16, peephole=True, seed=11, dtype="float64")
    b = fastlstm.LSTM(3, 16, peephole=True, seed=11, dtype="float64")
    c = fastlstm.LSTM(3, 16, peephole=True, seed=12, dtype="float64")
    assert list(a.params) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                              "weight_ci_l0", "weight_cf_l0", "weight_co_l0"]
    for name, value in a.params.items():
        np.testing.assert_array_equal(value, b.params[name])
        assert not np.array_equal(value, c.params[name])
        assert np.abs(value).max() <= 0.25
    everything = np.concatenate([v.ravel() for v in a.params.values()])
    assert abs(everything.mean()) < 0.02 and abs(everything.std() - 0.25 / np.sqrt(3)) < 0.01


def test_assigned_params_are_used():
    layer = fastlstm.LSTM(2, 3, seed=0, dtype="float64")
    x = np.ones((4, 1, 2))
    y_before, _ = layer(x)
    layer.params = {k: np.zeros_like(v) for k, v in layer.params.items()}
    y_zero, (h, c) = layer(x)
    # all-zero weights: every gate is σ(0) = 0.5 and g = tanh(0) = 0, so c stays 0 and h = 0.
    np.testing.assert_array_equal(y_zero, 0.0)
    layer.params["bias_ih_l0"] = np.full(12, 100.0)
    y_sat, _ = layer(x)
    assert not np.array_equal(y_before, y_sat)
    # saturated gates: i = f = o = 1, g = tanh(200) = 1, so c_t = t and h_t = tanh(t)
    np.testing.assert_allclose(y_sat[:, 0, 0], np.tanh(np.arange(1, 5)), rtol=1e-12)


def test_backward_sets_rather_than_accumulates():
    layer = fastlstm.LSTM(3, 4, seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y, _ = layer(x)
    layer.backward(np.ones_like(y))
    first = {k: v.copy() for k, v in layer.grads.items()}
    layer(x)
    layer.backward(np.ones_like(y))
    for k in first:
        np.testing.assert_array_equal(layer.grads[k], first[k])


def test_batch_first_is_a_transpose():
    problem = make_problem("lstm", 5, 3, 2, 4, np.float64, seed=9)
    layer_t = fastlstm.LSTM(2, 4, dtype="float64", seed=1)
    layer_b = fastlstm.LSTM(2, 4, dtype="float64", seed=1, batch_first=True)
    x = problem["x"]
    y_t, (h_t, c_t) = layer_t(x)
    y_b, (h_b, c_b) = layer_b(x.transpose(1, 0, 2))
    np.testing.assert_array_equal(y_b, y_t.transpose(1, 0, 2))
    np.testing.assert_array_equal(h_b, h_t)
    dx_t, _ = layer_t.backward(problem["dy"])
    dx_b, _ = layer_b.backward(problem["dy"].transpose(1, 0, 2))
    np.testing.assert_array_equal(dx_b, dx_t.transpose(1, 0, 2))


@pytest.mark.parametrize("cls, options, gates", [
    (fastlstm.GRU, {}, 3), (fastlstm.GRU, {"reset_after": False}, 3),
    (fastlstm.RNN, {}, 1), (fastlstm.RNN, {"nonlinearity": "relu"}, 1),
])
def test_gru_and_rnn_contract(cls, options, gates):
    layer = cls(3, 5, seed=2, **options)
    assert {k: v.shape for k, v in layer.params.items()} == {
        "weight_ih_l0": (gates * 5, 3), "weight_hh_l0": (gates * 5, 5),
        "bias_ih_l0": (gates * 5,), "bias_hh_l0": (gates * 5,)}
    y, h_n = layer(np.ones((4, 2, 3)))
    assert y.shape == (4, 2, 5) and h_n.shape == (1, 2, 5)
    np.testing.assert_array_equal(h_n[0], y[-1])
    dx, dh0 = layer.backward(np.ones_like(y))
    assert dx.shape == (4, 2, 3) and dh0.shape == (1, 2, 5)
    assert set(layer.grads) == set(layer.params)


@pytest.mark.parametrize("cls", [fastlstm.LSTM, fastlstm.GRU, fastlstm.RNN])
def test_arguments_after_num_layers_are_keyword_only(cls):
    # PyTorch's fourth positional argument is bias: refusing it keeps LSTM(10, 20, 2, True) from
    # silently meaning bidirectional here
    with pytest.raises(TypeError, match="positional argument"):
        cls(10, 20, 2, True)
    assert cls(10, 20, 2, bidirectional=True).config.bidirectional


@pytest.mark.parametrize("cls", [fastlstm.LSTM, fastlstm.GRU, fastlstm.RNN])
def test_dropout_on_a_single_layer_warns_as_pytorch_does(cls):
    with pytest.warns(UserWarning, match="num_layers=1"):
        cls(3, 4, dropout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls(3, 4, num_layers=2, dropout=0.5)
        cls(3, 4)


@pytest.mark.parametrize("cls", [fastlstm.LSTM, fastlstm.GRU, fastlstm.RNN])
def test_docstring_documents_every_constructor_argument_and_the_equations(cls):
    documented = set(re.findall(r"^    (\w[\w, ]*) :", cls.__doc__, flags=re.M))
    names = {name.strip() for entry in documented for name in entry.split(",")}
    arguments = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert arguments <= names, arguments - names
    assert "h' = " in cls.__doc__

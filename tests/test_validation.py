"""Bad input raises a clear error, naming the argument, before any kernel runs."""
from dataclasses import replace

import numpy as np
import pytest

import fastlstm
from fastlstm import functional


def lstm(**options):
    return fastlstm.LSTM(3, 4, **dict(dict(seed=0), **options))


@pytest.mark.parametrize("options, error, words", [
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(dtype="int32"), ValueError, "dtype"),
    (dict(backend="gpu"), ValueError, "backend"),
    (dict(peephole="yes"), TypeError, "peephole"),
    (dict(batch_first=1), TypeError, "batch_first"),
    (dict(num_layers=0), ValueError, "num_layers"),
    (dict(num_layers=2.5), TypeError, "num_layers"),
    (dict(dtype=None), ValueError, "dtype"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed="a"), TypeError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(seed=True), TypeError, "seed"),
])
def test_bad_constructor_options(options, error, words):
    with pytest.raises(error, match=words):
        lstm(**options)


@pytest.mark.parametrize("args", [(0, 4), (3, -1), (3.0, 4), (True, 4)])
def test_bad_sizes(args):
    with pytest.raises((ValueError, TypeError), match="input_size|hidden_size"):
        fastlstm.LSTM(*args)


@pytest.mark.parametrize("lengths, error, words", [
    ([5, 5, 5], ValueError, r"lengths: expected shape \(2,\)"),
    ([5], ValueError, r"lengths: expected shape \(2,\)"),
    ([-1, 3], ValueError, r"lengths: expected values in \[0, T=5\]"),
    ([6, 3], ValueError, r"lengths: expected values in \[0, T=5\]"),
    ([2.0, 3.0], TypeError, r"lengths: expected integers"),
])
def test_bad_lengths(lengths, error, words):
    with pytest.raises(error, match=words):
        lstm()(np.zeros((5, 2, 3)), lengths=lengths)


def test_stacked_bidirectional_state_shape_is_checked():
    layer = fastlstm.GRU(3, 4, num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match=r"state: expected shape \(4, 2, 4\)"):
        layer(np.zeros((5, 2, 3)), np.zeros((2, 2, 4)))


def test_cuda_backend_without_a_gpu_is_a_clear_error_at_construction():
    """This process never runs the simulator, and CI machines have no GPU."""
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a CUDA GPU is available here")
    with pytest.raises(RuntimeError, match=r"backend 'cuda': .*(no usable CUDA GPU|cannot be imported).*backend='cpu'"):
        lstm(backend="cuda")
    layer = lstm()
    with pytest.raises(RuntimeError, match=r"backend 'cuda'"):   # and from the functional core
        functional.forward(replace(layer.config, backend="cuda"), layer.params, np.zeros((2, 1, 3)))


@pytest.mark.parametrize("x, words", [
    (np.zeros(3), r"x: expected a 3-d array \(T, B, features\) or an unbatched 2-d \(T, features\)"),
    (np.zeros((2, 1, 3, 1)), r"x: expected a 3-d array"),
    (np.zeros((2, 5)), r"x: expected 3 features in the last axis of an unbatched"),
    (np.zeros((2, 1, 5)), r"x: expected 3 features"),
    (np.zeros((2, 0, 3)), r"x: expected at least one sequence"),
    (np.zeros((2, 1, 3), dtype=complex), r"x: expected real numbers"),
    (np.array([[["a", "b", "c"]]]), r"x: expected real numbers"),
])
def test_bad_input(x, words):
    with pytest.raises((ValueError, TypeError), match=words):
        lstm()(x)


def test_batch_first_names_its_layout():
    with pytest.raises(ValueError, match=r"\(B, T, features\)"):
        lstm(batch_first=True)(np.zeros((2, 1, 5)))


@pytest.mark.parametrize("state, words", [
    (np.zeros((1, 2, 4)), r"state: expected a pair \(h, c\)"),
    ((np.zeros((1, 2, 4)),), r"state: expected a pair"),
    ((np.zeros((1, 2, 4)), np.zeros((1, 3, 4))), r"state\[1\] \(c\): expected shape \(1, 2, 4\)"),
    ((np.zeros((2, 2, 4)), np.zeros((1, 2, 4))), r"state\[0\] \(h\): expected shape \(1, 2, 4\)"),
    ((np.zeros((1, 2, 5)), np.zeros((1, 2, 4))), r"state\[0\] \(h\): expected shape"),
])
def test_bad_state(state, words):
    with pytest.raises((ValueError, TypeError), match=words):
        lstm()(np.zeros((5, 2, 3)), state)


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="forward first"):
        lstm().backward(np.zeros((5, 2, 4)))


@pytest.mark.parametrize("dy", [np.zeros((5, 2, 3)), np.zeros((4, 2, 4)), np.zeros((5, 2))])
def test_bad_dy(dy):
    layer = lstm()
    layer(np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=r"dy: expected shape \(5, 2, 4\)"):
        layer.backward(dy)


def test_bad_dstate():
    layer = lstm()
    layer(np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=r"dstate\[1\] \(c\): expected shape \(1, 2, 4\)"):
        layer.backward(np.zeros((5, 2, 4)), (np.zeros((1, 2, 4)), np.zeros((1, 2, 3))))


@pytest.mark.parametrize("change, words", [
    (lambda p: p.pop("bias_hh_l0"), r"missing \['bias_hh_l0'\]"),
    (lambda p: p.update(weight_ci_l0=np.zeros(4)), r"unexpected \['weight_ci_l0'\]"),
    (lambda p: p.update(weight_hh_l0=np.zeros((16, 3))), r"params\['weight_hh_l0'\]: expected shape \(16, 4\)"),
])
def test_bad_params(change, words):
    layer = lstm()
    change(layer.params)
    with pytest.raises(ValueError, match=words):
        layer(np.zeros((5, 2, 3)))


def test_params_must_be_a_dict():
    with pytest.raises(TypeError, match="params"):
        lstm().params = [1, 2]


def test_functional_params_checked():
    layer = lstm()
    with pytest.raises(TypeError, match="params"):
        functional.forward(layer.config, None, np.zeros((5, 2, 3)))


@pytest.mark.parametrize("make, words", [
    (lambda: fastlstm.GRU(3, 4, reset_after="no"), "reset_after"),
    (lambda: fastlstm.RNN(3, 4, nonlinearity="sigmoid"), "nonlinearity"),
])
def test_bad_cell_options(make, words):
    with pytest.raises((ValueError, TypeError), match=words):
        make()


@pytest.mark.parametrize("cls", [fastlstm.GRU, fastlstm.RNN])
def test_single_state_cells_take_one_array(cls):
    layer = cls(3, 4, seed=0)
    x = np.zeros((5, 2, 3))
    with pytest.raises(TypeError, match=r"state: expected one array of shape \(1, 2, 4\)"):
        layer(x, (np.zeros((1, 2, 4)), np.zeros((1, 2, 4))))
    with pytest.raises(ValueError, match=r"state: expected shape \(1, 2, 4\)"):
        layer(x, np.zeros((1, 3, 4)))
    layer(x)
    with pytest.raises(ValueError, match=r"dstate: expected shape \(1, 2, 4\)"):
        layer.backward(np.zeros((5, 2, 4)), np.zeros((2, 2, 4)))


X = np.zeros((5, 2, 3), np.float32)


def _forward_then(call):
    layer = lstm()
    layer(X)
    return call(layer)


@pytest.mark.parametrize("call, error, words", [
    (lambda: lstm()(X, tape="no"), TypeError, "tape"),
    (lambda: lstm()(X, tape=None), TypeError, "tape"),
    (lambda: lstm()(X, training="no"), TypeError, "training"),
    (lambda: lstm()(X, training=1), TypeError, "training"),
    (lambda: lstm()(X, rng=5), TypeError, "rng"),
    (lambda: lstm().train("no"), TypeError, "mode"),
    (lambda: _forward_then(lambda layer: layer.backward(np.ones((5, 2, 4)), state_gradient_norms="yes")),
     TypeError, "state_gradient_norms"),
    (lambda: functional.forward(lstm().config, lstm().params, X, tape="no"), TypeError, "tape"),
    (lambda: functional.forward(lstm().config, lstm().params, X, training="no"), TypeError, "training"),
    (lambda: functional.forward({"input_size": 3}, lstm().params, X), TypeError, "config"),
    (lambda: functional.backward("tape", np.ones((5, 2, 4))), TypeError, "tape"),
    (lambda: fastlstm.initialisation.init_parameters(lstm().config, seed=-2), ValueError, "seed"),
])
def test_bad_call_arguments_are_named(call, error, words):
    with pytest.raises(error, match=words):
        call()

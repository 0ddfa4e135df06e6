"""The training tools: readout, losses, optimisers, clipping, the model, fit and L-BFGS."""
import numpy as np
import pytest

import fastlstm
from fastlstm.training import (SGD, Adam, FlatObjective, Linear, SequenceModel, clip_by_global_norm, fit,
                               global_norm, mean_squared_error, minimize, softmax_cross_entropy)
from support import numeric_gradient

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- readout and losses

def test_linear_backward_matches_finite_differences():
    layer = Linear(4, 3, dtype="float64", seed=1)
    x = RNG.standard_normal((5, 2, 4))
    weights = RNG.standard_normal((5, 2, 3))

    def loss():
        return float(np.sum(weights * layer.forward(x)))

    loss()
    dx = layer.backward(weights)
    np.testing.assert_allclose(dx, numeric_gradient(loss, x), rtol=1e-7, atol=1e-9)
    for name, value in layer.params.items():
        loss()
        layer.backward(weights)
        np.testing.assert_allclose(layer.grads[name], numeric_gradient(loss, value), rtol=1e-7, atol=1e-9)


def test_linear_rejects_the_wrong_feature_count():
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 4\), got \(2, 3\)"):
        Linear(4, 1)(np.ones((2, 3)))


@pytest.mark.parametrize("time_axis", [0, 1])
def test_mean_squared_error_is_the_mean_over_valid_steps_with_its_gradient(time_axis):
    lengths = np.array([3, 0, 1])
    shape = (4, 3, 2) if time_axis == 0 else (3, 4, 2)
    prediction, target = RNG.standard_normal(shape), RNG.standard_normal(shape)
    loss, gradient = mean_squared_error(prediction, target, lengths, time_axis)
    terms = [(prediction[t, b] - target[t, b]) if time_axis == 0 else (prediction[b, t] - target[b, t])
             for b in range(3) for t in range(lengths[b])]
    assert loss == pytest.approx(np.mean(np.square(terms)), rel=1e-12)
    numeric = numeric_gradient(lambda: mean_squared_error(prediction, target, lengths, time_axis)[0], prediction)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-10)
    invalid = np.arange(4)[:, None] >= lengths[None, :]
    assert np.all((gradient if time_axis == 0 else gradient.transpose(1, 0, 2))[invalid] == 0)


@pytest.mark.parametrize("lengths", [None, np.array([2, 4, 1])])
def test_softmax_cross_entropy_is_the_mean_negative_log_likelihood_with_its_gradient(lengths):
    logits = 3 * RNG.standard_normal((4, 3, 5))
    labels = RNG.integers(0, 5, (4, 3))
    loss, gradient = softmax_cross_entropy(logits, labels, lengths)
    steps = [(t, b) for b in range(3) for t in range(4 if lengths is None else lengths[b])]
    expected = np.mean([np.log(np.sum(np.exp(logits[t, b]))) - logits[t, b, labels[t, b]] for t, b in steps])
    assert loss == pytest.approx(expected, rel=1e-12)
    numeric = numeric_gradient(lambda: softmax_cross_entropy(logits, labels, lengths)[0], logits)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-8)


def test_softmax_cross_entropy_is_stable_for_huge_logits_and_checks_labels():
    logits = np.array([[1000.0, 0.0, -1000.0]])
    loss, gradient = softmax_cross_entropy(logits, np.array([1]))
    assert loss == pytest.approx(1000.0) and np.all(np.isfinite(gradient))
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 3\), got \[3, 3\]"):
        softmax_cross_entropy(logits, np.array([3]))
    with pytest.raises(TypeError, match="labels: expected integer class indices"):
        softmax_cross_entropy(logits, np.array([1.0]))


def test_losses_refuse_all_empty_sequences_and_bad_lengths():
    with pytest.raises(ValueError, match="every sequence is empty"):
        mean_squared_error(np.ones((3, 2, 1)), np.zeros((3, 2, 1)), np.array([0, 0]))
    with pytest.raises(ValueError, match=r"lengths: expected values in \[0, 3\]"):
        mean_squared_error(np.ones((3, 2, 1)), np.zeros((3, 2, 1)), np.array([4, 0]))
    with pytest.raises(ValueError, match="target: expected the prediction's shape"):
        mean_squared_error(np.ones((3, 2, 1)), np.zeros((3, 2)))


# ---------------------------------------------------------------- optimisers and clipping

def _quadratic(dimension=6, seed=3):
    """f(θ) = ½ (θ − θ*)ᵀ A (θ − θ*), A positive definite, and its gradient."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.standard_normal((dimension, dimension)))[0]
    a = q @ np.diag(np.linspace(0.5, 3.0, dimension)) @ q.T
    optimum = rng.standard_normal(dimension)
    return a, optimum, lambda theta: a @ (theta - optimum)


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, momentum=0.9), lambda p: SGD(p, lr=0.1, momentum=0.5,
                                                                                          nesterov=True),
                                  lambda p: Adam(p, lr=0.05)])
def test_optimisers_solve_a_convex_quadratic(make):
    _, optimum, gradient = _quadratic()
    params = {"theta": np.zeros(6)}
    optimiser = make(params)
    for _ in range(2000):
        optimiser.step({"theta": gradient(params["theta"])})
    np.testing.assert_allclose(params["theta"], optimum, atol=1e-6)


def test_sgd_step_follows_its_formula_and_adams_first_step_is_lr_times_the_sign():
    params = {"w": np.array([1.0, -2.0, 3.0])}
    g = np.array([0.5, -4.0, 0.0])
    sgd = SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)
    sgd.step({"w": g})
    v = g + 0.01 * np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(params["w"], np.array([1.0, -2.0, 3.0]) - 0.1 * v)
    sgd.step({"w": g})
    v2 = 0.9 * v + g + 0.01 * (np.array([1.0, -2.0, 3.0]) - 0.1 * v)
    np.testing.assert_allclose(params["w"], np.array([1.0, -2.0, 3.0]) - 0.1 * v - 0.1 * v2)
    params = {"w": np.zeros(3)}
    Adam(params, lr=0.01, eps=1e-12).step({"w": g})
    np.testing.assert_allclose(params["w"], -0.01 * np.sign(g), atol=1e-12)


def test_optimisers_check_their_arguments():
    with pytest.raises(ValueError, match=r"lr: expected a number in \(0.0, inf\), got 0"):
        SGD({"w": np.zeros(2)}, lr=0)
    with pytest.raises(ValueError, match="momentum"):
        SGD({"w": np.zeros(2)}, lr=0.1, momentum=1.0)
    with pytest.raises(TypeError, match="params\\['w'\\]: expected a float ndarray"):
        Adam({"w": [0.0, 1.0]})
    optimiser = Adam({"w": np.zeros(2)})
    with pytest.raises(ValueError, match="grads: expected a dict with the keys \\['w'\\]"):
        optimiser.step({"v": np.zeros(2)})
    with pytest.raises(ValueError, match=r"grads\['w'\]: expected shape \(2,\)"):
        optimiser.step({"w": np.zeros(3)})


def test_clipping_scales_to_the_global_norm_and_leaves_its_input_alone():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    clipped, norm = clip_by_global_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    assert global_norm(clipped) == pytest.approx(1.0)
    np.testing.assert_allclose(clipped["a"], [0.6, 0.0])
    np.testing.assert_array_equal(grads["a"], [3.0, 0.0])
    same, _ = clip_by_global_norm(grads, 10.0)
    assert all(same[k] is grads[k] for k in grads)
    with pytest.raises(FloatingPointError):
        clip_by_global_norm({"a": np.array([np.nan])}, 1.0)


# ---------------------------------------------------------------- the model, fit, L-BFGS

@pytest.mark.parametrize("layer, head", [(fastlstm.LSTM, "sequence"), (fastlstm.GRU, "final"),
                                         (fastlstm.LSTM, "final"), (fastlstm.RNN, "sequence")])
def test_model_gradients_match_finite_differences(layer, head):
    lengths = np.array([4, 2, 3])
    model = SequenceModel(layer(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype="float64",
                                backend="reference", seed=2), 2, head=head, seed=3)
    x = RNG.standard_normal((3, 4, 3))
    target = RNG.standard_normal((3, 4, 2) if head == "sequence" else (3, 2))
    objective = FlatObjective(model, mean_squared_error, x, target, lengths)
    theta = objective.initial()
    _, gradient = objective(theta)
    numeric = numeric_gradient(lambda: objective(theta)[0], theta)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-9)


def test_fit_reduces_the_loss_and_keeps_a_history():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 16, 2))
    target = 0.2 * np.cumsum(x[..., :1] - x[..., 1:], axis=0)
    model = SequenceModel(fastlstm.GRU(2, 12, seed=0), 1, seed=0)
    batches = [(x[:, :8], target[:, :8]), (x[:, 8:], target[:, 8:])]
    history = fit(model, mean_squared_error, Adam(model.params, lr=0.02), batches, epochs=60, clip_norm=5.0,
                  validation=(x, target), progress=False)
    assert len(history.loss) == len(history.validation_loss) == 60 and len(history.batch_loss) == 120
    assert history.loss[-1] < 0.2 * history.loss[0]
    assert history.validation_loss[-1] < 0.2 * history.validation_loss[0]


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_fit_stops_clearly_when_the_loss_diverges():
    model = SequenceModel(fastlstm.RNN(1, 3, seed=0, dtype="float64", nonlinearity="relu"), 1, seed=0)
    x = np.full((5, 2, 1), 1e200)
    with pytest.raises(FloatingPointError, match="the loss became"):
        fit(model, mean_squared_error, SGD(model.params, lr=1.0), [(x, np.zeros((5, 2, 1)))], progress=False)


def test_lbfgs_fits_a_small_model_and_leaves_it_at_the_solution():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 6, 1))
    target = np.cumsum(x, axis=0) * 0.3
    model = SequenceModel(fastlstm.LSTM(1, 5, dtype="float64", seed=1), 1, seed=1)
    before = mean_squared_error(model(x, training=False), target)[0]
    result = minimize(model, mean_squared_error, x, target, max_iterations=150)
    after = mean_squared_error(model(x, training=False), target)[0]
    assert after == pytest.approx(result.fun, rel=1e-9)
    assert after < 0.02 * before

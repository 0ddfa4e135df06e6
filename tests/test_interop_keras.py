"""fastlstm.interop.from_keras: a converted layer computes what the Keras 3 layer computes on
the same inputs (outputs and final states), and what fastlstm cannot honour is refused by name
(skipped when Keras is not installed; Keras runs on its PyTorch backend)."""
import os

import numpy as np
import pytest

from fastlstm.interop import from_keras

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

# Keras 3 reading its own torch-backed variables under NumPy 2 (get_weights, convert_to_numpy).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

# I ≠ H and T, B distinct, so that a transposed or misplaced weight block cannot pass.
STEPS, BATCH, INPUTS, HIDDEN = 5, 3, 4, 6
# float32 on O(1) values: fastlstm's float32 gates and Keras's differ by a few ulps.
TOLERANCE = {"float32": dict(rtol=1e-5, atol=1e-5), "float64": dict(rtol=1e-12, atol=1e-12)}

LAYERS = {
    "lstm": lambda **options: keras.layers.LSTM(HIDDEN, **options),
    "gru": lambda **options: keras.layers.GRU(HIDDEN, reset_after=True, **options),
    "gru_reset_before": lambda **options: keras.layers.GRU(HIDDEN, reset_after=False, **options),
    "simple_rnn_tanh": lambda **options: keras.layers.SimpleRNN(HIDDEN, activation="tanh", **options),
    "simple_rnn_relu": lambda **options: keras.layers.SimpleRNN(HIDDEN, activation="relu", **options),
    "bidirectional_lstm": lambda **options: keras.layers.Bidirectional(keras.layers.LSTM(HIDDEN, **options)),
    "bidirectional_gru": lambda **options: keras.layers.Bidirectional(keras.layers.GRU(HIDDEN, **options)),
}


def built_layer(name, dtype="float32", seed=0, **options):
    """A built Keras layer returning (y, *final states), its weights (biases included) random."""
    layer = LAYERS[name](return_sequences=True, return_state=True, dtype=dtype, **options)
    layer.build((BATCH, STEPS, INPUTS))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(dtype) for w in layer.get_weights()])
    return layer


def keras_outputs(layer, x, **call_options):
    return [keras.ops.convert_to_numpy(value) for value in layer(x, **call_options)]


def fastlstm_outputs(layer, x, initial_state=None):
    """fastlstm's y and final states in Keras's order: y, then per direction h (and c)."""
    y, final = layer(x, initial_state)
    parts = final if isinstance(final, tuple) else (final,)
    directions = parts[0].shape[0]
    return [y] + [part[direction] for direction in range(directions) for part in parts]


def random_x(dtype="float32", seed=1):
    return np.random.default_rng(seed).standard_normal((BATCH, STEPS, INPUTS)).astype(dtype)


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_from_keras_computes_what_the_layer_computes(name, use_bias):
    layer = built_layer(name, use_bias=use_bias)
    converted = from_keras(layer)
    assert converted.config.batch_first and converted.config.bias is use_bias
    assert converted.config.bidirectional is name.startswith("bidirectional")
    x = random_x()
    expected = keras_outputs(layer, x)
    ours = fastlstm_outputs(converted, x)
    assert len(ours) == len(expected)
    for k, (value, peer) in enumerate(zip(ours, expected)):
        np.testing.assert_allclose(value, peer, **TOLERANCE["float32"], err_msg=f"output {k}")


def test_float64_and_a_non_zero_initial_state():
    layer = built_layer("lstm", dtype="float64")
    converted = from_keras(layer)
    assert converted.config.dtype is np.float64
    x = random_x("float64")
    rng = np.random.default_rng(2)
    h0, c0 = (rng.standard_normal((BATCH, HIDDEN)) for _ in range(2))
    expected = keras_outputs(layer, x, initial_state=[h0, c0])
    ours = fastlstm_outputs(converted, x, (h0[None], c0[None]))
    for k, (value, peer) in enumerate(zip(ours, expected)):
        np.testing.assert_allclose(value, peer, **TOLERANCE["float64"], err_msg=f"output {k}")


def test_dropout_rates_carry_over_and_inference_agrees():
    layer = built_layer("gru", dropout=0.3, recurrent_dropout=0.2)
    converted = from_keras(layer)
    rates = converted.config.regularisation
    assert (rates.input_dropout, rates.recurrent_dropout) == pytest.approx((0.3, 0.2))
    # Keras calls run in inference unless told otherwise; the converted layer is in inference too
    assert converted.training is False
    x = random_x()
    for k, (value, peer) in enumerate(zip(fastlstm_outputs(converted, x), keras_outputs(layer, x))):
        np.testing.assert_allclose(value, peer, **TOLERANCE["float32"], err_msg=f"output {k}")


def test_the_weights_are_copied():
    layer = built_layer("lstm")
    converted = from_keras(layer)
    before = {name: value.copy() for name, value in converted.params.items()}
    layer.set_weights([w + 1.0 for w in layer.get_weights()])
    for name, value in converted.params.items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


@pytest.mark.parametrize("make, option", [
    (lambda: keras.layers.LSTM(HIDDEN, activation="relu"), "activation"),
    (lambda: keras.layers.GRU(HIDDEN, recurrent_activation="hard_sigmoid"), "recurrent_activation"),
    (lambda: keras.layers.SimpleRNN(HIDDEN, activation="sigmoid"), "activation"),
    (lambda: keras.layers.LSTM(HIDDEN, go_backwards=True), "go_backwards"),
    (lambda: keras.layers.GRU(HIDDEN, stateful=True), "stateful"),
    (lambda: keras.layers.Bidirectional(keras.layers.LSTM(HIDDEN), merge_mode="sum"), "merge_mode"),
    (lambda: keras.layers.Bidirectional(keras.layers.LSTM(HIDDEN), backward_layer=keras.layers.LSTM(
        HIDDEN + 1, go_backwards=True)), "hidden_size"),
])
def test_what_fastlstm_cannot_honour_is_refused_by_name(make, option):
    layer = make()
    layer.build((BATCH, STEPS, INPUTS))
    with pytest.raises(ValueError, match=option):
        from_keras(layer)


@pytest.mark.parametrize("make", [lambda: keras.layers.LSTM(HIDDEN),
                                  lambda: keras.layers.Bidirectional(keras.layers.GRU(HIDDEN))])
def test_an_unbuilt_layer_is_refused(make):
    with pytest.raises(ValueError, match="not built"):
        from_keras(make())


def test_other_layers_are_refused():
    with pytest.raises(TypeError, match="LSTM, GRU, SimpleRNN or Bidirectional"):
        from_keras(keras.layers.Dense(3))

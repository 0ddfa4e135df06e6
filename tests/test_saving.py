"""fastlstm.save / fastlstm.load, and SequenceModel's learnt initial state."""
import json

import numpy as np
import pytest

import fastlstm
from fastlstm.training import Adam, SequenceModel, mean_squared_error
from support import numeric_gradient

LAYERS = [
    lambda: fastlstm.LSTM(3, 4, 2, bidirectional=True, peephole=True, seed=0, zoneout=0.2, zoneout_cell=0.1,
                          dropout=0.3),
    lambda: fastlstm.GRU(3, 4, batch_first=True, bias=False, reset_after=False, seed=1, dtype="float64",
                         recurrent_dropout=0.25, weight_dropout=0.2, init="orthogonal"),
    lambda: fastlstm.RNN(3, 4, 2, nonlinearity="relu", seed=2, input_dropout=0.2, backend="reference"),
]


def _outputs(obj, x):
    """Outputs of a training-mode call (masks drawn from the object's own generator) and of an
    inference call, flattened to a list of arrays."""
    results = []
    for training in (True, False):
        if isinstance(obj, SequenceModel):
            results.append(obj.forward(x, training=training))
        else:
            y, final = obj(x, training=training)
            results += [y, *(final if isinstance(final, tuple) else (final,))]
    return results


@pytest.mark.parametrize("make", LAYERS)
def test_a_loaded_layer_gives_bitwise_the_same_results(make, tmp_path):
    layer = make()
    layer(np.ones((2, 2, 3)))                # the regularisers' generator has moved on
    if isinstance(layer, fastlstm.GRU):
        layer.eval()                           # the mode is saved too
    path = tmp_path / "layer.npz"
    fastlstm.save(layer, path)
    loaded = fastlstm.load(path)
    assert type(loaded) is type(layer) and loaded.config == layer.config
    assert loaded.training == layer.training
    assert loaded.init_arguments() == layer.init_arguments()
    for name, value in layer.params.items():
        assert loaded.params[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded.params[name], value, err_msg=name)
    x = np.random.default_rng(4).standard_normal((5, 2, 3))
    for expected, got in zip(_outputs(layer, x), _outputs(loaded, x)):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("head", ["sequence", "final"])
def test_a_loaded_model_gives_bitwise_the_same_results_and_keeps_training(head, tmp_path):
    model = SequenceModel(fastlstm.GRU(2, 5, seed=0, recurrent_dropout=0.1), 3, head=head, seed=1,
                          learn_initial_state=True)
    rng = np.random.default_rng(0)
    x, target = rng.standard_normal((6, 4, 2)), rng.standard_normal((6, 4, 3) if head == "sequence" else (4, 3))
    optimiser = Adam(model.params, lr=0.05)
    for _ in range(3):
        _, grads = model.loss_and_gradients(mean_squared_error, x, target)
        optimiser.step(grads)
    assert model.initial_state["h"].any()                          # learnt, not the zeros it started from
    fastlstm.save(model, tmp_path / "model")
    loaded = fastlstm.load(tmp_path / "model.npz")
    assert isinstance(loaded, SequenceModel) and loaded.head == head
    assert sorted(loaded.params) == sorted(model.params)
    for expected, got in zip(_outputs(model, x), _outputs(loaded, x)):
        np.testing.assert_array_equal(got, expected)
    loaded.recurrent.eval()
    before, grads = loaded.loss_and_gradients(mean_squared_error, x, target)
    Adam(loaded.params, lr=0.01).step(grads)                        # updates the loaded model's own arrays
    after, _ = loaded.loss_and_gradients(mean_squared_error, x, target)
    assert after < before


def test_load_can_move_a_layer_to_another_backend(tmp_path):
    layer = fastlstm.LSTM(3, 4, seed=0, dtype="float64")
    fastlstm.save(layer, tmp_path / "l.npz")
    loaded = fastlstm.load(tmp_path / "l.npz", backend="reference")
    assert loaded.config.backend == "reference"
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    np.testing.assert_allclose(loaded(x)[0], layer(x)[0], rtol=0, atol=1e-12)


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def _config(**changes):
    layer = fastlstm.RNN(2, 3, seed=0)
    return {"format": "fastlstm", "format_version": 1, "fastlstm_version": "0.1.0", "class": "RNN",
            "arguments": layer.init_arguments(), "training": True, "rng": None, **changes}, layer.params


def test_load_refuses_what_is_not_a_fastlstm_file(tmp_path):
    with pytest.raises(ValueError, match="is not a file written by fastlstm.save"):
        fastlstm.load(_write(tmp_path / "plain.npz", weights=np.zeros(3)))
    config, params = _config(format="other")
    with pytest.raises(ValueError, match="is not a file written by fastlstm.save"):
        fastlstm.load(_write(tmp_path / "other.npz", **{"fastlstm.json": np.array(json.dumps(config))}))
    with pytest.raises(ValueError, match="is not JSON"):
        fastlstm.load(_write(tmp_path / "broken.npz", **{"fastlstm.json": np.array("{")}))


def test_load_refuses_a_newer_format(tmp_path):
    config, params = _config(format_version=2)
    arrays = {"fastlstm.json": np.array(json.dumps(config)), **{f"param/{k}": v for k, v in params.items()}}
    with pytest.raises(ValueError, match="format version 2, newer than this fastlstm reads"):
        fastlstm.load(_write(tmp_path / "new.npz", **arrays))


@pytest.mark.parametrize("change, fragment", [
    (lambda p: p.pop("param/bias_hh_l0"), "missing ['bias_hh_l0']"),
    (lambda p: p.update({"param/weight_hh_l0": np.zeros((3, 4), np.float32)}), "'weight_hh_l0' is float32 (3, 4)"),
    (lambda p: p.update({"param/weight_hh_l0": np.zeros((3, 3))}), "'weight_hh_l0' is float64 (3, 3)"),
    (lambda p: p.update({"other": np.zeros(1)}), "unexpected entries ['other']"),
])
def test_load_refuses_arrays_that_do_not_match_the_config(tmp_path, change, fragment):
    config, params = _config()
    arrays = {"fastlstm.json": np.array(json.dumps(config)), **{f"param/{k}": v for k, v in params.items()}}
    change(arrays)
    with pytest.raises(ValueError) as raised:
        fastlstm.load(_write(tmp_path / "bad.npz", **arrays))
    assert fragment in str(raised.value)


def test_load_never_unpickles(tmp_path):
    config, params = _config()
    arrays = {"fastlstm.json": np.array(json.dumps(config)), **{f"param/{k}": v for k, v in params.items()},
              "param/weight_ih_l0": np.array([object()], dtype=object)}
    with pytest.raises(ValueError, match="allow_pickle=False"):
        fastlstm.load(_write(tmp_path / "pickle.npz", **arrays))


def test_load_refuses_bad_arguments_and_generators(tmp_path):
    config, params = _config()
    config["arguments"]["hidden_size"] = -1
    arrays = {"fastlstm.json": np.array(json.dumps(config)), **{f"param/{k}": v for k, v in params.items()}}
    with pytest.raises(ValueError, match="hidden_size"):
        fastlstm.load(_write(tmp_path / "a.npz", **arrays))
    config, params = _config(rng={"bit_generator": "os.system", "state": {}})
    arrays = {"fastlstm.json": np.array(json.dumps(config)), **{f"param/{k}": v for k, v in params.items()}}
    with pytest.raises(ValueError, match="unknown random generator 'os.system'"):
        fastlstm.load(_write(tmp_path / "b.npz", **arrays))
    with pytest.raises(TypeError, match="obj: expected a fastlstm layer"):
        fastlstm.save({"weights": 1}, tmp_path / "c.npz")


@pytest.mark.parametrize("make", [lambda: fastlstm.LSTM(2, 3, 2, bidirectional=True, dtype="float64",
                                                        backend="reference", seed=0),
                                  lambda: fastlstm.GRU(2, 3, dtype="float64", backend="reference", seed=0)])
@pytest.mark.parametrize("head", ["sequence", "final"])
def test_the_initial_state_gradient_matches_finite_differences(make, head):
    model = SequenceModel(make(), 2, head=head, seed=1, learn_initial_state=True)
    rng = np.random.default_rng(3)
    for value in model.initial_state.values():
        value[...] = rng.standard_normal(value.shape)
    x = rng.standard_normal((4, 3, 2))
    target = rng.standard_normal((4, 3, 2) if head == "sequence" else (3, 2))
    _, grads = model.loss_and_gradients(mean_squared_error, x, target)
    for name, value in model.initial_state.items():
        def loss():
            return model.apply_loss(mean_squared_error, model.forward(x, tape=False), target)[0]
        np.testing.assert_allclose(grads[f"initial_state.{name}"], numeric_gradient(loss, value),
                                   rtol=1e-6, atol=1e-9, err_msg=name)
    unbatched, _ = model.loss_and_gradients(mean_squared_error, x[:, 0], target[:, 0] if head == "sequence"
                                            else target[0])
    assert np.isfinite(unbatched)

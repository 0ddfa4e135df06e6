"""PyTorch's remaining layer options (bias=False, unbatched input), initialisation schemes, and
state_dict / load_state_dict."""
import numpy as np
import pytest

import fastlstm
from fastlstm import functional
from fastlstm.config import make_config
from fastlstm.cells import make_cell
from support import CELL_VARIANTS, assert_matches_reference, run

LAYERS = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}


def _layer(variant, *args, **kwargs):
    options = dict(CELL_VARIANTS[variant])
    kind = options.pop("kind")
    return LAYERS[kind](*args, **options, **kwargs)


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
def test_bias_false_is_the_cell_with_zero_biases(variant):
    """Without biases a layer has no bias parameters and computes what the layer with zero
    biases computes (the reference), forward and backward; the cpu backend matches the reference."""
    rng = np.random.default_rng(0)
    plain = _layer(variant, 3, 5, 2, bidirectional=True, bias=False, seed=1, dtype="float64", backend="reference")
    assert not [name for name in plain.params if name.startswith("bias")]
    assert set(plain.params) == {n for n in _layer(variant, 3, 5, 2, bidirectional=True).params
                                 if not n.startswith("bias")}
    biased = _layer(variant, 3, 5, 2, bidirectional=True, seed=1, dtype="float64", backend="reference")
    biased.params = {name: np.zeros_like(v) if name.startswith("bias") else plain.params[name]
                     for name, v in biased.params.items()}
    x = rng.standard_normal((6, 2, 3))
    dy = rng.standard_normal((6, 2, 10))
    y, final = plain(x)
    y_biased, final_biased = biased(x)
    np.testing.assert_allclose(y, y_biased, rtol=0, atol=1e-15)
    dx, _ = plain.backward(dy)
    dx_biased, _ = biased.backward(dy)
    np.testing.assert_allclose(dx, dx_biased, rtol=0, atol=1e-15)
    assert set(plain.grads) == set(plain.params)
    for name, grad in plain.grads.items():
        np.testing.assert_allclose(grad, biased.grads[name], rtol=0, atol=1e-14, err_msg=name)

    problem = dict(config=plain.config, params=plain.params, x=x, state=None, dy=dy, dstate=None)
    for dtype in (np.float32, np.float64):
        config = make_config(plain.config.cell, 3, 5, 2, True, dtype=dtype.__name__, bias=False)
        cast = dict(problem, config=config, x=x.astype(dtype), dy=dy.astype(dtype),
                    params={k: v.astype(dtype) for k, v in plain.params.items()})
        assert_matches_reference(run(cast, "cpu"), run(cast, "reference"), dtype)


@pytest.mark.parametrize("variant", ["lstm_peephole", "gru_reset_before", "rnn_relu"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_unbatched_input_is_a_batch_of_one(variant, batch_first, backend):
    """x (T, I) gives y (T, D·H) and states (L·D, H): the batch of one's results without its
    batch axis, forward and backward, whatever batch_first says (PyTorch's unbatched input)."""
    rng = np.random.default_rng(2)
    layer = _layer(variant, 3, 4, 2, bidirectional=True, batch_first=batch_first, seed=0, dtype="float64",
                   backend=backend)
    x = rng.standard_normal((5, 3))
    parts = layer.config.cell.state_count
    state = tuple(rng.standard_normal((4, 4)) for _ in range(parts))
    dy = rng.standard_normal((5, 8))
    dstate = tuple(rng.standard_normal((4, 4)) for _ in range(parts))
    public = (lambda s: s) if parts > 1 else (lambda s: s[0])

    y, final = layer(x, public(state))
    dx, dstate0 = layer.backward(dy, public(dstate))
    grads = layer.grads
    batched = (lambda a: a[None]) if batch_first else (lambda a: a[:, None])
    y1, final1 = layer(batched(x), public(tuple(s[:, None] for s in state)))
    dx1, dstate01 = layer.backward(batched(dy), public(tuple(s[:, None] for s in dstate)))

    assert y.shape == (5, 8) and dx.shape == (5, 3)
    np.testing.assert_array_equal(y, y1.reshape(5, 8))
    np.testing.assert_array_equal(dx, dx1.reshape(5, 3))
    for unbatched_part, batched_part in zip([final] if parts == 1 else final, [final1] if parts == 1 else final1):
        assert unbatched_part.shape == (4, 4)
        np.testing.assert_array_equal(unbatched_part, batched_part.reshape(4, 4))
    for unbatched_part, batched_part in zip([dstate0] if parts == 1 else dstate0,
                                            [dstate01] if parts == 1 else dstate01):
        assert unbatched_part.shape == (4, 4)
        np.testing.assert_array_equal(unbatched_part, batched_part.reshape(4, 4))
    for name, grad in grads.items():
        np.testing.assert_array_equal(grad, layer.grads[name], err_msg=name)


def test_unbatched_input_matches_pytorch():
    torch = pytest.importorskip("torch")
    module = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True).double()
    layer = fastlstm.GRU(3, 4, 2, bidirectional=True, dtype="float64")
    layer.load_state_dict({k: v.detach().numpy() for k, v in module.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((6, 3))
    expected_y, expected_h = module(torch.from_numpy(x))
    y, h = layer(x)
    np.testing.assert_allclose(y, expected_y.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(h, expected_h.detach().numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("call, error, fragment", [
    (lambda l: l(np.zeros((5, 2))), ValueError, "expected 3 features in the last axis of an unbatched"),
    (lambda l: l(np.zeros((5, 3)), lengths=[5]), ValueError, "lengths: an unbatched x"),
    (lambda l: l(np.zeros((5, 3)), (np.zeros((2, 1, 4)), np.zeros((2, 4)))), ValueError,
     "state[0] (h): expected shape (2, 4), (num_layers*directions, H) for an unbatched x"),
    (lambda l: (l(np.zeros((5, 3))), l.backward(np.zeros((5, 1, 4))))[1], ValueError, "dy: expected shape (5, 4)"),
])
def test_unbatched_input_errors(call, error, fragment):
    layer = fastlstm.LSTM(3, 4, 2, backend="reference", dtype="float64")
    with pytest.raises(error) as raised:
        call(layer)
    assert fragment in str(raised.value)


def test_uniform_initialisation_is_pytorchs_draw_in_parameter_order():
    """The default scheme: every parameter U(−1/√H, 1/√H), drawn in float64 from
    default_rng(seed) in the order of parameter_shapes, then cast."""
    layer = fastlstm.LSTM(3, 4, 2, seed=7, dtype="float32")
    rng = np.random.default_rng(7)
    for name, value in layer.params.items():
        expected = rng.uniform(-0.5, 0.5, size=value.shape).astype(np.float32)
        np.testing.assert_array_equal(value, expected, err_msg=name)


def test_keras_initialisation():
    """Glorot-uniform weight_ih (bound √(6/(I+G·H))), weight_hh with orthonormal columns, zero
    biases but the LSTM's forget gate (1), like Keras' defaults."""
    layer = fastlstm.LSTM(40, 30, seed=3, init="keras", dtype="float64")
    w_ih, w_hh = layer.params["weight_ih_l0"], layer.params["weight_hh_l0"]
    bound = np.sqrt(6 / (40 + 120))
    assert np.abs(w_ih).max() <= bound
    assert abs(w_ih.std() - bound / np.sqrt(3)) < 0.05 * bound          # uniform's spread, 4800 draws
    np.testing.assert_allclose(w_hh.T @ w_hh, np.eye(30), atol=1e-12)
    expected_bias = np.zeros(120)
    expected_bias[30:60] = 1.0
    np.testing.assert_array_equal(layer.params["bias_ih_l0"], expected_bias)
    np.testing.assert_array_equal(layer.params["bias_hh_l0"], np.zeros(120))
    gru = fastlstm.GRU(5, 6, seed=3, init="keras")
    assert not gru.params["bias_ih_l0"].any() and not gru.params["bias_hh_l0"].any()


@pytest.mark.parametrize("inputs", [3, 9])
def test_orthogonal_initialisation_per_gate(inputs):
    layer = fastlstm.GRU(inputs, 6, seed=5, init="orthogonal", dtype="float64")
    for gate in range(3):
        block = layer.params["weight_hh_l0"][gate * 6:(gate + 1) * 6]
        np.testing.assert_allclose(block @ block.T, np.eye(6), atol=1e-12)
        ih = layer.params["weight_ih_l0"][gate * 6:(gate + 1) * 6]        # (6, inputs)
        gram = ih.T @ ih if inputs < 6 else ih @ ih.T
        np.testing.assert_allclose(gram, np.eye(min(inputs, 6)), atol=1e-12)
    assert not layer.params["bias_ih_l0"].any()


def test_initialisation_is_seeded_and_forget_bias_sets_the_gate():
    for init in ("uniform", "keras", "orthogonal"):
        a = fastlstm.LSTM(3, 4, seed=11, init=init, forget_bias=2.5)
        b = fastlstm.LSTM(3, 4, seed=11, init=init, forget_bias=2.5)
        c = fastlstm.LSTM(3, 4, seed=12, init=init, forget_bias=2.5)
        for name in a.params:
            np.testing.assert_array_equal(a.params[name], b.params[name])
        assert not np.array_equal(a.params["weight_hh_l0"], c.params["weight_hh_l0"])
        total = a.params["bias_ih_l0"] + a.params["bias_hh_l0"]
        np.testing.assert_array_equal(total[4:8], np.full(4, 2.5, np.float32))
        assert a.init_arguments()["forget_bias"] == 2.5


@pytest.mark.parametrize("make, error, fragment", [
    (lambda: fastlstm.GRU(3, 4, forget_bias=1.0), TypeError, "forget_bias"),
    (lambda: fastlstm.LSTM(3, 4, bias=False, forget_bias=1.0), ValueError, "bias=False"),
    (lambda: fastlstm.LSTM(3, 4, forget_bias="1"), TypeError, "forget_bias: expected None or a real number"),
    (lambda: fastlstm.LSTM(3, 4, forget_bias=float("nan")), ValueError, "forget_bias: expected a finite"),
    (lambda: fastlstm.LSTM(3, 4, init="xavier"), ValueError, "init: expected one of"),
    (lambda: fastlstm.RNN(3, 4, bias="no"), TypeError, "bias: expected True or False"),
])
def test_option_errors(make, error, fragment):
    with pytest.raises(error) as raised:
        make()
    assert fragment in str(raised.value)


def test_state_dict_round_trip_copies_and_converts():
    source = fastlstm.LSTM(3, 4, 2, peephole=True, seed=0, dtype="float64")
    saved = source.state_dict()
    assert list(saved) == list(source.config.parameter_shapes())
    saved["weight_hh_l0"][...] = 0                      # a copy: the layer is untouched
    assert source.params["weight_hh_l0"].any()
    target = fastlstm.LSTM(3, 4, 2, peephole=True, seed=1, dtype="float32")
    target.load_state_dict(source.state_dict())
    for name, value in source.params.items():
        assert target.params[name].dtype == np.float32
        np.testing.assert_array_equal(target.params[name], value.astype(np.float32))
    given = source.state_dict()
    target.load_state_dict(given)
    given["weight_ih_l0"][...] = 0                      # loaded values are copies too
    assert target.params["weight_ih_l0"].any()


@pytest.mark.parametrize("change, error, fragment", [
    (lambda d: d.pop("bias_hh_l0"), ValueError, "missing ['bias_hh_l0']"),
    (lambda d: d.update(extra=np.zeros(3)), ValueError, "unexpected ['extra']"),
    (lambda d: d.update(weight_hh_l0=np.zeros((16, 5))), ValueError,
     "state_dict['weight_hh_l0']: expected shape (16, 4), got (16, 5)"),
    (lambda d: d.update(bias_ih_l0=np.array(["a"] * 16)), TypeError, "state_dict['bias_ih_l0']"),
])
def test_load_state_dict_errors_change_nothing(change, error, fragment):
    layer = fastlstm.LSTM(3, 4, seed=0)
    before = layer.state_dict()
    bad = fastlstm.LSTM(3, 4, seed=1).state_dict()
    change(bad)
    with pytest.raises(error) as raised:
        layer.load_state_dict(bad)
    assert fragment in str(raised.value)
    for name, value in before.items():
        np.testing.assert_array_equal(layer.params[name], value)
    with pytest.raises(TypeError, match="state_dict: expected a mapping"):
        layer.load_state_dict([1, 2])


@pytest.mark.parametrize("variant", ["lstm", "gru_reset_before", "rnn_relu"])
def test_init_arguments_rebuild_the_layer(variant):
    layer = _layer(variant, 3, 4, 2, bidirectional=True, batch_first=True, bias=False, seed=5, init="orthogonal",
                   dtype="float64", dropout=0.25, zoneout=0.1)
    twin = type(layer)(**layer.init_arguments())
    assert twin.config == layer.config
    for name, value in layer.params.items():
        np.testing.assert_array_equal(twin.params[name], value)

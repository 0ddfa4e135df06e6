"""``layer.step``: one step of inference at a time equals ``forward`` over the whole sequence, reads
the parameters as they are now, and rejects what it cannot run."""
import copy
import pickle
import re

import numpy as np
import pytest

import fastlstm
from support import CELL_VARIANTS, state_parts

LAYERS = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}
# step and forward sum each projection in another order: float32 differs by a few roundings
CLOSE = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def make_layer(variant, inputs=4, hidden=5, **options):
    spec = dict(CELL_VARIANTS[variant])
    return LAYERS[spec.pop("kind")](inputs, hidden, seed=7, **spec, **options)


def random_state(layer, batch, rng):
    config = layer.config
    parts = tuple(rng.standard_normal(config.state_shape(batch)).astype(config.dtype)
                  for _ in config.cell.spec.states)
    return parts if len(parts) > 1 else parts[0]


def stream(layer, xs, state=None):
    """Every step of ``xs`` (T, …) through ``layer.step``: the stacked outputs and the last state."""
    outputs = []
    for x_t in xs:
        y_t, state = layer.step(x_t, state)
        outputs.append(y_t)
    return np.stack(outputs), state


def assert_states_close(got, expected, **tolerance):
    for g, e in zip(state_parts(got), state_parts(expected)):
        np.testing.assert_allclose(g, e, **tolerance)


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layers, batch", [(1, 1), (1, "unbatched"), (2, 3), (2, 1)])
def test_steps_equal_one_forward(variant, dtype, layers, batch):
    """T steps of ``step`` are ``forward(x, training=False, tape=False)`` of the T steps; with two
    layers every regulariser is set (in inference only zoneout acts: its expectation mixes each
    state) and the state is given."""
    rates = {}
    if layers == 2:
        rates = dict(zoneout=0.3, dropout=0.5, input_dropout=0.2, recurrent_dropout=0.3, weight_dropout=0.1)
        if variant.startswith("lstm"):
            rates["zoneout_cell"] = 0.4
    layer = make_layer(variant, num_layers=layers, dtype=np.dtype(dtype).name, **rates)
    rng = np.random.default_rng(1)
    unbatched = batch == "unbatched"
    xs = rng.standard_normal((6, 4) if unbatched else (6, batch, 4)).astype(dtype)
    state = random_state(layer, batch, rng) if layers == 2 else None

    ys, final = stream(layer, xs, state)
    if unbatched:
        y, expected_final = layer.forward(xs[:, None], tape=False, training=False)
        y = y[:, 0]
        expected_final = tuple(s[:, 0] for s in state_parts(expected_final))
    else:
        y, expected_final = layer.forward(xs, state, tape=False, training=False)

    assert ys.dtype == np.dtype(dtype) and ys.shape == y.shape
    np.testing.assert_allclose(ys, y, **CLOSE[dtype])
    assert all(s.shape == e.shape and s.dtype == np.dtype(dtype)
               for s, e in zip(state_parts(final), state_parts(expected_final)))
    assert_states_close(final, expected_final, **CLOSE[dtype])


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
def test_sequences_do_not_interact(variant):
    """Each sequence of a batch steps exactly (bitwise) as it would alone, and an unbatched step is a
    batch of one."""
    layer = make_layer(variant, num_layers=2, dtype="float32")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 4)).astype(np.float32)     # 5: a tile of four sequences and one alone
    state = random_state(layer, 5, rng)
    y, new = layer.step(x, state)
    for b in range(5):
        alone_state = tuple(s[:, b] for s in state_parts(state))      # (num_layers, H): unbatched
        alone_y, alone = layer.step(x[b], alone_state if len(alone_state) > 1 else alone_state[0])
        np.testing.assert_array_equal(alone_y, y[b])
        for s, a in zip(state_parts(new), state_parts(alone)):
            np.testing.assert_array_equal(a, s[:, b])


@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
def test_reference_step_matches_cpu_step(variant):
    """The reference backend's step (its general forward on one step) against the compiled one."""
    cpu = make_layer(variant, num_layers=2, dtype="float64", zoneout=0.2)
    reference = make_layer(variant, num_layers=2, dtype="float64", zoneout=0.2, backend="reference")
    reference.params = dict(cpu.params)
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((4, 2, 4))
    state = random_state(cpu, 2, rng)
    ys, final = stream(cpu, xs, state)
    ys_reference, final_reference = stream(reference, xs, state)
    np.testing.assert_allclose(ys, ys_reference, rtol=1e-12, atol=1e-13)
    assert_states_close(final, final_reference, rtol=1e-12, atol=1e-13)
    unbatched_y, _ = reference.step(xs[0, 0])
    np.testing.assert_allclose(unbatched_y, cpu.step(xs[0, 0])[0], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind, options", [("lstm", {}), ("gru", {}), ("rnn", {"nonlinearity": "tanh"}),
                                           ("rnn", {"nonlinearity": "relu"})])
def test_step_matches_pytorch_cells(kind, options):
    torch = pytest.importorskip("torch")
    peer_class = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[kind]
    layer = LAYERS[kind](4, 5, dtype="float64", seed=5, **options)
    peer = peer_class(4, 5, dtype=torch.float64, **options)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(peer, name).copy_(torch.from_numpy(layer.params[name + "_l0"]))
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((5, 3, 4))
    state, peer_state = None, None
    for x_t in xs:
        y_t, state = layer.step(x_t, state)
        with torch.no_grad():
            peer_state = peer(torch.from_numpy(x_t), peer_state)
        peer_h = peer_state[0] if kind == "lstm" else peer_state
        np.testing.assert_allclose(y_t, peer_h.numpy(), rtol=1e-12, atol=1e-13)
    if kind == "lstm":
        np.testing.assert_allclose(state[1][0], peer_state[1].numpy(), rtol=1e-12, atol=1e-13)


def test_bias_false():
    layer = fastlstm.GRU(4, 5, num_layers=2, bias=False, dtype="float64", seed=1)
    assert not any(name.startswith("bias") for name in layer.params)
    xs = np.random.default_rng(5).standard_normal((4, 2, 4))
    ys, final = stream(layer, xs)
    y, expected_final = layer.forward(xs, tape=False, training=False)
    np.testing.assert_allclose(ys, y, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(final, expected_final, rtol=1e-12, atol=1e-13)


def test_batch_first_layers_step_the_same():
    layer = make_layer("lstm", batch_first=True, dtype="float64")
    xs = np.random.default_rng(6).standard_normal((3, 5, 4))      # (B, T, I)
    ys, _ = stream(layer, xs.transpose(1, 0, 2))
    y, _ = layer.forward(xs, tape=False, training=False)
    np.testing.assert_allclose(ys.transpose(1, 0, 2), y, rtol=1e-12, atol=1e-13)


def one_step_forward(layer, x, state):
    """What forward computes for one step from ``state`` with the layer's current parameters."""
    y, final = layer.forward(x[None], state, tape=False, training=False)
    return y[0], final


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_parameters_updated_in_place_are_used(dtype):
    layer = make_layer("lstm_peephole", num_layers=2, dtype=dtype)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4)).astype(dtype)
    state = random_state(layer, 2, rng)
    before, _ = layer.step(x, state)
    for name, value in layer.params.items():          # an optimiser's update: the same arrays
        value *= 0.5
        value += 0.01 * (1 + len(name) % 3)
    after, new = layer.step(x, state)
    expected, expected_new = one_step_forward(layer, x, state)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, expected, **CLOSE[np.dtype(dtype).type])
    assert_states_close(new, expected_new, **CLOSE[np.dtype(dtype).type])


def test_reassigned_parameters_are_used():
    layer = make_layer("gru", num_layers=2, dtype="float64")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 4))
    state = random_state(layer, 2, rng)
    params = layer.params
    changes = [   # (what changes, whether the values change beyond rounding)
        (lambda: params.__setitem__("weight_hh_l1", params["weight_hh_l1"] * 2.0), True),      # an entry
        (lambda: setattr(layer, "params", {k: v - 0.05 for k, v in layer.params.items()}), True),   # the dict
        (lambda: layer.load_state_dict({k: v + 0.1 for k, v in layer.state_dict().items()}), True),
        # an array that cannot be read in place (float32 in a float64 layer), then changed in place
        (lambda: layer.params.__setitem__("weight_ih_l0", layer.params["weight_ih_l0"].astype(np.float32)), False),
        (lambda: layer.params["weight_ih_l0"].__imul__(np.float32(3.0)), True),
        # a Fortran-ordered copy (the same values), then changed in place
        (lambda: layer.params.__setitem__("weight_hh_l0", np.asfortranarray(layer.params["weight_hh_l0"])), False),
        (lambda: layer.params["weight_hh_l0"].__imul__(-1.0), True),
    ]
    for change, changes_values in changes:
        before, _ = layer.step(x, state)
        change()
        after, new = layer.step(x, state)
        expected, expected_new = one_step_forward(layer, x, state)
        assert np.allclose(after, before) != changes_values
        np.testing.assert_allclose(after, expected, **CLOSE[np.float64])
        np.testing.assert_allclose(new, expected_new, **CLOSE[np.float64])


def test_inputs_are_never_modified_and_results_are_new_arrays():
    layer = make_layer("lstm", num_layers=2, dtype="float32")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    state = random_state(layer, 3, rng)
    x_copy, state_copy = x.copy(), tuple(s.copy() for s in state)
    y, new = layer.step(x, state)
    np.testing.assert_array_equal(x, x_copy)
    for s, c in zip(state, state_copy):
        np.testing.assert_array_equal(s, c)
    arrays = [x, *state, y, *new]
    for i, a in enumerate(arrays):
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)
    again, _ = layer.step(x, new)              # a returned state fed back in is not changed either
    np.testing.assert_array_equal(new[0][-1], y)
    assert not np.shares_memory(again, y)


def test_inputs_are_converted():
    layer = make_layer("rnn_tanh", dtype="float32")
    x = np.random.default_rng(10).standard_normal((2, 4))
    y, h = layer.step(x.tolist(), np.zeros((1, 2, 5), np.int64))
    expected, expected_h = layer.step(x.astype(np.float32))
    assert y.dtype == h.dtype == np.float32
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(h, expected_h)
    strided, _ = layer.step(np.asfortranarray(np.tile(x.astype(np.float32), (1, 2)))[:, :4])
    np.testing.assert_array_equal(strided, expected)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_pickled_and_copied_layers_step_alike(backend):
    layer = make_layer("lstm", num_layers=2, dtype="float64", backend=backend)
    x = np.random.default_rng(11).standard_normal((2, 4))
    y, state = layer.step(x)
    restored = pickle.loads(pickle.dumps(layer))
    duplicate = copy.deepcopy(layer)
    for other in (restored, duplicate):
        np.testing.assert_array_equal(other.step(x, state)[0], layer.step(x, state)[0])
    for value in duplicate.params.values():
        value *= 2.0
    assert not np.allclose(duplicate.step(x)[0], y)
    np.testing.assert_array_equal(layer.step(x)[0], y)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_a_bidirectional_layer_cannot_step(backend):
    layer = make_layer("gru", bidirectional=True, backend=backend)
    with pytest.raises(ValueError, match="bidirectional"):
        layer.step(np.zeros((1, 4)))


LSTM_STATE = (np.zeros((2, 3, 5)), np.zeros((2, 3, 5)))
ERRORS = [
    ("gru", np.zeros((1, 3, 4)), None, ValueError, "x_t: expected a 2-d array (B, features)"),
    ("gru", np.zeros((3, 6)), None, ValueError, "x_t: expected 4 features in the last axis of (B, features)"),
    ("gru", np.zeros(6), None, ValueError, "x_t: expected 4 features in the last axis of (features,)"),
    ("gru", np.zeros((0, 4)), None, ValueError, "x_t: expected at least one sequence"),
    ("gru", np.zeros((3, 4), complex), None, TypeError, "x_t: expected real numbers"),
    ("gru", np.zeros((3, 4)), np.zeros((2, 2, 5)), ValueError, "state: expected shape (2, 3, 5) (num_layers, B, H) "
                                                               "with B = 3"),
    ("gru", np.zeros((3, 4)), np.zeros((1, 3, 5)), ValueError, "state: expected shape (2, 3, 5)"),
    ("gru", np.zeros(4), np.zeros((2, 1, 5)), ValueError, "state: expected shape (2, 5) (num_layers, H) for an "
                                                          "unbatched x_t"),
    ("gru", np.zeros((3, 4)), (np.zeros((2, 3, 5)),), TypeError, "state: expected one array"),
    ("lstm", np.zeros((3, 4)), np.zeros((2, 3, 5)), TypeError, "state: expected a pair (h, c)"),
    ("lstm", np.zeros((3, 4)), LSTM_STATE[:1], TypeError, "state: expected a pair (h, c)"),
    ("lstm", np.zeros((3, 4)), (LSTM_STATE[0], np.zeros((2, 3, 6))), ValueError, "state[1] (c): expected shape"),
    ("lstm", np.zeros((3, 4)), (LSTM_STATE[0], np.array([["a"]])), TypeError, "state[1] (c): expected real"),
]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("variant, x, state, error, fragment", ERRORS)
def test_bad_input_is_rejected_clearly(backend, variant, x, state, error, fragment):
    layer = make_layer(variant, num_layers=2, backend=backend)
    with pytest.raises(error, match=re.escape(fragment)):
        layer.step(x, state)


def test_bad_parameters_are_rejected_like_forward():
    layer = make_layer("rnn_relu")
    layer.params["weight_hh_l0"] = np.zeros((5, 4))
    with pytest.raises(ValueError, match=r"params\['weight_hh_l0'\]: expected shape \(5, 5\)"):
        layer.step(np.zeros((1, 4)))
    del layer.params["weight_hh_l0"]
    with pytest.raises(ValueError, match=r"missing \['weight_hh_l0'\]"):
        layer.step(np.zeros((1, 4)))

"""fastlstm.interop.from_torch / to_torch: a converted layer computes what the PyTorch module
computes (outputs, final states, gradients), parameters round-trip bitwise, and what one side
cannot express is refused by name (skipped when PyTorch is not installed)."""
import numpy as np
import pytest

import fastlstm
from fastlstm.interop import from_torch, to_torch

torch = pytest.importorskip("torch")

# I ≠ H and T, B distinct, so that a transposed or misplaced weight block cannot pass.
STEPS, BATCH, INPUTS, HIDDEN = 5, 3, 4, 6
# float32: fastlstm's float32 gates approximate sigmoid/tanh to a few ulps, PyTorch's are
# libm's; on O(1) values through two layers that is well under 1e-5. float64: both accurate.
TOLERANCE = {"float32": dict(rtol=1e-5, atol=1e-5), "float64": dict(rtol=1e-12, atol=1e-12)}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}

MODULES = {
    "lstm": lambda *args, **options: torch.nn.LSTM(*args, **options),
    "gru": lambda *args, **options: torch.nn.GRU(*args, **options),
    "rnn_tanh": lambda *args, **options: torch.nn.RNN(*args, nonlinearity="tanh", **options),
    "rnn_relu": lambda *args, **options: torch.nn.RNN(*args, nonlinearity="relu", **options),
}


def torch_module(cell, dtype="float64", seed=0, **options):
    torch.manual_seed(seed)
    return MODULES[cell](INPUTS, HIDDEN, dtype=TORCH_DTYPES[dtype], **options)


def random_inputs(module, dtype, seed=1):
    """x in the module's layout and a non-zero initial state ((h0, c0) for the LSTM)."""
    rng = np.random.default_rng(seed)
    shape = (BATCH, STEPS, INPUTS) if module.batch_first else (STEPS, BATCH, INPUTS)
    x = rng.standard_normal(shape).astype(dtype)
    state_shape = (module.num_layers * (2 if module.bidirectional else 1), BATCH, HIDDEN)
    states = tuple(rng.standard_normal(state_shape).astype(dtype) for _ in range(2))
    return x, states if isinstance(module, torch.nn.LSTM) else states[0]


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def torch_forward(module, x, state):
    with torch.no_grad():
        if state is None:
            y, final = module(torch.from_numpy(x))
        elif isinstance(state, tuple):
            y, final = module(torch.from_numpy(x), tuple(map(torch.from_numpy, state)))
        else:
            y, final = module(torch.from_numpy(x), torch.from_numpy(state))
    return y.numpy(), tuple(s.numpy() for s in as_tuple(final))


def assert_same_outputs(ours, theirs, tolerance):
    (y, final), (y_peer, final_peer) = ours, theirs
    np.testing.assert_allclose(y, y_peer, **tolerance, err_msg="y")
    for k, (state, state_peer) in enumerate(zip(as_tuple(final), final_peer)):
        np.testing.assert_allclose(state, state_peer, **tolerance, err_msg=f"final state {k}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", list(MODULES))
def test_from_torch_computes_what_the_module_computes(cell, num_layers, bidirectional, batch_first, bias, dtype):
    module = torch_module(cell, dtype, num_layers=num_layers, bidirectional=bidirectional,
                          batch_first=batch_first, bias=bias)
    layer = from_torch(module)
    assert layer.params["weight_ih_l0"].dtype == np.dtype(dtype)
    assert (f"bias_ih_l{num_layers - 1}" in layer.params) is bias
    x, state = random_inputs(module, dtype)
    for initial in (None, state):
        assert_same_outputs(layer(x, initial), torch_forward(module, x, initial), TOLERANCE[dtype])


def test_gradients_match_torch_autograd():
    module = torch_module("lstm", "float64", num_layers=2, bidirectional=True, batch_first=True)
    layer = from_torch(module)
    x, (h0, c0) = random_inputs(module, "float64")
    rng = np.random.default_rng(2)
    dy = rng.standard_normal((BATCH, STEPS, 2 * HIDDEN))
    dh, dc = (rng.standard_normal(h0.shape) for _ in range(2))

    layer(x, (h0, c0))
    dx, (dh0, dc0) = layer.backward(dy, (dh, dc))

    x_t, h0_t, c0_t = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    y_t, (h_t, c_t) = module(x_t, (h0_t, c0_t))
    loss = (y_t * torch.from_numpy(dy)).sum() + (h_t * torch.from_numpy(dh)).sum() + (c_t * torch.from_numpy(dc)).sum()
    loss.backward()

    tolerance = TOLERANCE["float64"]
    np.testing.assert_allclose(dx, x_t.grad.numpy(), **tolerance, err_msg="dx")
    np.testing.assert_allclose(dh0, h0_t.grad.numpy(), **tolerance, err_msg="dh0")
    np.testing.assert_allclose(dc0, c0_t.grad.numpy(), **tolerance, err_msg="dc0")
    torch_grads = {name: parameter.grad.numpy() for name, parameter in module.named_parameters()}
    assert set(layer.grads) == set(torch_grads)
    for name, grad in layer.grads.items():
        np.testing.assert_allclose(grad, torch_grads[name], **tolerance, err_msg=name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell, bias", [("lstm", True), ("gru", False), ("rnn_tanh", True), ("rnn_relu", False)])
def test_round_trip_is_bitwise(cell, bias, dtype):
    module = torch_module(cell, dtype, num_layers=2, bidirectional=True, batch_first=True, bias=bias, dropout=0.25)
    back = to_torch(from_torch(module))
    assert type(back) is type(module)
    for option in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional",
                   "mode", "training"):
        assert getattr(back, option) == getattr(module, option), option
    theirs, ours = dict(module.named_parameters()), dict(back.named_parameters())
    assert list(ours) == list(theirs)
    for name, parameter in theirs.items():
        assert ours[name].dtype == parameter.dtype, name
        assert torch.equal(ours[name], parameter), name


def test_from_torch_copies_the_parameters():
    module = torch_module("gru", "float32")
    layer = from_torch(module)
    before = {name: value.copy() for name, value in layer.params.items()}
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(1.0)
    for name, value in layer.params.items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_train_and_eval_modes_and_dropout_carry_over():
    module = torch_module("lstm", "float64", num_layers=2, dropout=0.5)
    assert from_torch(module).training is True
    layer = from_torch(module.eval())
    assert layer.training is False
    assert layer.config.regularisation.dropout == 0.5
    # in inference dropout is off on both sides: the outputs agree
    x, state = random_inputs(module, "float64")
    assert_same_outputs(layer(x, state), torch_forward(module, x, state), TOLERANCE["float64"])
    assert to_torch(layer).training is False


def test_dtype_option_converts_and_defaults_to_the_modules():
    module = torch_module("rnn_tanh", "float32")
    layer = from_torch(module, dtype="float64")
    assert layer.config.dtype is np.float64
    for name, parameter in module.named_parameters():   # float32 -> float64 is exact
        np.testing.assert_array_equal(layer.params[name], parameter.detach().numpy().astype(np.float64))
    with pytest.raises(ValueError, match="dtype"):
        from_torch(torch_module("rnn_tanh", "float32").to(torch.float16))
    assert from_torch(torch_module("rnn_tanh", "float32").to(torch.float16), dtype="float32").config.dtype is np.float32


@pytest.mark.parametrize("layer_class, options", [
    (fastlstm.LSTM, {}), (fastlstm.GRU, {}), (fastlstm.RNN, {"nonlinearity": "tanh"}),
    (fastlstm.RNN, {"nonlinearity": "relu"}),
])
def test_to_torch_of_a_fastlstm_layer_computes_what_the_layer_computes(layer_class, options):
    layer = layer_class(INPUTS, HIDDEN, 2, bidirectional=True, batch_first=True, dtype="float64", seed=3, **options)
    module = to_torch(layer)
    assert module.batch_first and module.bidirectional and module.num_layers == 2
    assert module.weight_ih_l0.dtype == torch.float64
    x, state = random_inputs(module, "float64")
    assert_same_outputs(layer(x, state), torch_forward(module, x, state), TOLERANCE["float64"])


def test_to_torch_keeps_float32_and_bias_false():
    layer = fastlstm.GRU(INPUTS, HIDDEN, bias=False, seed=4)
    module = to_torch(layer)
    assert module.bias is False and module.weight_hh_l0.dtype == torch.float32
    assert sorted(name for name, _ in module.named_parameters()) == sorted(layer.params)
    x, state = random_inputs(module, "float32")
    assert_same_outputs(layer(x, state), torch_forward(module, x, state), TOLERANCE["float32"])


def test_proj_size_is_refused_by_name():
    with pytest.raises(ValueError, match="proj_size"):
        from_torch(torch.nn.LSTM(INPUTS, HIDDEN, proj_size=2))


@pytest.mark.parametrize("layer, option", [
    (lambda: fastlstm.LSTM(INPUTS, HIDDEN, peephole=True), "peephole"),
    (lambda: fastlstm.GRU(INPUTS, HIDDEN, reset_after=False), "reset_after"),
    (lambda: fastlstm.LSTM(INPUTS, HIDDEN, input_dropout=0.1), "input_dropout"),
    (lambda: fastlstm.GRU(INPUTS, HIDDEN, recurrent_dropout=0.1), "recurrent_dropout"),
    (lambda: fastlstm.RNN(INPUTS, HIDDEN, zoneout=0.1), "zoneout"),
    (lambda: fastlstm.LSTM(INPUTS, HIDDEN, zoneout_cell=0.1), "zoneout_cell"),
    (lambda: fastlstm.LSTM(INPUTS, HIDDEN, weight_dropout=0.1), "weight_dropout"),
])
def test_what_pytorch_cannot_express_is_refused_by_name(layer, option):
    with pytest.raises(ValueError, match=option):
        to_torch(layer())


def test_wrong_types_are_refused():
    with pytest.raises(TypeError, match="module"):
        from_torch(torch.nn.Linear(2, 3))
    with pytest.raises(TypeError, match="layer"):
        to_torch(torch.nn.LSTM(2, 3))

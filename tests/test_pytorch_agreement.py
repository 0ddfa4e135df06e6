"""The reference against PyTorch's nn.LSTM / nn.GRU / nn.RNN: same names, shapes, gate orders
and equations (skipped when PyTorch is not installed)."""
import numpy as np
import pytest

import fastlstm

torch = pytest.importorskip("torch")

CASES = [
    (fastlstm.LSTM, torch.nn.LSTM, {}, {}),
    (fastlstm.GRU, torch.nn.GRU, {}, {}),
    (fastlstm.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}, {"nonlinearity": "tanh"}),
    (fastlstm.RNN, torch.nn.RNN, {"nonlinearity": "relu"}, {"nonlinearity": "relu"}),
]


@pytest.mark.parametrize("ours, theirs, our_options, their_options", CASES)
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_matches_pytorch(ours, theirs, our_options, their_options, backend):
    steps, batch, inputs, hidden = 5, 3, 4, 6
    layer = ours(inputs, hidden, dtype="float64", backend=backend, seed=0, **our_options)
    peer = theirs(inputs, hidden, dtype=torch.float64, **their_options)
    with torch.no_grad():
        for name, value in layer.params.items():
            getattr(peer, name).copy_(torch.from_numpy(value))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((steps, batch, inputs))
    h0 = rng.standard_normal((1, batch, hidden))
    dy = rng.standard_normal((steps, batch, hidden))
    is_lstm = ours is fastlstm.LSTM
    state = (h0, rng.standard_normal((1, batch, hidden))) if is_lstm else h0

    y, final = layer(x, state)
    dx, _ = layer.backward(dy)

    xt = torch.tensor(x, requires_grad=True)
    state_t = tuple(torch.tensor(s) for s in state) if is_lstm else torch.tensor(state)
    yt, final_t = peer(xt, state_t)
    (yt * torch.from_numpy(dy)).sum().backward()

    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    for ours_s, theirs_s in zip(final if is_lstm else (final,), final_t if is_lstm else (final_t,)):
        np.testing.assert_allclose(ours_s, theirs_s.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, grad in layer.grads.items():
        np.testing.assert_allclose(grad, getattr(peer, name).grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)

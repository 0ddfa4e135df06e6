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


@pytest.mark.parametrize("ours, theirs", [(fastlstm.LSTM, torch.nn.LSTM), (fastlstm.GRU, torch.nn.GRU)])
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_stacked_bidirectional_packed_sequences_match_pytorch(ours, theirs, backend):
    steps, batch, inputs, hidden = 6, 4, 3, 5
    lengths = np.array([4, 6, 1, 3])
    layer = ours(inputs, hidden, num_layers=2, bidirectional=True, batch_first=True, dtype="float64",
                 backend=backend, seed=0)
    peer = theirs(inputs, hidden, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for name, value in layer.params.items():
            getattr(peer, name).copy_(torch.from_numpy(value))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((batch, steps, inputs))
    dy = rng.standard_normal((batch, steps, 2 * hidden))
    is_lstm = ours is fastlstm.LSTM
    h0 = rng.standard_normal((4, batch, hidden))
    state = (h0, rng.standard_normal((4, batch, hidden))) if is_lstm else h0

    y, final = layer(x, state, lengths=lengths)
    dx, dstate0 = layer.backward(dy)

    xt = torch.tensor(x, requires_grad=True)
    state_t = tuple(torch.tensor(s, requires_grad=True) for s in state) if is_lstm \
        else torch.tensor(state, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    out, final_t = peer(packed, state_t)
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=steps)
    (yt * torch.from_numpy(dy)).sum().backward()

    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, yt.detach().numpy(), **close)
    pairs = zip(final, final_t) if is_lstm else [(final, final_t)]
    for ours_s, theirs_s in pairs:
        np.testing.assert_allclose(ours_s, theirs_s.detach().numpy(), **close)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **close)
    grads0 = zip(dstate0, state_t) if is_lstm else [(dstate0, state_t)]
    for ours_d, theirs_s in grads0:
        np.testing.assert_allclose(ours_d, theirs_s.grad.numpy(), **close)
    for name, grad in layer.grads.items():
        np.testing.assert_allclose(grad, getattr(peer, name).grad.numpy(), err_msg=name, **close)

"""Inference (``tape=False``): the same outputs as a recorded forward, nothing kept for backward."""
import numpy as np
import pytest

import fastlstm
from fastlstm import functional

from support import CELL_VARIANTS, make_problem, state_parts, with_backend

LAYERS = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", sorted(CELL_VARIANTS))
@pytest.mark.parametrize("batch", [1, 3, 11])
def test_inference_equals_the_recorded_forward(variant, dtype, batch, backend):
    problem = make_problem(variant, 6, batch, 4, 19, dtype, seed=batch, with_state=True,
                           num_layers=2, bidirectional=True, lengths=np.arange(batch) % 7)
    config = with_backend(problem["config"], backend)
    args = (config, problem["params"], problem["x"], problem["state"], problem["lengths"])
    y, final, tape = functional.forward(*args)
    y_inference, final_inference, no_tape = functional.forward(*args, tape=False)
    assert tape is not None and no_tape is None
    np.testing.assert_array_equal(y_inference, y)
    for got, expected in zip(state_parts(final_inference), state_parts(final)):
        np.testing.assert_array_equal(got, expected)


def test_backward_after_inference_raises():
    layer = fastlstm.LSTM(3, 4, seed=0)
    x = np.ones((2, 1, 3))
    layer(x)
    layer(x, tape=False)
    with pytest.raises(RuntimeError, match="tape=False"):
        layer.backward(np.ones((2, 1, 4)))

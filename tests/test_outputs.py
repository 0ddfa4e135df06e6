"""The layer's output written from a direction's state history (fastlstm.backends.cpu.outputs)."""
import numpy as np
import pytest

from fastlstm.backends.cpu import outputs
from fastlstm.backends.cpu.driver import reverse_index


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parallel_bytes", [0, 1 << 60], ids=["blocks-on-threads", "small-path"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_output_is_each_steps_h_in_natural_time_and_zero_past_the_end(dtype, parallel_bytes, reverse, padded,
                                                                       monkeypatch):
    monkeypatch.setattr(outputs, "PARALLEL_OUTPUT_BYTES", parallel_bytes)
    rng = np.random.default_rng(3)
    steps, batch, hidden, offset = 23, 5, 7, 7
    states = rng.standard_normal((2, steps + 1, batch, hidden)).astype(dtype)
    lengths = np.array([23, 17, 9, 9, 1]) if padded else None
    time = reverse_index(steps, batch, lengths)[0] if reverse else None
    valid = (np.arange(steps)[:, None] < lengths[None, :]) if padded else None
    y = np.full((steps, batch, 2 * hidden), np.nan, dtype)
    before = states.copy()
    outputs.write_output(states, time, valid, y, offset)
    for t in range(steps):
        for b in range(batch):
            if padded and t >= lengths[b]:
                expected = np.zeros(hidden)
            else:
                n = steps if lengths is None else lengths[b]
                expected = states[0, (n - 1 - t if reverse else t) + 1, b]
            np.testing.assert_array_equal(y[t, b, offset:], expected)
    assert np.isnan(y[..., :offset]).all()      # the other direction's columns untouched
    np.testing.assert_array_equal(states, before)

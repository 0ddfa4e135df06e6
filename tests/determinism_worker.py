"""Run by tests/test_determinism.py in a subprocess (its thread count set by NUMBA_NUM_THREADS):
prints, as JSON, a digest of every result of a set of training and inference calls."""
import hashlib
import json

import numpy as np

import fastlstm
from fastlstm import tuning

# (cell, input, hidden, batch, steps, dtype, layer options, tuning knobs): the knobs shrink the
# blocks so that small problems are split into many blocks; the last case runs the defaults.
FINE = dict(step_units=8, gemm_rows=8, gradient_columns=8, cpu_loop="units")
# the sequences loop on blocks of two rows, up to four blocks; weight gradients by blocks of gate columns
BLOCKS = dict(gemm_rows=8, gradient_columns=8, gradient_partial_bytes=0, cpu_loop="sequences", batch_rows=2,
              cost_threads=4)
CASES = [
    ("LSTM", 5, 48, 6, 23, np.float32, dict(bidirectional=True, num_layers=2, dropout=0.2, recurrent_dropout=0.3,
                                            zoneout_cell=0.2, zoneout=0.1, input_dropout=0.1), FINE),
    ("LSTM", 7, 40, 5, 19, np.float64, dict(peephole=True), FINE),
    ("GRU", 9, 56, 7, 17, np.float32, dict(reset_after=False, bidirectional=True, zoneout=0.3), FINE),
    ("GRU", 3, 32, 3, 21, np.float64, dict(recurrent_dropout=0.25), FINE),
    ("LSTM", 5, 24, 9, 23, np.float32, dict(bidirectional=True, recurrent_dropout=0.3, zoneout=0.1), BLOCKS),
    ("GRU", 4, 16, 7, 19, np.float64, dict(reset_after=False), BLOCKS),
    ("RNN", 6, 40, 4, 29, np.float32, dict(nonlinearity="relu", weight_dropout=0.2), FINE),
    ("LSTM", 32, 256, 64, 40, np.float32, dict(bidirectional=True), {}),
]


def _digest(value):
    hash = hashlib.sha256()
    for array in value if isinstance(value, tuple) else (value,):
        hash.update(np.ascontiguousarray(array).tobytes())
    return hash.hexdigest()[:16]


def run_case(cell, inputs, hidden, batch, steps, dtype, options, knobs):
    rng = np.random.default_rng(7)
    layer = getattr(fastlstm, cell)(inputs, hidden, dtype=dtype, seed=11, **options)
    x = rng.standard_normal((steps, batch, inputs)).astype(dtype)
    lengths = rng.integers(0, steps + 1, batch)
    lengths[0] = steps
    results = {}
    with tuning.override(**knobs):
        y, final = layer(x, lengths=lengths)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx, dstate0 = layer.backward(dy, state_gradient_norms=True)
        results.update(y=_digest(y), final=_digest(final), dx=_digest(dx), dstate0=_digest(dstate0),
                       norms=_digest(layer.state_gradient_norms))
        results.update({name: _digest(value) for name, value in sorted(layer.grads.items())})
        inference, _ = layer(x, lengths=lengths, tape=False, training=False)
        results["inference"] = _digest(inference)
    return results


def main():
    report = {}
    for case in CASES:
        key = f"{case[0]}{case[1:5]}{case[5].__name__}{case[6]}"
        first, again = run_case(*case), run_case(*case)
        report[key] = {"first": first, "again": again}
    print(json.dumps(report))


if __name__ == "__main__":
    main()

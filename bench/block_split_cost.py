"""What the shape-fixed parallel blocks cost against one block per thread (two threads).

The cpu backend splits every parallel piece of work by shape alone (``units.block_count``), so
that results do not depend on the thread count. Before, each was split into one block per
thread; on two threads that split is the same code with
``tuning.override(**PER_THREAD)`` below (every extent of two or more split in two). Both run interleaved in one
process, 7 rounds; each line prints the median ratio time(shape-fixed) / time(per-thread).

    NUMBA_NUM_THREADS=2 python bench/block_split_cost.py
"""
import time

import numpy as np

import fastlstm
from fastlstm import tuning

SHAPES = [  # cell, input, hidden, batch, steps, training
    ("LSTM", 256, 256, 1, 150, False), ("LSTM", 256, 256, 64, 150, True), ("LSTM", 1024, 1024, 4, 25, False),
    ("GRU", 512, 512, 32, 100, True), ("LSTM", 8, 64, 32, 200, True), ("LSTM", 256, 256, 16, 100, False),
    ("LSTM", 32, 32, 1, 500, True), ("GRU", 16, 128, 8, 300, True), ("LSTM", 1, 16, 256, 50, False),
    ("LSTM", 16, 128, 1, 200, True), ("RNN", 64, 512, 128, 50, True),
]
PER_THREAD = dict(max_blocks=2, gradient_partials=2, step_units=1, gemm_rows=1, gradient_columns=1)


def _call(layer, x, training):
    y, _ = layer(x, tape=training)
    if training:
        layer.backward(y)


def _seconds_per_call(layer, x, training, knobs, duration=0.15):
    with tuning.override(**knobs):
        _call(layer, x, training)
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < duration:
            _call(layer, x, training)
            calls += 1
        return (time.perf_counter() - start) / calls


def main(rounds=7):
    for cell, inputs, hidden, batch, steps, training in SHAPES:
        layer = getattr(fastlstm, cell)(inputs, hidden, seed=0)
        x = np.random.default_rng(0).standard_normal((steps, batch, inputs)).astype(np.float32)
        _call(layer, x, training)
        ratios, per_thread = [], []
        for _ in range(rounds):
            old = _seconds_per_call(layer, x, training, PER_THREAD)
            new = _seconds_per_call(layer, x, training, {})
            ratios.append(new / old)
            per_thread.append(old)
        print(f"{cell} {inputs}->{hidden} B{batch} T{steps} {'training' if training else 'inference'}: "
              f"per-thread blocks {np.median(per_thread) * 1e3:.2f} ms, shape-fixed / per-thread "
              f"{np.median(ratios):.3f}", flush=True)


if __name__ == "__main__":
    main()

"""The cost of each regulariser against the plain layer, training (forward + backward).

    python bench/regularisation_cost.py              # shape 2 of RESULTS.md: LSTM 256/256, B 64, T 150
    python bench/regularisation_cost.py --steps 30   # quicker

Each sample is the mean time of a block of back-to-back training steps (forward with fresh
masks, backward) lasting at least a second; the plain layer and the regularised one alternate
block by block, and the ratio is the median over rounds of regularised / plain.
"""
import argparse
import statistics
import time

import numpy as np

import fastlstm
from fastlstm.benchmark.shapes import select_shapes

SHAPE = select_shapes(["2"], dtypes=["float32"])[0]   # the table's LSTM training row

REGULARISERS = {"dropout": dict(dropout=0.3), "input_dropout": dict(input_dropout=0.3),
                "recurrent_dropout": dict(recurrent_dropout=0.3),
                "weight_dropout": dict(weight_dropout=0.3), "zoneout": dict(zoneout=0.3),
                "zoneout + zoneout_cell": dict(zoneout=0.3, zoneout_cell=0.3)}


def _step(layer, x, dy):
    y, _ = layer(x)
    layer.backward(dy)


def _block(call, seconds):
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        calls += 1
    return (time.perf_counter() - start) / calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=SHAPE.steps)
    parser.add_argument("--batch", type=int, default=SHAPE.batch)
    parser.add_argument("--hidden", type=int, default=SHAPE.hidden_size)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--block-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.steps, args.batch, args.hidden)).astype(np.float32)
    dy = rng.standard_normal((args.steps, args.batch, args.hidden)).astype(np.float32)
    print(f"LSTM {args.hidden}/{args.hidden}, B={args.batch}, T={args.steps}, training, float32, "
          f"backend={args.backend}; dropout (between layers) on two such layers")
    for name, rates in REGULARISERS.items():
        options = dict(num_layers=2 if name == "dropout" else 1, backend=args.backend, seed=0)
        plain = fastlstm.LSTM(args.hidden, args.hidden, **options)
        regularised = fastlstm.LSTM(args.hidden, args.hidden, **options, **rates)
        for layer in (plain, regularised):
            _step(layer, x, dy)
        ratios, times = [], []
        for _ in range(args.rounds):
            base = _block(lambda: _step(plain, x, dy), args.block_seconds)
            cost = _block(lambda: _step(regularised, x, dy), args.block_seconds)
            ratios.append(cost / base)
            times.append((base, cost))
        base_ms = statistics.median(t[0] for t in times) * 1e3
        cost_ms = statistics.median(t[1] for t in times) * 1e3
        print(f"{name:<16} plain {base_ms:8.1f} ms  regularised {cost_ms:8.1f} ms  "
              f"ratio {statistics.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()

"""Cost of variable lengths: a bidirectional 2-layer LSTM, forward+backward on the cpu backend,
with every sequence of length T against lengths drawn uniformly from [1, T].

    python bench/lengths_cost.py [--steps 100 --batch 32 --size 128 --repeats 9]
"""
import argparse

import numpy as np

import fastlstm
from fastlstm.benchmark.timing import interleaved_times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    layer = fastlstm.LSTM(args.size, args.size, num_layers=2, bidirectional=True, seed=0)
    x = rng.standard_normal((args.steps, args.batch, args.size)).astype(np.float32)
    dy = rng.standard_normal((args.steps, args.batch, 2 * args.size)).astype(np.float32)
    cases = {
        "uniform lengths (all T)": np.full(args.batch, args.steps),
        "lengths ~ U[1, T]": rng.integers(1, args.steps + 1, args.batch),
    }

    def step(lengths):
        def run():
            layer(x, lengths=lengths)
            layer.backward(dy)
        return run

    times = interleaved_times({name: step(lengths) for name, lengths in cases.items()}, args.repeats)
    print(f"bidirectional 2-layer LSTM, T={args.steps} B={args.batch} I=H={args.size} float32, "
          f"forward+backward, median of {args.repeats} interleaved rounds")
    base = np.median(times["uniform lengths (all T)"])
    for name, lengths in cases.items():
        med = np.median(times[name])
        print(f"{name:<26}{1e3 * med:>9.1f} ms   ratio {med / base:.3f}   "
              f"valid steps {lengths.sum() / (args.steps * args.batch):.3f} of T·B")


if __name__ == "__main__":
    main()

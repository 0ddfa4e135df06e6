"""Inference at small batches against ONNX Runtime (and PyTorch where it has the cell): where a
call is mostly per-call and per-step fixed work, not arithmetic.

    python bench/small_inference.py [--repeats 7]
    python bench/small_inference.py --split [--hidden 32 64] [--batch 1]

Every cell (LSTM with and without peepholes, both GRU variants, the tanh RNN), float32, at four
shapes with B ≤ 16; contenders interleaved with the same weights and inputs, 2 threads each
(``fastlstm.benchmark``). Prints fastlstm's median time and its median ratio to each peer.

``--split`` instead splits each contender's call into its fixed cost and its cost per step, from
the medians of calls on T = 20 and T = 2020 steps (I 8, each ``--hidden``, each ``--batch``):
fixed = t(20) − 20 · step, step = (t(2020) − t(20)) / 2000.
"""
import argparse
import time

import numpy as np

from fastlstm.benchmark.peers import build_contenders, load_peers, numba_threads
from fastlstm.benchmark.shapes import BenchShape
from fastlstm.benchmark.suite import run_shape

SPLIT_STEPS = (20, 2020)

CELLS = (("lstm", ()), ("lstm", (("peephole", True),)), ("gru", ()), ("gru", (("reset_after", False),)), ("rnn", ()))
SIZES = ((8, 32, 1, 100), (32, 128, 4, 100), (16, 64, 16, 200), (64, 256, 2, 50))   # I, H, B, T


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved timed rounds per shape")
    parser.add_argument("--split", action="store_true", help="fixed and per-step cost of each contender instead")
    parser.add_argument("--hidden", type=int, nargs="+", default=[8, 32, 64], help="H of the --split shapes")
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="B of the --split shapes")
    args = parser.parse_args(argv)
    load_peers(numba_threads())
    if args.split:
        split(args.hidden, args.batch, calls=200)
        return
    print(f"{'cell':<24}{'I':>5}{'H':>6}{'B':>4}{'T':>6}{'fastlstm µs':>13}  ÷peer (median of {args.repeats} rounds)")
    for cell, options in CELLS:
        peers = ("onnxruntime",) if options else ("onnxruntime", "torch")
        for inputs, hidden, batch, steps in SIZES:
            shape = BenchShape("small", cell, options, inputs, hidden, batch, steps, "inference", "float32", peers, 1.0)
            result = run_shape(shape, repeats=args.repeats, pause=0.05)
            times = {name: np.asarray(values) for name, values in result.times.items()}
            own = times["fastlstm"]
            ratios = "  ".join(f"{name} {np.median(own / values):.2f}" for name, values in times.items()
                               if name != "fastlstm")
            label = cell.upper() + "".join(f" {k}={v}" for k, v in options)
            print(f"{label:<24}{inputs:>5}{hidden:>6}{batch:>4}{steps:>6}{np.median(own) * 1e6:>13.0f}  {ratios}",
                  flush=True)


def _median_call(run, calls):
    for _ in range(5):
        run()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def split(hiddens, batches, calls):
    """Print each contender's fixed cost (µs) and cost per step (ns), every cell, at I 8."""
    print(f"{'cell':<24}{'H':>6}{'B':>4}  contender: fixed µs, per step ns (medians of {calls} calls at T = "
          f"{SPLIT_STEPS[0]} and {SPLIT_STEPS[1]})")
    for cell, options in CELLS:
        peers = ("onnxruntime",) if options else ("onnxruntime", "torch")
        for hidden in hiddens:
            for batch in batches:
                medians = {}
                for steps in SPLIT_STEPS:
                    shape = BenchShape("split", cell, options, 8, hidden, batch, steps, "inference", "float32", peers,
                                       1.0)
                    layer = shape.make_layer()
                    x, dy = shape.make_inputs()
                    for contender in build_contenders(shape, layer, x, dy):
                        if contender.available:
                            medians.setdefault(contender.name, []).append(_median_call(contender.run, calls))
                parts = []
                for name, (short, long) in medians.items():
                    step = (long - short) / (SPLIT_STEPS[1] - SPLIT_STEPS[0])
                    parts.append(f"{name}: {(short - SPLIT_STEPS[0] * step) * 1e6:.1f}, {step * 1e9:.0f}")
                label = cell.upper() + "".join(f" {k}={v}" for k, v in options)
                print(f"{label:<24}{hidden:>6}{batch:>4}  " + "  ".join(parts), flush=True)


if __name__ == "__main__":
    main()

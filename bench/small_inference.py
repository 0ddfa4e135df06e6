"""Inference at small batches against ONNX Runtime (and PyTorch where it has the cell): where a
call is mostly per-call and per-step fixed work, not arithmetic.

    python bench/small_inference.py [--repeats 7]

Every cell (LSTM with and without peepholes, both GRU variants, the tanh RNN), float32, at four
shapes with B ≤ 16; contenders interleaved with the same weights and inputs, 2 threads each
(``fastlstm.benchmark``). Prints fastlstm's median time and its median ratio to each peer.
"""
import argparse

import numpy as np

from fastlstm.benchmark.peers import load_peers, numba_threads
from fastlstm.benchmark.shapes import BenchShape
from fastlstm.benchmark.suite import run_shape

CELLS = (("lstm", ()), ("lstm", (("peephole", True),)), ("gru", ()), ("gru", (("reset_after", False),)), ("rnn", ()))
SIZES = ((8, 32, 1, 100), (32, 128, 4, 100), (16, 64, 16, 200), (64, 256, 2, 50))   # I, H, B, T


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved timed rounds per shape")
    args = parser.parse_args(argv)
    load_peers(numba_threads())
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


if __name__ == "__main__":
    main()

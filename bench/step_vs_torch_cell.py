"""Per-step time of ``layer.step`` against PyTorch's ``LSTMCell`` / ``GRUCell`` / ``RNNCell``.

    python bench/step_vs_torch_cell.py                   # B 1 and 8, H 16 … 256, I 8 and H
    python bench/step_vs_torch_cell.py --batch 1 --rounds 15

A streaming loop: each call is one step of one layer, fed the state the previous call returned,
float32, inference (``torch.no_grad()``). Both libraries get the same weights, and their outputs
are checked equal (float32 rounding) before anything is timed. PyTorch runs with
``torch.set_num_threads(2)`` (Numba's default thread count on the project's 2-core machines;
``layer.step`` runs in the calling thread). Rounds are interleaved: each round times a block of
calls of one library, then of the other (alternating which goes first), and the table gives each
library's median time per call over the rounds and the median of the rounds' ratios (fastlstm ÷
torch; the target is ≤ 0.5). The machine's load average is printed before and after: figures
taken beside other busy processes are not comparable. Nothing is asserted; ``bench/RESULTS.md``
holds the figures.
"""
import argparse
import os
import sys
import time

import numpy as np

import fastlstm

CELLS = ("LSTM", "GRU", "RNN")
HIDDEN = (16, 64, 128, 256)
TARGET = 0.5


def _pair(kind, inputs, hidden, torch):
    """A fastlstm layer and the PyTorch cell holding the same weights."""
    layer = getattr(fastlstm, kind)(inputs, hidden, dtype="float32", seed=0)
    peer = getattr(torch.nn, f"{kind}Cell")(inputs, hidden)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(peer, name).copy_(torch.from_numpy(layer.params[name + "_l0"]))
    return layer, peer


def _loops(kind, layer, peer, x, torch):
    """``ours(n)`` and ``theirs(n)``: n steps of a streaming loop each, from a zero state."""
    xt = torch.from_numpy(x)

    def ours(n):
        state = None
        for _ in range(n):
            _, state = layer.step(x, state)
        return state

    def theirs(n):
        state = None
        with torch.no_grad():
            for _ in range(n):
                state = peer(xt, state)
        return state
    return ours, theirs


def _check_equal(kind, ours, theirs):
    h, their_h = ours(3), theirs(3)
    if kind == "LSTM":
        h, their_h = h[0], their_h[0]
    difference = float(np.abs(h[0] - their_h.numpy()).max())
    if difference > 1e-5:
        raise SystemExit(f"{kind}: fastlstm's and torch's outputs differ by {difference:.2e}: not timed")
    return difference


def _timed(loop, calls):
    start = time.perf_counter()
    loop(calls)
    return (time.perf_counter() - start) / calls


def measure(kind, batch, inputs, hidden, rounds, round_seconds, torch):
    """Median µs per call of fastlstm and torch, the median ratio, and their outputs' difference."""
    layer, peer = _pair(kind, inputs, hidden, torch)
    x = np.random.default_rng(1).standard_normal((batch, inputs)).astype(np.float32)
    ours, theirs = _loops(kind, layer, peer, x, torch)
    difference = _check_equal(kind, ours, theirs)
    per_call = min(_timed(ours, 20), _timed(theirs, 20))        # warm up, and size the rounds
    calls = max(20, int(round_seconds / per_call))
    times = {"ours": [], "theirs": []}
    for r in range(rounds):
        order = (("ours", ours), ("theirs", theirs)) if r % 2 == 0 else (("theirs", theirs), ("ours", ours))
        for name, loop in order:
            times[name].append(_timed(loop, calls))
    ratios = np.array(times["ours"]) / np.array(times["theirs"])
    return 1e6 * np.median(times["ours"]), 1e6 * np.median(times["theirs"]), float(np.median(ratios)), difference


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per shape (default 9)")
    parser.add_argument("--round-ms", type=float, default=10.0, help="ms of calls per library per round")
    args = parser.parse_args(argv)
    if args.rounds < 1 or min(args.batch) < 1 or args.round_ms <= 0:
        parser.error("--rounds and --batch: positive integers; --round-ms: a positive number")
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: nothing to compare against", file=sys.stderr)
        return 1
    torch.set_num_threads(2)
    print(f"layer.step vs torch.nn.*Cell, float32, torch threads {torch.get_num_threads()}, median of "
          f"{args.rounds} interleaved rounds; load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'cell':5} {'B':>3} {'I':>4} {'H':>4} {'fastlstm µs':>12} {'torch µs':>10} {'ratio':>6} "
          f"{'≤0.5':>5} {'max |Δy|':>9}")
    start = time.perf_counter()
    for kind in CELLS:
        for batch in args.batch:
            for hidden in HIDDEN:
                for inputs in sorted({8, hidden}):
                    ours, theirs, ratio, difference = measure(kind, batch, inputs, hidden, args.rounds,
                                                              args.round_ms / 1e3, torch)
                    print(f"{kind:5} {batch:3} {inputs:4} {hidden:4} {ours:12.2f} {theirs:10.2f} {ratio:6.2f} "
                          f"{'yes' if ratio <= TARGET else 'NO':>5} {difference:9.1e}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}; {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How much the process grows over many training calls whose shapes change from call to call.

    python bench/memory_growth.py                      # LSTM(8, 64), B 32, T drawn in [100, 300], 150 calls
    python bench/memory_growth.py --calls 300 --hidden 256

A notebook runs many shapes; the buffer pool must not keep one buffer per shape it ever saw.
The resident set size is read from ``/proc/self/statm`` after a warm-up call (which compiles
the kernels) and after every call; the report gives the growth after the warm-up, its peak,
and the pool's own figures where the pool reports them.
"""
import argparse
import os

import numpy as np

import fastlstm
from fastlstm import buffers


def resident_bytes():
    """The process's resident set size, in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=150, help="training calls after the warm-up")
    parser.add_argument("--inputs", type=int, default=8, help="input features")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units")
    parser.add_argument("--batch", type=int, default=32, help="sequences per call")
    parser.add_argument("--min-steps", type=int, default=100, help="shortest T drawn")
    parser.add_argument("--max-steps", type=int, default=300, help="longest T drawn")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn lengths and data")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    layer = fastlstm.LSTM(args.inputs, args.hidden, seed=args.seed)

    def call(steps):
        x = rng.standard_normal((steps, args.batch, args.inputs)).astype(np.float32)
        y, _ = layer(x)
        layer.backward(np.ones_like(y))

    call(args.max_steps)
    start = resident_bytes()
    peak = start
    for _ in range(args.calls):
        call(int(rng.integers(args.min_steps, args.max_steps + 1)))
        peak = max(peak, resident_bytes())
    end = resident_bytes()
    mib = 1 << 20
    print(f"LSTM({args.inputs}, {args.hidden}), B {args.batch}, T in [{args.min_steps}, {args.max_steps}], "
          f"{args.calls} training calls")
    print(f"resident after warm-up {start / mib:.1f} MiB; growth at the end {(end - start) / mib:+.1f} MiB, "
          f"at its peak {(peak - start) / mib:+.1f} MiB")
    if hasattr(buffers, "statistics"):
        stats = buffers.statistics()
        print("pool: " + ", ".join(f"{name} {value / mib:.1f} MiB" if name.endswith("bytes") else f"{name} {value}"
                                   for name, value in stats.items()))


if __name__ == "__main__":
    main()

"""Seconds from a cold cache to the end of a first training call, per cell and loop strategy.

    python bench/compile_time.py                       # LSTM, GRU, RNN 8 -> 32, B 4, T 50
    python bench/compile_time.py --loops auto units --repeats 3
    python bench/compile_time.py --inference           # a first inference call instead

Each measurement is a fresh Python process with an empty Numba cache directory of its own
(``NUMBA_CACHE_DIR``): it imports fastlstm, builds the layer, and times one forward and one
backward, which compile every kernel the call needs. A second process then makes the same call
on the now-filled cache (what every later run pays).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

_FIRST_CALL = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
import fastlstm
imported = time.perf_counter()
cell, loop, training = sys.argv[1], sys.argv[2], sys.argv[3] == "training"
layer = getattr(fastlstm, cell)(8, 32, seed=0)
x = np.random.default_rng(0).standard_normal((50, 4, 8)).astype(np.float32)
with fastlstm.tuning.override(cpu_loop=loop):
    before = time.perf_counter()
    y, _ = layer(x, tape=training)
    if training:
        layer.backward(np.ones_like(y))
print(json.dumps({"import": imported - start, "first call": time.perf_counter() - before}))
"""


def _run(cell, loop, cache, mode):
    environment = dict(os.environ, NUMBA_CACHE_DIR=cache)
    done = subprocess.run([sys.executable, "-c", _FIRST_CALL, cell, loop, mode], env=environment,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["LSTM", "GRU", "RNN"])
    parser.add_argument("--loops", nargs="+", default=["auto"], choices=["auto", "sequences", "single", "units"])
    parser.add_argument("--repeats", type=int, default=1, help="cold-cache runs per row (the median is shown)")
    parser.add_argument("--inference", action="store_true", help="a first inference call (tape=False) instead")
    args = parser.parse_args(argv)
    mode = "inference" if args.inference else "training"
    print(f"first {mode} call of an 8 -> 32 layer, B 4, T 50, float32: seconds (median of "
          f"{args.repeats} cold run{'s' if args.repeats > 1 else ''})")
    print(f"{'cell':<6}{'loop':<11}{'import':>8}{'cold':>8}{'cached':>8}")
    for cell in args.cells:
        for loop in args.loops:
            cold, cached, imports = [], [], []
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory(prefix="fastlstm-cache-") as cache:
                    first = _run(cell, loop, cache, mode)
                    again = _run(cell, loop, cache, mode)
                cold.append(first["first call"])
                imports.append(first["import"])
                cached.append(again["first call"])
            median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
            print(f"{cell:<6}{loop:<11}{median(imports):8.2f}{median(cold):8.2f}{median(cached):8.2f}")


if __name__ == "__main__":
    main()

"""How much a training call slows beside one busy process that takes a core.

    python bench/under_load.py                       # the two workloads below, fastlstm and PyTorch
    python bench/under_load.py --repeats 9 --strategy units

Workloads (float32 training calls, forward and backward):

* a bidirectional LSTM(4, 8), B 8, T 2000: tiny steps, long sequences;
* an LSTM(64, 256), B 32, T 100.

Each call is timed alone and beside a busy process (a Python loop spinning on one core, started
before and stopped after each timed call), alternating, and the report gives each library's
median time in both conditions and the slowdown (loaded / alone). A fair share of a two-core
machine beside one busy process is one core: a slowdown near 2 is what a call that uses both
cores can expect, far above it means threads waiting for each other (a spin barrier whose
other thread the OS has descheduled). Nothing here is asserted: ``bench/RESULTS.md`` holds the
figures. ``--strategy`` forces fastlstm's loop strategy (``tuning.cpu_loop``).
"""
import argparse
import subprocess
import sys
import time

import numpy as np

import fastlstm
from fastlstm import tuning

WORKLOADS = (
    dict(name="bidirectional LSTM(4, 8), B 8, T 2000", inputs=4, hidden=8, batch=8, steps=2000, bidirectional=True),
    dict(name="LSTM(64, 256), B 32, T 100", inputs=64, hidden=256, batch=32, steps=100, bidirectional=False),
)
BUSY = "while True:\n    pass\n"


def _fastlstm_call(work, strategy):
    layer = fastlstm.LSTM(work["inputs"], work["hidden"], bidirectional=work["bidirectional"], seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((work["steps"], work["batch"], work["inputs"])).astype(np.float32)
    dy = rng.standard_normal((work["steps"], work["batch"], work["hidden"] * (2 if work["bidirectional"] else 1)))
    dy = dy.astype(np.float32)

    def call():
        with tuning.override(cpu_loop=strategy):
            layer(x)
            layer.backward(dy)
    return call


def _torch_call(work):
    import torch

    layer = torch.nn.LSTM(work["inputs"], work["hidden"], bidirectional=work["bidirectional"])
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((work["steps"], work["batch"], work["inputs"])).astype(np.float32))
    x.requires_grad_(True)
    dy = torch.from_numpy(rng.standard_normal(
        (work["steps"], work["batch"], work["hidden"] * (2 if work["bidirectional"] else 1))).astype(np.float32))

    def call():
        y, _ = layer(x)
        y.backward(dy)
    return call


def _timed(call, loaded):
    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if loaded else None
    try:
        if busy is not None:
            time.sleep(0.2)     # let it take its core
        start = time.perf_counter()
        call()
        return time.perf_counter() - start
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per library and condition")
    parser.add_argument("--strategy", default="auto", choices=tuning.TUNABLES["cpu_loop"].choices,
                        help="fastlstm's loop strategy (default: auto)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats: expected a positive integer, got {args.repeats}")
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        from fastlstm.benchmark.peers import numba_threads

        torch.set_num_threads(numba_threads())
    print(f"slowdown beside one busy process (median of {args.repeats}; fastlstm's strategy {args.strategy})")
    print(f"{'workload':40} {'library':9} {'alone ms':>9} {'loaded ms':>10} {'slowdown':>9}")
    for work in WORKLOADS:
        calls = {"fastlstm": _fastlstm_call(work, args.strategy)}
        if torch is not None:
            calls["torch"] = _torch_call(work)
        times = {name: {False: [], True: []} for name in calls}
        for call in calls.values():
            call()                     # compile, warm up
        for _ in range(args.repeats):
            for loaded in (False, True):
                for name, call in calls.items():
                    times[name][loaded].append(_timed(call, loaded))
        for name in calls:
            alone, loaded = np.median(times[name][False]), np.median(times[name][True])
            print(f"{work['name']:40} {name:9} {1e3 * alone:9.2f} {1e3 * loaded:10.2f} {loaded / alone:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

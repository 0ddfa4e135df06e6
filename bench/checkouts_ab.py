"""Two checkouts of fastlstm timed on the same shape, taking turns in one machine phase.

    python bench/checkouts_ab.py BEFORE_DIR AFTER_DIR lstm,8,64,32,200,training [--rounds 20] [--calls 5]
    python bench/checkouts_ab.py . . lstm,512,512,64,25,training --before-env FASTLSTM_CPU_BLAS=scipy \
        --after-env FASTLSTM_CPU_BLAS=mkl

(the second: one checkout against itself with another environment variable: a knob's two values).

This machine's CPUs change speed second by second (``bench/cpu_speeds.py``), so two checkouts
timed one after the other in separate runs differ by more than most changes do. Here each
checkout runs in a persistent process of its own (``PYTHONPATH`` its directory, warmed up), and
the two take turns: one block of ``--calls`` calls each per round (its fastest call kept), the
order alternating, a pause between turns so that the other's idle threads have stopped spinning.
Each round's ratio after/before compares the two in the same few hundred milliseconds; the
median of those ratios is the figure to read.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

_CHILD = """
import sys, time
from fastlstm.benchmark.shapes import BenchShape
cell, inputs, hidden, batch, steps, mode = sys.argv[1].split(",")
calls = int(sys.argv[2])
shape = BenchShape("ab", cell, (), int(inputs), int(hidden), int(batch), int(steps), mode, "float32", (), 1.0)
layer = shape.make_layer()
x, dy = shape.make_inputs()

def call():
    if mode == "training":
        layer(x)
        layer.backward(dy)
    else:
        layer(x, tape=False)

for _ in range(3):
    call()
print("ready", flush=True)
for _ in sys.stdin:
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    print(best, flush=True)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("shape", help="cell,I,H,B,T,mode (float32), e.g. lstm,8,64,32,200,training")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--before-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable of the BEFORE process (repeatable)")
    parser.add_argument("--after-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable of the AFTER process (repeatable)")
    args = parser.parse_args()
    environments = [dict(item.split("=", 1) for item in args.before_env),
                    dict(item.split("=", 1) for item in args.after_env)]
    checkouts = [os.path.abspath(args.before), os.path.abspath(args.after)]
    processes = []
    for checkout, environment in zip(checkouts, environments):
        process = subprocess.Popen([sys.executable, "-c", _CHILD, args.shape, str(args.calls)], cwd=checkout,
                                   env=dict(os.environ, PYTHONPATH=checkout, **environment), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if process.stdout.readline().strip() != "ready":
            raise SystemExit(f"{checkout}: the shape did not run")
        processes.append(process)
    times = [[], []]
    for round_ in range(args.rounds):
        for which in ((0, 1) if round_ % 2 == 0 else (1, 0)):
            time.sleep(0.05)
            processes[which].stdin.write("go\n")
            processes[which].stdin.flush()
            times[which].append(float(processes[which].stdout.readline()))
    for process in processes:
        process.stdin.close()
        process.wait()
    ratios = [after / before for before, after in zip(*times)]
    print(f"{args.shape}: before min {1e3 * min(times[0]):.3f} ms, median {1e3 * statistics.median(times[0]):.3f}; "
          f"after min {1e3 * min(times[1]):.3f}, median {1e3 * statistics.median(times[1]):.3f}; "
          f"after/before per round: median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()

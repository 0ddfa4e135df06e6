"""How fast each CPU of this machine runs, second by second: why timings here change from minute to minute.

    python bench/cpu_speeds.py [--seconds 10]

One process per CPU, pinned to it, runs the same compiled loop (20 million dependent additions,
no memory traffic) every half second, both at once, and prints each run's milliseconds. On an
idle machine whose CPUs are its own, every run takes the same time. On this project's 2-vCPU
machines, one vCPU at a time runs at less than half speed for seconds (its host core shared): a
loop that waits for every thread at each step then runs at the slow one's pace, and a
timing's minimum and median can differ twofold.
"""
import argparse
import os
import subprocess
import sys
import time


def _probe(cpu, seconds):
    from numba import njit

    @njit(cache=True)
    def additions(count):
        total = 0.0
        for i in range(count):
            total += (i % 7) * 0.5
        return total

    os.sched_setaffinity(0, {cpu})
    additions(10)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        additions(20_000_000)
        print(f"{time.strftime('%H:%M:%S')} cpu {cpu}: {1e3 * (time.perf_counter() - start):6.1f} ms", flush=True)
        time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)     # one probe (the processes this starts)
    args = parser.parse_args()
    if args.cpu is not None:
        _probe(args.cpu, args.seconds)
        return
    probes = [subprocess.Popen([sys.executable, __file__, "--cpu", str(cpu), "--seconds", str(args.seconds)])
              for cpu in sorted(os.sched_getaffinity(0))]
    for probe in probes:
        probe.wait()


if __name__ == "__main__":
    main()

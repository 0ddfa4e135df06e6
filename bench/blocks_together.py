"""What a block of the "sequences" loop loses when the other block runs beside it.

    python bench/blocks_together.py [--hidden 16 64] [--rows 1 4 16] [--steps 1000] [--rounds 8]
    python bench/blocks_together.py --processes [--hidden 16 64] [--rows 1] [--rounds 3]
    python bench/blocks_together.py --batches 2 3 [--hidden 16 32 64 128]
    python bench/blocks_together.py --cpus [--hidden 16] [--rows 1] [--rounds 3]

An LSTM inference call (I 8, float32) on ``rows`` rows as one block in the calling thread
(``cpu_loop="single"``), against a call on twice the rows as two such blocks at once, one per
thread (``cpu_loop="sequences"``): the same work per thread, so with nothing shared the two take
the same time a step. Interleaved rounds; prints the medians (ns a step), the difference and the
median ratio. The cost model (``fastlstm.backends.cpu.strategy``) takes the blocks of the
"sequences" loop as running at the speed of one alone.

``--batches``: a batch of B rows as one block against the "sequences" loop's blocks of it
(``batch_rows`` 1: B 2 as 1 + 1 rows, B 3 as 1 + 2), LSTM and GRU, at T 300: where splitting a
small batch pays (the rule of ``strategy.sequence_blocks``: blocks only where the largest keeps
``batch_rows`` rows, so B 2 stays whole and B 3 splits).

``--processes`` is the control, per round (at most 3): the pair above (one round of it), then
the one-block call alone in one process and in two processes at once (each
``NUMBA_NUM_THREADS=1``, one per core): what the machine itself takes from a core when the
other is busy, in the same minute as the pair.

``--cpus``: the one-block call in a process held to one CPU, each CPU in turn: on the project's
virtual machines the two CPUs do not always run it at one speed (the host's other work), and a
region of two blocks ends with the slower.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np


def _per_step(layer, x, loop, calls):
    from fastlstm import tuning

    with tuning.override(cpu_loop=loop, batch_rows=1):
        for _ in range(2):
            layer(x, tape=False)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            layer(x, tape=False)
            times.append(time.perf_counter() - start)
    return float(np.median(times)) / x.shape[0] * 1e9


def _inputs(steps, rows, seed=0):
    return np.random.default_rng(seed).standard_normal((steps, rows, 8)).astype(np.float32)


def _interleaved(layer, one_block_x, blocks_x, rounds):
    """ns a step of ``one_block_x`` as one block and of ``blocks_x`` as the loop's blocks, one
    array each, a value per round, the two alternating."""
    one, blocks = [], []
    for _ in range(rounds):
        one.append(_per_step(layer, one_block_x, "single", 10))
        blocks.append(_per_step(layer, blocks_x, "sequences", 10))
    return np.array(one), np.array(blocks)


def together(hiddens, rows_list, steps, rounds):
    import fastlstm

    print(f"{'H':>5}{'rows':>6}  one block alone, ns/step   two blocks at once   difference   ratio (median of {rounds})")
    for hidden in hiddens:
        layer = fastlstm.LSTM(8, hidden, seed=0)
        for rows in rows_list:
            alone, both = _interleaved(layer, _inputs(steps, rows), _inputs(steps, 2 * rows, seed=1), rounds)
            print(f"{hidden:>5}{rows:>6}  {np.median(alone):>24.0f}   {np.median(both):>18.0f}"
                  f"   {np.median(both - alone):>+10.0f}   {np.median(both / alone):.2f}", flush=True)


def batches(hiddens, batch_list, steps, rounds):
    import fastlstm

    print(f"{'cell':>5}{'B':>4}{'H':>6}  one block, ns/step   the loop's blocks   ratio (median of {rounds})")
    for cell in ("lstm", "gru"):
        for batch in batch_list:
            for hidden in hiddens:
                layer = getattr(fastlstm, cell.upper())(8, hidden, seed=0)
                x = _inputs(steps, batch)
                whole, split = _interleaved(layer, x, x, rounds)
                print(f"{cell:>5}{batch:>4}{hidden:>6}  {np.median(whole):>18.0f}   {np.median(split):>17.0f}"
                      f"   {np.median(split / whole):.2f}", flush=True)


def _worker(hidden, rows, steps, start_at, seconds, cpu):
    """Print the one-block call's ns a step (median of calls for ``seconds`` from ``start_at``),
    held to CPU ``cpu`` (−1: any)."""
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    import fastlstm

    layer = fastlstm.LSTM(8, hidden, seed=0)
    x = _inputs(steps, rows)
    _per_step(layer, x, "single", 5)
    while time.time() < start_at:
        time.sleep(0.001)
    times = []
    end = time.time() + seconds
    while time.time() < end:
        times.append(_per_step(layer, x, "single", 3))
    print(f"{np.median(times):.1f}")


def _workers(count, hidden, rows, steps, cpu=-1):
    """:func:`_worker`'s figure from ``count`` single-threaded processes, timing together (3 s each,
    from 8 s on, when there are several, so that all have started)."""
    environment = dict(os.environ, NUMBA_NUM_THREADS="1")
    start_at = time.time() + (8 if count > 1 else 0)
    command = [sys.executable, __file__, "--worker", str(hidden), str(rows), str(steps), str(start_at), "3", str(cpu)]
    workers = [subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    return [float(w.communicate()[0]) for w in workers]


def processes(hiddens, rows_list, steps, rounds):
    """Per round, one after the other: the one-block call alone and two blocks at once in this
    process (two threads), then one process alone and two at once (one thread each): a machine
    whose cores slow each other shows it in both pairs; an effect of one process in the first."""
    import fastlstm

    print(f"{'H':>5}{'rows':>6}{'round':>6}  threads: alone, two at once (ns/step)   processes: alone, two at once")
    for hidden in hiddens:
        layer = fastlstm.LSTM(8, hidden, seed=0)
        for rows in rows_list:
            for round_ in range(rounds):
                alone, both = _interleaved(layer, _inputs(steps, rows), _inputs(steps, 2 * rows, seed=1), 1)
                one, two = _workers(1, hidden, rows, steps), _workers(2, hidden, rows, steps)
                print(f"{hidden:>5}{rows:>6}{round_:>6}  {alone[0]:>15.0f} {both[0]:>8.0f} ({both[0] / alone[0]:.2f})"
                      f"   {one[0]:>18.0f} {' '.join(f'{t:.0f}' for t in two)}"
                      f" ({max(two) / one[0]:.2f})", flush=True)


def cpus(hiddens, rows_list, steps, rounds):
    """The one-block call alone, in a process held to one CPU (``NUMBA_NUM_THREADS=1``), each CPU
    in turn, per round: whether the CPUs this process may use run it at one speed. A region of
    blocks, one per CPU, ends when its slowest block does."""
    available = sorted(os.sched_getaffinity(0))
    print(f"{'H':>5}{'rows':>6}{'round':>6}  " + "  ".join(f"CPU {cpu:>2}, ns/step" for cpu in available))
    for hidden in hiddens:
        for rows in rows_list:
            for round_ in range(rounds):
                times = [_workers(1, hidden, rows, steps, cpu)[0] for cpu in available]
                print(f"{hidden:>5}{rows:>6}{round_:>6}  " + "  ".join(f"{t:>15.0f}" for t in times), flush=True)


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        hidden, rows, steps = map(int, sys.argv[2:5])
        _worker(hidden, rows, steps, float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--steps", type=int, default=None, help="T (default 1000; 300 with --batches)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--processes", action="store_true", help="the control: two single-threaded processes at once")
    parser.add_argument("--cpus", action="store_true", help="the one-block call held to each CPU in turn")
    parser.add_argument("--batches", type=int, nargs="+", default=None,
                        help="instead: these batches as one block against the loop's blocks (T 300 unless --steps)")
    args = parser.parse_args(argv)
    if args.batches:
        batches(args.hidden, args.batches, args.steps or 300, args.rounds)
    elif args.cpus:
        cpus(args.hidden, args.rows, args.steps or 1000, min(args.rounds, 3))
    elif args.processes:
        processes(args.hidden, args.rows, args.steps or 1000, min(args.rounds, 3))
    else:
        together(args.hidden, args.rows, args.steps or 1000, args.rounds)


if __name__ == "__main__":
    main()

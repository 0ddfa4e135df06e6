"""Batch inference with fastlstm.dask.predict on 1 and then 2 worker processes (one thread each).

    python bench/dask_scaling.py [--target-seconds 12 --chunk 256 --repeats 2]

The job: a 2-layer LSTM (I=32, H=128, float32, cpu backend) over T=100 steps of as many chunks of
``--chunk`` sequences as take about ``--target-seconds`` on one core (measured in this process,
one Numba thread). ``x`` is generated and persisted on the workers before the clock starts and the
outputs stay there (``persist``), so the times are the forward passes plus what Dask adds:
scheduling the tasks and moving the model to the workers. Printed: the in-process time of the same
chunks, each cluster's time (best of ``--repeats``), the speed-up, the overhead over the in-process
time, the time to scatter the model alone, and the per-task cost of scheduling alone (a job of
tiny chunks).
"""
import argparse
import os
import time

os.environ["NUMBA_NUM_THREADS"] = "1"     # this process's baseline runs on one core, as each worker does

import numpy as np  # noqa: E402

import fastlstm  # noqa: E402
import fastlstm.dask as fdask  # noqa: E402

STEPS, INPUTS, HIDDEN, LAYERS = 100, 32, 128, 2


def one_chunk_seconds(layer, chunk):
    """Median seconds of one chunk's forward (inference) in this process."""
    x = np.random.default_rng(0).standard_normal((STEPS, chunk, INPUTS)).astype(np.float32)
    layer(x, tape=False, training=False)                          # compile / load the kernels
    times = []
    for _ in range(3):
        start = time.perf_counter()
        layer(x, tape=False, training=False)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def in_process_seconds(layer, chunk, chunks):
    """Seconds for the whole job's forwards in this process, keeping every output (as the workers do)."""
    x = np.random.default_rng(0).standard_normal((STEPS, chunk, INPUTS)).astype(np.float32)
    outputs = []
    start = time.perf_counter()
    for _ in range(chunks):
        outputs.append(layer(x, tape=False, training=False)[0])
    return time.perf_counter() - start


def cluster_seconds(workers, layer, chunk, chunks, repeats):
    """(best seconds of the job, the workers' seconds computing its tasks, seconds to scatter the model,
    seconds per task of a tiny-task job)."""
    import dask.array as da
    from distributed import Client, LocalCluster, get_task_stream, wait

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      env={"NUMBA_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
        x = da.random.default_rng(0).standard_normal((STEPS, chunk * chunks, INPUTS), chunks=(STEPS, chunk, INPUTS),
                                                     dtype=np.float32).persist()
        wait(x)
        warm = da.zeros((STEPS, chunk * workers, INPUTS), chunks=(STEPS, chunk, INPUTS), dtype=np.float32)
        wait(fdask.predict(layer, warm).persist())                 # every worker loads the kernels
        times, computing = [], []
        for _ in range(repeats):
            with get_task_stream(client) as stream:
                start = time.perf_counter()
                y = fdask.predict(layer, x).persist()
                wait(y)
                times.append(time.perf_counter() - start)
            computing.append(sum(part["stop"] - part["start"] for task in stream.data
                                 if "predict_chunk" in str(task["key"]) for part in task["startstops"]
                                 if part["action"] == "compute"))
            del y
        start = time.perf_counter()
        for _ in range(5):
            client.scatter([layer], broadcast=True, hash=False)
        scatter = (time.perf_counter() - start) / 5
        tasks = 400
        tiny = da.zeros((1, tasks, INPUTS), chunks=(1, 1, INPUTS), dtype=np.float32).persist()
        wait(tiny)
        start = time.perf_counter()
        wait(fdask.predict(layer, tiny).persist())
        per_task = (time.perf_counter() - start) / tasks
    best = int(np.argmin(times))
    return times[best], computing[best], scatter, per_task


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target-seconds", type=float, default=12.0)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    layer = fastlstm.LSTM(INPUTS, HIDDEN, LAYERS, seed=0)
    one_chunk = one_chunk_seconds(layer, args.chunk)
    chunks = max(2, int(np.ceil(args.target_seconds / one_chunk)))
    chunks += chunks % 2                                            # an even split over 2 workers
    baseline = in_process_seconds(layer, args.chunk, chunks)
    size = sum(value.nbytes for value in layer.params.values())
    print(f"{LAYERS}-layer LSTM I={INPUTS} H={HIDDEN} float32 cpu, T={STEPS}, {chunks} chunks of {args.chunk} "
          f"sequences (B={chunks * args.chunk}); parameters {size / 1e6:.2f} MB; "
          f"load average before {os.getloadavg()[0]:.2f}")
    print(f"in this process, 1 thread, outputs kept: {baseline:7.2f} s  ({1e3 * one_chunk:.0f} ms per chunk "
          f"with its output's memory reused)")
    results = {}
    for workers in (1, 2):
        seconds, computing, scatter, per_task = cluster_seconds(workers, layer, args.chunk, chunks, args.repeats)
        results[workers] = seconds
        print(f"{workers} worker process{'es' if workers > 1 else '  '}:                  {seconds:7.2f} s  "
              f"(the tasks computed for {computing:.2f} s in all, {computing / workers:.2f} s per worker; "
              f"the rest, {seconds - computing / workers:.2f} s, is Dask's: scheduling, moving the model and "
              f"results, idle workers)")
        print(f"    scatter of the model to every worker alone {1e3 * scatter:.1f} ms; "
              f"scheduling alone {1e3 * per_task:.2f} ms per task ({1e3 * per_task * chunks:.0f} ms for "
              f"this job's {chunks} tasks)")
    print(f"speed-up 1 -> 2 workers: {results[1] / results[2]:.2f}x (ideal 2); "
          f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

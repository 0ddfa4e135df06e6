"""Where a cpu call spends its time: the time loops, the products around them, the weights'
packing, the rest (the per-call overhead).

    python bench/where_time_goes.py [--shapes 1,2,5,7a] [--shape lstm,8,64,6,100,inference ...] [--repeats 5]

For each shape of the benchmark table (``--shapes``) and each shape given in full (``--shape
cell,I,H,B,T,mode``), times fastlstm's compiled pieces inside one call (wrapping the driver's
references to them) and reports each piece's milliseconds and GFLOP/s (GB/s for the weights'
packing, a prepared call's check of its parameters and a training call's copy of each step's h
into ``y``), and what is left: the Python and NumPy work around them, as a share of the call
(the per-call overhead). Next to the
loops, it times the single-threaded BLAS GEMM of one step's block alone (B × H by H × G·H/threads,
the shape each thread multiplies per step) for scale.
"""
import argparse
import time
from collections import defaultdict

import numpy as np

from fastlstm.backends.cpu import driver, kept, prepared
from fastlstm.backends.cpu.kernels import kernels_for
from fastlstm.benchmark.shapes import BenchShape, select_shapes


def _timed(function, totals, name):
    def wrapper(*args):
        start = time.perf_counter()
        result = function(*args)
        totals[name] += time.perf_counter() - start
        return result
    return wrapper


def _loop_flops(shape, forward):
    """The recurrent GEMM flops of one loop (all steps): 2·T·B·H·G·H."""
    return 2.0 * shape.steps * shape.batch * shape.hidden_size * shape.gates * shape.hidden_size


def _step_gemm_gflops(shape, threads):
    """GFLOP/s of one thread's per-step GEMM, single-threaded BLAS, timed alone."""
    from numba import njit
    from threadpoolctl import threadpool_limits

    @njit(cache=True)
    def repeat(a, b, out, count):
        for _ in range(count):
            np.dot(a, b, out)

    width = shape.gates * shape.hidden_size // threads
    a = np.ones((shape.batch, shape.hidden_size), shape.dtype)
    b = np.ones((shape.hidden_size, width), shape.dtype)
    out = np.empty((shape.batch, width), shape.dtype)
    count = 200
    with threadpool_limits(limits=1, user_api="blas"):
        repeat(a, b, out, 1)
        start = time.perf_counter()
        repeat(a, b, out, count)
        elapsed = (time.perf_counter() - start) / count
    return 2.0 * shape.batch * shape.hidden_size * width / elapsed / 1e9


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="1,2,5,7a", help="table shape ids, comma-separated ('' for none)")
    parser.add_argument("--shape", action="append", default=[], metavar="CELL,I,H,B,T,MODE",
                        help="a float32 shape in full, e.g. lstm,8,64,6,100,inference (repeatable)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from numba import get_num_threads

    threads = get_num_threads()
    shapes = select_shapes([s for s in args.shapes.split(",") if s], ["float32"]) if args.shapes else []
    for text in args.shape:
        cell, inputs, hidden, batch, steps, mode = text.split(",")
        shapes.append(BenchShape(text, cell, (), int(inputs), int(hidden), int(batch), int(steps), mode, "float32",
                                 (), 1.0))
    for shape in shapes:
        layer = shape.make_layer()
        x, dy = shape.make_inputs()
        training = shape.mode == "training"

        def call():
            if training:
                layer(x)
                layer.backward(dy)
            else:
                layer(x, tape=False)

        call()
        kernels = kernels_for(layer.config.cell, layer.config.dtype)
        totals = defaultdict(float)
        saved = (driver.matmul_runner, driver.product_runner, driver.gradient_runner, driver.forward_packer,
                 driver.backward_packer, driver.write_output)

        def timed_runner(factory, name):
            """A runner factory whose runners are timed under ``name``."""
            return lambda *arguments: _timed(factory(*arguments), totals, name)

        def timed_packer(factory, name):
            return lambda *arguments: (lambda packer: packer._replace(run=_timed(packer.run, totals, name)))(
                factory(*arguments))

        driver.matmul_runner = timed_runner(driver.matmul_runner, "input GEMMs (x·W_ih, dx)")
        driver.product_runner = timed_runner(driver.product_runner, "input GEMMs (x·W_ih, dx)")   # a narrow dx, by BLAS
        driver.gradient_runner = timed_runner(driver.gradient_runner, "weight-gradient GEMMs")
        driver.forward_packer = timed_packer(driver.forward_packer, "packing W_hh (forward)")
        driver.backward_packer = timed_packer(driver.backward_packer, "packing W_hh (backward)")
        driver.write_output = _timed(driver.write_output, totals, "writing y")
        # each compiled loop is timed where its segments run (driver._loop_runner's runs), named
        # by the method that gave it (instance attributes shadow the methods)
        labels = {}

        def labelled(method, label):
            def loop(*flags):
                compiled = getattr(type(kernels), method)(kernels, *flags)
                labels[compiled] = label
                return compiled
            return loop

        kernels.forward_loop = labelled("forward_loop", "forward loop")
        kernels.backward_loop = labelled("backward_loop", "backward loop")
        loop_runner = driver._loop_runner
        driver._loop_runner = lambda plan, loop, *arguments: _timed(loop_runner(plan, loop, *arguments), totals,
                                                                    labels[loop])
        # a prepared inference call runs each direction's projections and loop in one compiled call
        run_direction_for = prepared._run_direction_for
        prepared._run_direction_for = lambda values: _timed(run_direction_for(values), totals,
                                                            "projections + loop (prepared)")
        # and checks, before each call, that the parameters hold what was packed (a digest)
        holds = prepared.Prepared.holds
        prepared.Prepared.holds = _timed(holds, totals, "checking the parameters")
        prepared.clear()   # a prepared inference call runs what it built before the wrapping
        kept.clear()       # and a training call the loops its kept setups found before it
        try:
            call()             # a repeated inference call reuses what the first built (fastlstm.backends.cpu.prepared)
            call()             # and loads, at its first reuse, the code that checks the parameters
            totals.clear()
            start = time.perf_counter()
            for _ in range(args.repeats):
                call()
            total = (time.perf_counter() - start) / args.repeats
        finally:
            (driver.matmul_runner, driver.product_runner, driver.gradient_runner, driver.forward_packer,
             driver.backward_packer, driver.write_output) = saved
            driver._loop_runner = loop_runner
            prepared._run_direction_for = run_direction_for
            prepared.Prepared.holds = holds
            prepared.clear()
            kept.clear()
            del kernels.forward_loop, kernels.backward_loop
        print(f"shape {shape.key}: {shape.label} I={shape.input_size} H={shape.hidden_size} "
              f"B={shape.batch} T={shape.steps} {shape.mode}: {1e3 * total:.2f} ms per call")
        loop_flops = _loop_flops(shape, True)
        big_flops = {"input GEMMs (x·W_ih, dx)": (2 if training else 1) * loop_flops * shape.input_size
                     / shape.hidden_size,
                     "weight-gradient GEMMs": loop_flops * (1 + shape.input_size / shape.hidden_size),
                     "forward loop": loop_flops, "backward loop": loop_flops,
                     "projections + loop (prepared)": loop_flops * (1 + shape.input_size / shape.hidden_size)}
        packed = 4.0 * shape.gates * shape.hidden_size ** 2
        parameters = 4.0 * shape.gates * shape.hidden_size * (shape.input_size + shape.hidden_size + 2)
        output = 4.0 * shape.steps * shape.batch * shape.hidden_size
        accounted = 0.0
        for name, seconds in totals.items():
            seconds /= args.repeats
            accounted += seconds
            if name in big_flops:
                rate = f"{big_flops[name] / seconds / 1e9:6.0f} GFLOP/s"
            else:   # bytes packed, the parameters' bytes read by the check, or y's bytes written
                moved = {"checking the parameters": parameters, "writing y": output}.get(name, packed)
                rate = f"{moved / seconds / 1e9:6.1f} GB/s"
            print(f"    {name:<28}{1e3 * seconds:8.2f} ms  {rate}")
        rest = total - accounted
        print(f"    {'the rest (Python, NumPy)':<28}{1e3 * rest:8.2f} ms  {100 * rest / total:5.1f} % of the call")
        print(f"    one thread's per-step GEMM alone ({shape.batch}×{shape.hidden_size} by "
              f"{shape.hidden_size}×{shape.gates * shape.hidden_size // threads}, 1-thread BLAS): "
              f"{_step_gemm_gflops(shape, threads):.0f} GFLOP/s, ×{threads} threads")


if __name__ == "__main__":
    main()

"""The least a training call made from Python costs besides its arithmetic, against 5 % of the call.

    python bench/call_floor.py [--shape lstm,16,64,1,50,training] [--calls 20000]

The per-call overhead target (5 % of a call) is a fixed budget of microseconds at small shapes.
Whatever a training call (forward and backward) does in compiled code, from Python it must at
least check its arguments (``x``'s and ``dy``'s type, dtype and shape; each parameter's), allocate
what it returns or keeps (``y``, the final and initial states' gradients, ``dx``, each parameter's
gradient, the tape's states and gate planes) and enter compiled code with those arrays. This
times exactly that, with fastlstm's own checks (:func:`fastlstm.functional._check_params`,
:func:`fastlstm.validation.check_shape`) and one empty compiled function taking every array, in
one process, best of five blocks, and prints it next to the whole call's time.
"""
import argparse
import time

import numpy as np
from numba import njit

from fastlstm import functional
from fastlstm.backends.cpu import CPUBackend
from fastlstm.benchmark.shapes import BenchShape
from fastlstm.validation import check_shape


@njit(cache=True)
def _enter(x, y, h, c, states, planes, dy, dx, dh, dc, w_ih, w_hh, b_ih, b_hh, gw_ih, gw_hh, gb_ih, gb_hh):
    """Nothing: what entering compiled code with a training call's arrays costs (twice a call)."""


def _best(function, calls):
    function()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="lstm,16,64,1,50,training", help="lstm,I,H,B,T,training (float32)")
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    cell, inputs, hidden, batch, steps, _ = args.shape.split(",")
    inputs, hidden, batch, steps = int(inputs), int(hidden), int(batch), int(steps)
    shape = BenchShape(args.shape, cell, (), inputs, hidden, batch, steps, "training", "float32", (), 1.0)
    layer = shape.make_layer()
    x, dy = shape.make_inputs()
    config, params, arrays = layer.config, layer._params, CPUBackend.arrays
    gates, dtype = config.cell.gates, np.float32

    def floor():
        functional._check_params(config, arrays, params)
        check_shape("x", arrays.convert("x", x, config.dtype), x.shape, "")
        check_shape("dy", arrays.convert("dy", dy, config.dtype), dy.shape, "")
        y = np.empty((steps, batch, hidden), dtype)
        h, c = np.empty((1, batch, hidden), dtype), np.empty((1, batch, hidden), dtype)
        states = np.empty((2, steps + 1, batch, hidden), dtype)
        planes = np.empty((gates, steps, batch, hidden), dtype)
        dx = np.empty((steps, batch, inputs), dtype)
        dh, dc = np.empty((1, batch, hidden), dtype), np.empty((1, batch, hidden), dtype)
        gradients = [np.empty_like(params[name]) for name in params]
        p = list(params.values())
        _enter(x, y, h, c, states, planes, dy, dx, dh, dc, *p, *gradients)      # the forward
        _enter(x, y, h, c, states, planes, dy, dx, dh, dc, *p, *gradients)      # the backward

    def call():
        layer(x)
        layer.backward(dy)

    floor_s, call_s = _best(floor, args.calls), _best(call, max(100, args.calls // 20))
    print(f"{args.shape}: training call {1e6 * call_s:.1f} µs; 5 % of it {5e4 * call_s:.1f} µs; the floor "
          f"(checks, allocations, two entries into compiled code) {1e6 * floor_s:.1f} µs = "
          f"{100 * floor_s / call_s:.1f} % of the call")


if __name__ == "__main__":
    main()

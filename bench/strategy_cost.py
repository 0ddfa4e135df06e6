"""The loop strategies' measured time against the cost model's, shape by shape.

    python bench/strategy_cost.py [--rounds 15] [--shape lstm,38,249,17,115,inference ...]

For each shape (the defaults: small batches around the point where the cost model chooses
between splitting the batch and splitting the units, inference and training), times one call
under each strategy the cost model weighs (``tuning.override(cpu_loop=...)``: "sequences",
"single", "units" with its blocks held), taking turns in one process, round after round (the
fastest of 3 calls of each per round; the median over rounds reported), and prints next to
each the model's ns per step (:func:`fastlstm.backends.cpu.strategy.step_costs`, the units
loop's with its margin) and which strategy ``"auto"`` takes. A shape where ``auto`` does not take
the fastest strategy by more than a few percent is where the ``cost_*`` knobs need measuring again.
"""
import argparse
import statistics
import time

from fastlstm import tuning
from fastlstm.backends.cpu import strategy
from fastlstm.benchmark.peers import build_fastlstm
from fastlstm.benchmark.shapes import BenchShape

SHAPES = (
    "lstm,2,162,7,95,inference,peephole", "lstm,43,280,9,68,inference", "lstm,32,384,12,100,inference",
    "lstm,256,256,16,100,inference,peephole", "lstm,38,249,17,115,inference", "lstm,16,200,24,100,inference",
    "lstm,74,258,40,133,inference", "lstm,64,512,8,100,inference", "lstm,16,128,4,200,inference",
    "lstm,8,1024,1,50,inference", "gru,32,300,12,100,inference", "gru,16,200,24,100,inference",
    "lstm,16,200,24,100,training", "lstm,64,512,8,50,training", "lstm,9,181,1,154,training",
    "gru,32,300,12,100,training",
)
STRATEGIES = ("sequences", "single", "units")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", action="append",
                        help="cell,I,H,B,T,mode[,option...], each option set true, e.g. peephole (repeatable)")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(f"{'shape':<42} " + " ".join(f"{s + ' ms':>12}" for s in STRATEGIES)
          + "   model µs/step (seq / single / units)   auto  auto/best")
    for text in args.shape or SHAPES:
        cell, inputs, hidden, batch, steps, mode, *options = text.split(",")
        shape = BenchShape(text, cell, tuple((option, True) for option in options), int(inputs), int(hidden),
                           int(batch), int(steps), mode, "float32", (), 1.0)
        layer = shape.make_layer()
        call = build_fastlstm(shape, layer, *shape.make_inputs()).run
        training = mode == "training"

        for name in STRATEGIES:
            with tuning.override(cpu_loop=name):
                call()
        best = {name: [] for name in STRATEGIES}
        for round_ in range(args.rounds):
            for name in (STRATEGIES if round_ % 2 == 0 else STRATEGIES[::-1]):
                with tuning.override(cpu_loop=name):
                    times = []
                    for _ in range(3):
                        start = time.perf_counter()
                        call()
                        times.append(time.perf_counter() - start)
                best[name].append(min(times))
                time.sleep(0.02)
        medians = {name: statistics.median(values) for name, values in best.items()}
        spec = shape.cell_type.spec
        phases = len(spec.forward) + (len(spec.backward) if training else 0)
        held = tuning.get("cpu_units_sync") == "barrier"
        costs = strategy.step_costs(len(spec.gates), phases, shape.batch, shape.hidden_size, 1, 4, training, held)
        costs["units"] *= 1 + tuning.get("cost_held_margin" if held else "cost_units_margin") / 100
        chosen = strategy.choose(spec, shape.batch, shape.hidden_size, 1, 4, training).strategy
        print(f"{text:<42} " + " ".join(f"{1e3 * medians[s]:12.2f}" for s in STRATEGIES)
              + "   " + " / ".join(f"{costs[s] / 1e3:.1f}" for s in STRATEGIES).ljust(38)
              + f"{chosen:>10}  {medians[chosen] / min(medians.values()):.3f}")


if __name__ == "__main__":
    main()

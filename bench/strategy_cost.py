"""The loop strategies' measured time against the cost model's, shape by shape.

    python bench/strategy_cost.py [--rounds 15] [--shape lstm,38,249,17,115,inference ...]

For each shape (the defaults: small batches around the point where the cost model chooses
between splitting the batch and splitting the units, inference and training), times one call
under each strategy the cost model weighs (``tuning.override(cpu_loop=...)``: "sequences",
"single", "units" with its blocks held), taking turns in one process, round after round
(:func:`fastlstm.benchmark.timing.interleaved_times`, with shorter pauses and blocks than the
table's; the median over rounds reported), and prints next to each the model's ns per step
(:func:`fastlstm.backends.cpu.strategy.weighed_costs`, the units loop's with its margin) and
which strategy ``"auto"`` takes. A shape where ``auto`` does not take
the fastest strategy by more than a few percent is where the ``cost_*`` knobs need measuring again.
"""
import argparse
import statistics

from fastlstm import tuning
from fastlstm.backends.cpu import strategy
from fastlstm.benchmark.peers import build_fastlstm
from fastlstm.benchmark.shapes import BenchShape
from fastlstm.benchmark.timing import interleaved_times

SHAPES = (
    "lstm,2,162,7,95,inference,peephole", "lstm,43,280,9,68,inference", "lstm,32,384,12,100,inference",
    "lstm,256,256,16,100,inference,peephole", "lstm,38,249,17,115,inference", "lstm,16,200,24,100,inference",
    "lstm,74,258,40,133,inference", "lstm,64,512,8,100,inference", "lstm,16,128,4,200,inference",
    "lstm,8,1024,1,50,inference", "gru,32,300,12,100,inference", "gru,16,200,24,100,inference",
    "lstm,16,200,24,100,training", "lstm,64,512,8,50,training", "lstm,9,181,1,154,training",
    "gru,32,300,12,100,training",
)
STRATEGIES = ("sequences", "single", "units")


def _forced(call, name):
    """``call`` under the loop strategy ``name``."""
    def run():
        with tuning.override(cpu_loop=name):
            call()
    return run


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
        times = interleaved_times({name: _forced(call, name) for name in STRATEGIES}, args.rounds, pause=0.05,
                                  min_block=0.05, settle=0.05)
        medians = {name: statistics.median(values) for name, values in times.items()}
        spec, training = shape.cell_type.spec, mode == "training"
        costs = strategy.weighed_costs(spec, shape.batch, shape.hidden_size, 1, 4, training)
        chosen = strategy.choose(spec, shape.batch, shape.hidden_size, 1, 4, training).strategy
        print(f"{text:<42} " + " ".join(f"{1e3 * medians[s]:12.2f}" for s in STRATEGIES)
              + "   " + " / ".join(f"{costs[s] / 1e3:.1f}" for s in STRATEGIES).ljust(38)
              + f"{chosen:>10}  {medians[chosen] / min(medians.values()):.3f}")


if __name__ == "__main__":
    main()

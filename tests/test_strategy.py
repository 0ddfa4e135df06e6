"""The cpu loop strategies' chooser (fastlstm.backends.cpu.strategy): forced choices, the cost
model's argmin, blocks that partition the batch, and plans that never follow the thread count.
That every strategy computes the reference's results is the property tests' job
(test_cpu_matches_reference, test_sequences, test_regularisation: each draws a strategy)."""
import numpy as np
import pytest

from fastlstm import tuning
from fastlstm.backends.cpu.strategy import STRATEGIES, choose, step_costs
from fastlstm.cells import make_cell

LSTM = make_cell("lstm").spec
GRU = make_cell("gru").spec


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_forced_strategy_is_the_plan(strategy):
    with tuning.override(cpu_loop=strategy):
        plan = choose(LSTM, 64, 128, 1, 4, training=True)
    assert plan.strategy == strategy
    assert plan.loop == ("units" if strategy == "units" else "sequences")


def test_an_unknown_strategy_is_a_clear_error():
    with pytest.raises(ValueError, match="cpu_loop.*expected one of"):
        with tuning.override(cpu_loop="rows"):
            pass


@pytest.mark.parametrize("batch, hidden, directions, training", [
    (1, 16, 1, False), (1, 1024, 1, True), (256, 16, 1, False), (64, 256, 2, True), (4, 256, 1, False),
    (32, 64, 1, True), (16, 512, 1, True), (3, 7, 2, False)])
def test_auto_takes_the_cheapest_strategy_of_the_model(batch, hidden, directions, training):
    plan = choose(LSTM, batch, hidden, directions, 4, training)
    phases = len(LSTM.forward) + (len(LSTM.backward) if training else 0)
    costs = step_costs(len(LSTM.gates), phases, batch, hidden, directions, 4, training)
    costs["units"] *= 1 + tuning.get("cost_units_margin") / 100
    assert costs[plan.strategy] == min(costs.values())


def test_the_units_loop_needs_its_margin():
    """A shape where the units loop models a little faster (within the margin) runs by sequences,
    and without the margin by units."""
    phases = len(LSTM.forward) + len(LSTM.backward)
    within = []
    for batch in (1, 2, 4, 8, 16, 32, 64, 128):
        for hidden in (64, 128, 256, 384, 512, 768, 1024):
            costs = step_costs(len(LSTM.gates), phases, batch, hidden, 1, 4, True)
            others = min(costs["sequences"], costs["single"])
            if costs["units"] < others < 1.25 * costs["units"]:
                within.append((batch, hidden, "single" if costs["single"] == others else "sequences"))
    assert within, "no shape of the grid models the units loop faster by less than its margin"
    for batch, hidden, other in within:
        assert choose(LSTM, batch, hidden, 1, 4, training=True).strategy == other
        with tuning.override(cost_units_margin=0):
            assert choose(LSTM, batch, hidden, 1, 4, training=True).strategy == "units"


def test_the_model_splits_large_batches_by_sequences_and_wide_single_sequences_by_units():
    assert choose(LSTM, 256, 16, 1, 4, training=False).strategy == "sequences"
    assert choose(GRU, 1, 1024, 1, 4, training=False).strategy == "units"
    assert choose(LSTM, 1, 16, 1, 4, training=True).strategy == "single"


@pytest.mark.parametrize("batch", [1, 2, 7, 16, 33, 256])
@pytest.mark.parametrize("rows, threads", [(1, 4), (8, 2), (3, 16)])
def test_blocks_of_sequences_partition_the_batch(batch, rows, threads):
    with tuning.override(cpu_loop="sequences", batch_rows=rows, cost_threads=threads):
        bounds = choose(LSTM, batch, 32, 1, 4, training=True).row_bounds
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == batch and np.all(sizes > 0)
    assert len(sizes) <= threads
    assert len(sizes) == 1 or sizes.min() >= rows


def test_the_plan_never_follows_the_thread_count():
    import numba

    shapes = [(b, h, d, t) for b in (1, 5, 64, 256) for h in (8, 128, 1024) for d in (1, 2) for t in (False, True)]
    before = numba.get_num_threads()
    try:
        plans = []
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            plans.append([(p.strategy, tuple(p.row_bounds), tuple(p.unit_bounds))
                          for p in (choose(LSTM, *shape[:3], 4, shape[3]) for shape in shapes)])
    finally:
        numba.set_num_threads(before)
    assert all(p == plans[0] for p in plans)

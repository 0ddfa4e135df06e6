"""The cpu loop strategies' chooser (fastlstm.backends.cpu.strategy): forced choices, the cost
model's argmin, blocks that partition the batch, and plans that never follow the thread count;
the held units loop's barrier, and its blocks taken over where a region has fewer threads.
That every strategy computes the reference's results is the property tests' job
(test_cpu_matches_reference, test_sequences, test_regularisation: each draws a strategy)."""
import os

import numpy as np
import pytest

from fastlstm import tuning
from fastlstm.backends.cpu.strategy import STRATEGIES, choose, held_threads, step_costs
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
@pytest.mark.parametrize("sync", ["barrier", "regions"])
def test_auto_takes_the_cheapest_strategy_of_the_model(batch, hidden, directions, training, sync):
    held = sync == "barrier"
    with tuning.override(cpu_units_sync=sync):
        plan = choose(LSTM, batch, hidden, directions, 4, training)
        phases = len(LSTM.forward) + (len(LSTM.backward) if training else 0)
        costs = step_costs(len(LSTM.gates), phases, batch, hidden, directions, 4, training, held)
        costs["units"] *= 1 + tuning.get("cost_held_margin" if held else "cost_units_margin") / 100
    assert costs[plan.strategy] == min(costs.values())


@pytest.mark.parametrize("sync, margin", [("barrier", "cost_held_margin"), ("regions", "cost_units_margin")])
def test_the_units_loop_needs_its_margin(sync, margin):
    """A shape where the units loop models a little faster (within the margin) runs by sequences,
    and without the margin by units."""
    phases = len(LSTM.forward) + len(LSTM.backward)
    within = []
    with tuning.override(cpu_units_sync=sync):
        factor = 1 + tuning.get(margin) / 100
        for batch in (1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48, 64, 128):
            for hidden in (64, 96, 128, 192, 256, 320, 384, 512, 768, 1024):
                costs = step_costs(len(LSTM.gates), phases, batch, hidden, 1, 4, True, sync == "barrier")
                others = min(costs["sequences"], costs["single"])
                if costs["units"] < others < factor * costs["units"]:
                    within.append((batch, hidden, "single" if costs["single"] == others else "sequences"))
        assert within, "no shape of the grid models the units loop faster by less than its margin"
        for batch, hidden, other in within:
            assert choose(LSTM, batch, hidden, 1, 4, training=True).strategy == other
            with tuning.override(**{margin: 0}):
                assert choose(LSTM, batch, hidden, 1, 4, training=True).strategy == "units"


def test_the_model_splits_large_batches_by_sequences_and_wide_single_sequences_by_units():
    assert choose(LSTM, 256, 16, 1, 4, training=False).strategy == "sequences"
    # an odd batch too: blocks of 1 and 2 rows beat one thread on 3 from H 64 (bench/blocks_together.py --batches 3)
    odd = choose(LSTM, 3, 64, 1, 4, training=False)
    assert odd.strategy == "sequences" and list(odd.row_bounds) == [0, 1, 3]
    assert choose(GRU, 1, 1024, 1, 4, training=False).strategy == "units"
    assert choose(LSTM, 1, 16, 1, 4, training=True).strategy == "single"


@pytest.mark.parametrize("batch", [1, 2, 7, 16, 33, 256])
@pytest.mark.parametrize("rows, threads", [(1, 4), (8, 2), (3, 16)])
def test_blocks_of_sequences_partition_the_batch(batch, rows, threads):
    with tuning.override(cpu_loop="sequences", batch_rows=rows, cost_threads=threads):
        bounds = choose(LSTM, batch, 32, 1, 4, training=True).row_bounds
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == batch and np.all(sizes > 0)
    assert len(sizes) <= threads and sizes.max() - sizes.min() <= 1
    assert len(sizes) == 1 or sizes.max() >= rows
    # as many blocks as allowed: twice as many would exceed the threads or leave the largest too small
    assert 2 * len(sizes) > min(threads, batch) or -(-batch // (2 * len(sizes))) < rows


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


def test_the_units_loop_holds_its_blocks_only_where_each_has_a_thread():
    """Held blocks (a barrier per phase) need a thread each at once: with one Numba thread, or
    chunks of several blocks, the same blocks run a parallel region per phase instead."""
    import numba

    before = numba.get_num_threads()
    with tuning.override(cpu_loop="units"):
        plan = choose(LSTM, 4, 256, 1, 4, training=False)
        assert len(plan.unit_bounds) - 1 == min(tuning.get("cost_threads"), 256 // tuning.get("step_units"))
        assert plan.held == (held_threads() >= plan.blocks and plan.blocks > 1)
        assert plan.loop_kind == ("held" if plan.held else "units")
        try:
            numba.set_num_threads(1)
            alone = choose(LSTM, 4, 256, 1, 4, training=False)
            numba.set_num_threads(before)
            numba.set_parallel_chunksize(4)
            chunked = choose(LSTM, 4, 256, 1, 4, training=False)
        finally:
            numba.set_num_threads(before)
            numba.set_parallel_chunksize(0)
        for other in (alone, chunked):
            assert not other.held and other.loop_kind == "units"
            assert np.array_equal(other.unit_bounds, plan.unit_bounds)
        with tuning.override(cpu_units_sync="regions"):
            assert not choose(LSTM, 4, 256, 1, 4, training=False).held


def test_the_barrier_holds_every_thread_until_all_arrive():
    """Each of two threads writes a round's number, waits, then reads the other's: a barrier that
    let a thread through early would show it the previous round's."""
    import numba
    from numba import njit, prange

    from fastlstm.backends.cpu.barrier import new_barrier, wait_all

    if held_threads() < 2:
        pytest.skip("needs two Numba threads that run at once")

    @njit(parallel=True)
    def rounds(words, slots, count):
        early = np.zeros(2, np.int64)
        for thread in prange(2):
            for round_ in range(count):
                slots[thread] = round_
                wait_all(words, 2)
                if slots[1 - thread] != round_:
                    early[thread] += 1
                wait_all(words, 2)
        return early

    assert numba.get_num_threads() >= 2
    assert np.array_equal(rounds(new_barrier(), np.zeros(2, np.int64), 20_000), [0, 0])


def test_blocks_that_do_not_all_run_at_once_are_run_by_one_thread():
    """A held region's blocks meet before the first step: where all run at once each keeps its
    own; where a runtime gives the region fewer threads (here one), the first block to stop
    waiting runs them all and the others none, instead of waiting at a barrier for ever."""
    import numba
    from numba import njit, prange

    from fastlstm.backends.cpu.barrier import new_barrier, take_blocks

    @njit(parallel=True)
    def meet(words):
        taken = np.zeros((2, 3), np.int64)
        for block in prange(2):
            first, last, waits = take_blocks(words, block, 2)
            taken[block, 0], taken[block, 1], taken[block, 2] = first, last, waits
        return taken

    before = numba.get_num_threads()
    if held_threads() >= 2:
        assert meet(new_barrier()).tolist() == [[0, 1, 1], [1, 2, 1]]
    try:
        numba.set_num_threads(1)
        alone = meet(new_barrier()).tolist()
    finally:
        numba.set_num_threads(before)
    assert sorted(alone) == [[0, 0, 0], [0, 2, 0]]


_TEAM_OF_ONE = """
import numpy as np, fastlstm
from fastlstm import tuning
from fastlstm.backends.cpu import driver, prepared, strategy
from fastlstm.cells import make_cell
for module in (strategy, prepared, driver):   # a runtime that reports 2 threads and gives a region 1
    module.held_threads = lambda: 2
rng = np.random.default_rng(3)
x = rng.standard_normal((30, 2, 5)).astype(np.float32)
dy = rng.standard_normal((30, 2, 32)).astype(np.float32)

def arrays(value):
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, dict):
        return [a for k in sorted(value) for a in arrays(value[k])]
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in arrays(v)]
    return []

def run(sync):
    layer = fastlstm.LSTM(5, 32, seed=4)
    with tuning.override(cpu_loop="units", step_units=8, cpu_units_sync=sync):
        assert strategy.choose(make_cell("lstm").spec, 2, 32, 1, 4, True).held == (sync == "barrier")
        y = layer(x)[0]
        return arrays((y, layer.backward(dy), layer(x, tape=False)[0]))

held, regions = run("barrier"), run("regions")
assert len(held) == len(regions) > 3
assert all(np.array_equal(a, b) for a, b in zip(held, regions))
print("same bits")
"""


def test_a_held_loop_in_a_region_of_fewer_threads_finishes_with_the_same_bits():
    """OpenMP with OMP_THREAD_LIMIT=1 runs every region on one thread: a held loop that believed
    Numba's thread count (here: told so) takes its blocks over on that thread instead of waiting
    for a partner that never comes; forward, backward and a prepared call, the regions loop's bits."""
    import subprocess
    import sys

    import numba

    numba.get_num_threads()
    if numba.threading_layer() != "omp":
        pytest.skip("OMP_THREAD_LIMIT is OpenMP's")
    environment = dict(os.environ, OMP_THREAD_LIMIT="1", NUMBA_THREADING_LAYER="omp")
    result = subprocess.run([sys.executable, "-c", _TEAM_OF_ONE], env=environment, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "same bits" in result.stdout, result.stderr[-2000:]


def test_an_openmp_environment_that_may_shrink_a_region_holds_no_blocks(monkeypatch):
    import numba

    from fastlstm.backends.cpu import strategy

    numba.get_num_threads()
    if numba.threading_layer() != "omp" or held_threads() < 2:
        pytest.skip("needs OpenMP and two Numba threads")
    for name, value in (("OMP_THREAD_LIMIT", "1"), ("OMP_DYNAMIC", "TRUE")):
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            strategy._openmp_team_limit.cache_clear()
            assert held_threads() == 1
    strategy._openmp_team_limit.cache_clear()
    assert held_threads() == numba.get_num_threads()

"""How one layer call shares its time loops among threads: the loop strategies and the cost
model that chooses between them.

Strategies (:mod:`.loops`):

* ``"sequences"``: the batch rows are split into blocks; each block runs every step of a
  segment with no barrier, the blocks one parallel region per segment. Nothing waits for a
  thread the OS has descheduled until the segment's end.
* ``"single"``: the same loop on one block, in the calling thread, no parallel region.
* ``"units"``: every step's phases split by hidden units, a barrier after each phase (each
  block held by one thread in one region per segment, or a parallel region per phase): the
  only way to share a step of a batch too small to split.

The cost model (:func:`choose`) estimates a step's time under each strategy from the shape
and the ``cost_*`` knobs of :mod:`fastlstm.tuning` (measured on this project's machines with
``bench/strategy_cost.py``), never from the thread count: the blocks, and therefore every
result's bits, depend on the shape and the knobs alone (see :mod:`.units`). It assumes each
block gets a thread of its own (up to ``max_blocks``):

* a block of sequences costs, per phase, a fixed ``cost_call_ns`` and ``cost_row_ns`` per row
  (the gate pass's loop set-up), ``cost_gate_ps`` per gate value, its rows' flops at the rate
  of the tile kernel (:mod:`.tiles`) on that many rows or, when the recurrent weights do not
  fit in ``cost_cache_bytes`` and streaming all of them takes longer, that;
* a block of units costs the same for every running row and its share of the weights, plus
  ``cost_barrier_ns`` per phase where its blocks are held (:mod:`.barrier`: 330 ns measured
  alone), else ``cost_region_ns`` per parallel region (the fork, the barrier; an empty region
  measured 1.3–1.8 µs on this project's 2-core machines), and ``cost_exchange_ps`` per phase for
  each value of the state that another block wrote (every block reads the whole state: its
  cache lines cross cores every step).

The units loop is chosen only when it models ``cost_units_margin`` percent faster than the
others: its regions wait for every thread at every step, so beside a busy process it is the
one that collapses (``bench/under_load.py``: an LSTM(64, 256), B 32, T 100 training call
slowed 3.7× with it, 2.45× with blocks of sequences). Where every unit block has a thread of
its own (:func:`held_threads`), the units loop holds each block in one thread for a segment
and waits at a barrier that yields the core (:mod:`.barrier`): ``cost_barrier_ns`` a phase
instead of ``cost_region_ns``, and only ``cost_held_margin`` percent, since beside a busy
process it slows about as much as the others (the same call: 2.2×, with regions 4.9×).

Forcing a strategy: ``tuning.override(cpu_loop="units")`` or ``FASTLSTM_CPU_LOOP=units``.
``python bench/strategy_cost.py`` times each strategy against the model's costs, shape by shape.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ... import tuning
from .units import block_count, step_unit_bounds, unit_bounds

STRATEGIES = tuple(choice for choice in tuning.TUNABLES["cpu_loop"].choices if choice != "auto")


@dataclass(frozen=True)
class Plan:
    """How a layer call runs its loops.

    Attributes
    ----------
    strategy : {"sequences", "single", "units"}
    loop : {"sequences", "units"}, the loop templates it compiles (:data:`.kernels.LOOPS`)
    kind, blocks, block_rows : the compiled loop, its parallel blocks, the most rows in one
    row_bounds : ndarray (blocks + 1,) int64, the blocks of sequences (one block for "units")
    unit_bounds : ndarray (blocks + 1,) int64, the blocks of hidden units (one for the others)
    held : bool, "units" with each unit block held by one thread for a segment, a barrier per
        phase (:func:`.loops.forward_units_held`), instead of a parallel region per phase: where
        the ``cpu_units_sync`` knob says so and every block has a thread (:func:`held_threads`);
        the only part of a plan that follows the threads, and it changes no result
    """

    strategy: str
    row_bounds: np.ndarray
    unit_bounds: np.ndarray
    held: bool = False

    @functools.cached_property
    def loop(self):
        return "units" if self.strategy == "units" else "sequences"

    @functools.cached_property
    def kind(self):
        """How it runs: "units", "rows" (one block of rows, in the calling thread) or "blocks"
        (several, in one parallel region: :func:`.loops.rows_block` on :func:`.regions.each_block`)."""
        if self.loop == "units":
            return "units"
        return "rows" if len(self.row_bounds) == 2 else "blocks"

    @functools.cached_property
    def loop_kind(self):
        """The compiled loop it runs: "units", "held" or "rows" (:meth:`.kernels.CellKernels.forward_loop`)."""
        if self.loop == "units":
            return "held" if self.held else "units"
        return "rows"

    @functools.cached_property
    def blocks(self):
        """How many blocks the loop runs in parallel (each with its scratch)."""
        return len(self.unit_bounds if self.loop == "units" else self.row_bounds) - 1

    @functools.cached_property
    def block_rows(self):
        """The most batch rows one block projects."""
        return int(self.row_bounds[-1]) if self.loop == "units" else int(np.diff(self.row_bounds).max())


def _flop_rate(rows):
    """Modelled flops per ns of one thread's recurrent projection over ``rows`` rows: a GEMM of
    few rows is bound by its weight loads, its rate growing with the rows up to the peak."""
    peak = tuning.get("cost_peak_flops_per_ns")
    return peak * rows / (rows + tuning.get("cost_half_rate_rows"))


def sequence_blocks(batch):
    """Blocks of rows of the "sequences" loop: at most one per thread of ``cost_threads``, as
    many (a power of two) as leave the largest of the near-equal blocks at least ``batch_rows``
    rows (B 3 at ``batch_rows`` 2: blocks of 1 and 2 rows; B 2: one block)."""
    rows = max(1, tuning.get("batch_rows"))
    # k blocks leave the largest ceil(B / k) >= rows rows while B > (rows - 1) k
    most = batch if rows == 1 else (batch - 1) // (rows - 1)
    return block_count(most, 1, min(max(1, tuning.get("cost_threads")), tuning.get("max_blocks")))


def held_threads():
    """How many blocks of a parallel region surely run at once, each on a thread of its own: the
    calling thread's Numba thread count where the threading layer gives each chunk of a region a
    thread (OpenMP, workqueue) and a chunk is one block (``numba.set_parallel_chunksize`` at most
    1); else 1 (TBB may run two blocks one after the other on one thread: a barrier between
    them would never open). Under OpenMP, also 1 where its environment lets it give a region
    fewer threads (``OMP_DYNAMIC`` true, ``OMP_THREAD_LIMIT`` below the count): a held region
    would then run its blocks on one thread (:func:`.barrier.take_blocks`) after a wait."""
    import numba

    threads = numba.get_num_threads()      # starts the threading layer
    layer = numba.threading_layer()
    if numba.get_parallel_chunksize() > 1 or layer not in ("omp", "workqueue"):
        return 1
    if layer == "omp" and _openmp_team_limit() < threads:
        return 1
    return threads


@functools.lru_cache(maxsize=1)
def _openmp_team_limit():
    """The most threads OpenMP's environment surely gives a region: 1 under ``OMP_DYNAMIC``
    (it may give fewer, as it sees the load), ``OMP_THREAD_LIMIT``, else no limit. OpenMP
    reads them once, when it loads, so they are read once here."""
    import os

    if os.environ.get("OMP_DYNAMIC", "").strip().lower() in ("true", "1", "yes"):
        return 1
    try:
        return max(1, int(os.environ.get("OMP_THREAD_LIMIT", "")))
    except ValueError:
        return 1 << 30


def held_unit_bounds(hidden):
    """The unit blocks of the held "units" loop: :func:`.units.step_unit_bounds`, at most
    ``cost_threads`` of them (one thread each)."""
    return step_unit_bounds(hidden, max(1, min(tuning.get("cost_threads"), tuning.get("max_blocks"))))


def step_costs(gates, phases, batch, hidden, directions, itemsize, training, held=False):
    """Modelled ns of one time step of a layer call under each strategy (the module's docstring).

    Parameters
    ----------
    gates : int, G: the recurrent weights are (G·H, H)
    phases : int, parallel regions per step of the "units" loop (forward, plus backward's)
    batch, hidden, directions, itemsize : int
    training : bool, whether the step is a forward and a backward (twice the projections)
    held : bool, whether the "units" loop holds its blocks (a barrier per phase, ``cost_barrier_ns``)

    Returns
    -------
    dict of strategy -> float
    """
    threads = max(1, tuning.get("cost_threads"))
    passes = 2 if training else 1
    weight_bytes = gates * hidden * hidden * itemsize
    stream = tuning.get("cost_stream_bytes_per_ns")
    cache = tuning.get("cost_cache_bytes")
    call, row_ns, gate_ns = tuning.get("cost_call_ns"), tuning.get("cost_row_ns"), tuning.get("cost_gate_ps") / 1000

    def block_ns(rows, weight_share):
        """One thread's step on ``rows`` rows and a share of the weights."""
        flops = passes * 2.0 * rows * gates * hidden * hidden * weight_share
        values = passes * rows * gates * hidden * weight_share
        share_bytes = weight_bytes * weight_share
        loads = passes * share_bytes / stream if share_bytes > cache else 0.0
        # the tile kernel streams the weights while it computes: whichever is slower bounds it
        return phases * (call + rows * row_ns) + values * gate_ns + max(flops / _flop_rate(rows), loads)

    blocks = sequence_blocks(batch)
    unit_blocks = len(held_unit_bounds(hidden) if held else step_unit_bounds(hidden)) - 1
    sync = tuning.get("cost_barrier_ns" if held else "cost_region_ns")
    # the state values each block reads that the others wrote
    exchanged = batch * hidden * (1 - 1 / unit_blocks) * tuning.get("cost_exchange_ps") / 1000
    return {
        "sequences": directions * -(-blocks // threads) * block_ns(-(-batch // blocks), 1.0),
        "single": directions * block_ns(batch, 1.0),
        "units": directions * (-(-unit_blocks // threads) * block_ns(batch, 1.0 / unit_blocks)
                               + phases * (sync + exchanged)),
    }


def weighed_costs(spec, batch, hidden, directions, itemsize, training):
    """What ``"auto"`` compares: :func:`step_costs` of a layer call of cell ``spec``, the units
    loop's with its margin (``cost_held_margin`` where ``cpu_units_sync`` holds its blocks, else
    ``cost_units_margin``). Arguments as :func:`choose`'s."""
    held = tuning.get("cpu_units_sync") == "barrier"
    phases = len(spec.forward) + (len(spec.backward) if training else 0)
    costs = step_costs(len(spec.gates), phases, batch, hidden, directions, itemsize, training, held)
    # the units loop waits for every thread at every step: beside a busy process its regions
    # collapse where the others do not, so it must win by a margin; its held blocks' barrier
    # yields the core and slows about as much as the others (bench/under_load.py)
    costs["units"] *= 1 + tuning.get("cost_held_margin" if held else "cost_units_margin") / 100
    return costs


def choose(spec, batch, hidden, directions, itemsize, training):
    """The :class:`Plan` of a layer call: the ``cpu_loop`` knob's strategy, or under ``"auto"``
    the one :func:`weighed_costs` models fastest (ties to the fewer threads).

    Parameters
    ----------
    spec : fastlstm.cells.spec.CellSpec
    batch, hidden, directions, itemsize : int
    training : bool
    """
    return _plan(spec, batch, hidden, directions, itemsize, bool(training), tuning.state(), held_threads())


@functools.lru_cache(maxsize=256)
def _plan(spec, batch, hidden, directions, itemsize, training, knobs, threads):
    """:func:`choose`'s plan, once per shape, state of the knobs (``knobs``: :func:`fastlstm.tuning.state`,
    a tenth of the cost of reading each knob the plan depends on) and :func:`held_threads`."""
    return _choose(spec, batch, hidden, directions, itemsize, training, threads)


def _choose(spec, batch, hidden, directions, itemsize, training, threads):
    strategy = tuning.get("cpu_loop")
    # planned for held blocks whatever the threads (the plan follows the shape and the knobs);
    # with fewer threads than blocks the same blocks run a region per phase: the same bits
    held = tuning.get("cpu_units_sync") == "barrier"
    if strategy == "auto":
        costs = weighed_costs(spec, batch, hidden, directions, itemsize, training)
        strategy = min(("single", "sequences", "units"), key=lambda s: costs[s])
    rows, units = unit_bounds(batch, 1), unit_bounds(hidden, 1)
    if strategy == "units":
        units = held_unit_bounds(hidden) if held else step_unit_bounds(hidden)
    elif strategy == "sequences":
        rows = unit_bounds(batch, sequence_blocks(batch))
    rows.flags.writeable = units.flags.writeable = False     # a plan is shared by every call of its shape
    return Plan(strategy, rows, units, held and strategy == "units" and 2 < len(units) <= threads + 1)

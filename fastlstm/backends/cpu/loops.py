"""The time loops every cell shares, as templates :mod:`.kernels` binds and compiles.

Each loop walks time sequentially; a step is the cell's phases (:mod:`.steps`). Two ways to
share a call among threads (:mod:`.strategy` chooses):

* **by sequences** (:func:`forward_rows`, :func:`backward_rows`): sequences are independent,
  so a block of batch rows runs every step of the segment, every phase, every hidden unit,
  with no barrier; several blocks run in one parallel region per segment (:func:`rows_block`
  on :func:`.regions.each_block`). One block is the single-threaded loop.
* **by units** (:func:`forward_loop`, :func:`backward_loop`): each phase of each step is a
  parallel region (:func:`forward_units_block`, :func:`backward_units_block` on
  :func:`.regions.each_block`) in which every thread runs one block of hidden units (the
  blocks of ``bounds``, see :mod:`.units`) for every running sequence; the region's end is the
  barrier after which the next projection may read what all blocks wrote. Where every block
  has a thread of its own, the same steps run with each block held by one thread for the whole
  segment, in one region, the blocks waiting for one another at a barrier (:mod:`.barrier`)
  where a region would end (:func:`forward_units_held`, :func:`backward_units_held`): the same
  blocks and arithmetic, so the same bits.

Each step's projections are the tile kernel's (:mod:`.projection`, :mod:`.tiles`); the loops call no BLAS.

The batch is sorted by non-increasing length, so at step t the sequences still running are
the first ``active[t]`` rows; the others carry their state (and state gradient) unchanged and
cost no work.

A step's phases (:mod:`.steps`) are called through the addresses of their compiled copies
(:mod:`.calls`), which the arrays carry (``phase_code``, ``pointwise_code``,
``projection_code``): a loop links none of their code. The phase counts and ``RECORD_NORMS`` are
placeholders that every compiled loop binds.
"""
import numpy as np
from numba import njit

from ...rebinding import Unbound
from ...cells.bound import BACKWARD_PHASES, FORWARD_PHASES
from .barrier import BARRIER_WORDS, take_blocks, wait_all
from .calls import COMPILED_CALLERS_ONLY, address_of_value, borrowed, compiled_call, value_at, values_at
from .regions import VALUES, all_blocks, call_each_block, stamped

RECORD_NORMS = Unbound("RECORD_NORMS")
call_forward_phase = compiled_call(12)      # forward_phase(t, slot, step, rec_slot, next_slot, r0, r1, u0, u1, block, work, address)
call_backward_pointwise = compiled_call(10)  # backward_pointwise(t, step, r0, r1, u0, u1, work, dnext, dprev, address)
call_backward_projection = compiled_call(9)  # backward_projection(step, r0, r1, u0, u1, block, work, dprev, address)
call_rows_loop = compiled_call(6)           # forward_rows / backward_rows(a, t0, t1, r0, r1, work)


@njit(cache=True, error_model="numpy", **COMPILED_CALLERS_ONLY)
def record_state_gradient(t, r0, r1, dy, dnext, norms):
    """Before backward step t: norms[t, b] = ‖∂L/∂h_t‖ of rows [r0, r1), the gradient from the
    later steps plus dy[t] (introspection)."""
    for b in range(r0, r1):
        g_row, dy_row = dnext[0, b], dy[t, b]
        total = 0.0
        for u in range(g_row.shape[0]):
            g = g_row[u] + dy_row[u]
            total += g * g
        norms[t, b] = np.sqrt(total)


@njit(cache=True, error_model="numpy", **COMPILED_CALLERS_ONLY)
def carry_states(states, t, r0, r1, u0, u1):
    """Finished sequences keep their state: states[:, t + 1, b, u] = states[:, t, b, u] for b in
    [r0, r1) and u in [u0, u1) (every unit, or a held unit block's).

    (Element loops, not array assignments: those compile a shape-mismatch error path that
    costs seconds, and in a ``parallel=True`` loop an array expression is a region of its own.)"""
    for k in range(states.shape[0]):
        for b in range(r0, r1):
            for u in range(u0, u1):
                states[k, t + 1, b, u] = states[k, t, b, u]


@njit(cache=True, error_model="numpy", **COMPILED_CALLERS_ONLY)
def carry_gradients(dprev, dnext, r0, r1, u0, u1):
    """Finished sequences pass their state gradient through: dprev[:, b, u] = dnext[:, b, u] for b
    in [r0, r1) and u in [u0, u1)."""
    for k in range(dprev.shape[0]):
        for b in range(r0, r1):
            for u in range(u0, u1):
                dprev[k, b, u] = dnext[k, b, u]


def forward_rows(a, t0, t1, r0, r1, work):
    """Run steps ``t0`` … ``t1 − 1`` forward for batch rows [r0, r1), every unit (``a``:
    :class:`.steps.ForwardArrays`; ``work``: this block's projections, G·(r1 − r0)·H values).

    On entry ``a.states[:, t0, r0:r1]`` holds the rows' state before step t0 (and, under
    recurrent dropout, ``a.inputs`` their h ⊙ mask); on return ``a.states[:, t0 + 1 … t1,
    r0:r1]`` are filled. Nothing outside the rows is read or written but the shared weights.
    """
    address = address_of_value(a)
    hidden = a.states.shape[3]
    keep = 1 if a.tape.shape[1] == a.states.shape[1] - 1 else 0
    every_input = a.inputs.shape[0] == a.states.shape[1]
    for t in range(t0, t1):
        running = min(a.active[t], r1)
        rec_slot, next_slot = (t, t + 1) if every_input else (t % 2, (t + 1) % 2)
        if running > r0:
            for phase in range(FORWARD_PHASES):
                call_forward_phase(a.phase_code[phase], t, t * keep, t - t0, rec_slot, next_slot, r0, running, 0,
                                   hidden, 0, work, address)
        if running < r1:
            carry_states(a.states, t, max(r0, running), r1, 0, hidden)


def backward_rows(a, t0, t1, r0, r1, work):
    """Run steps ``t1 − 1`` down to ``t0`` backward for batch rows [r0, r1) (``a``:
    :class:`.steps.BackwardArrays` with one unit block; ``work``: this
    block's back-projections, (r1 − r0)·H values). The state gradients alternate in
    ``a.dstates`` as in :func:`backward_loop`; each phase's math is followed at once by its
    projection, the rows' own gradients being all it reads.
    """
    address = address_of_value(a)
    hidden = a.dy.shape[2]
    for t in range(t1 - 1, t0 - 1, -1):
        step = t - t0
        dnext = a.dstates[(step + 1) % 2]
        dprev = a.dstates[step % 2]
        running = min(a.active[t], r1)
        if running > r0:
            if RECORD_NORMS:
                record_state_gradient(t, r0, running, a.dy, dnext, a.norms)
            for phase in range(BACKWARD_PHASES):
                call_backward_pointwise(a.pointwise_code[phase], t, step, r0, running, 0, hidden, work, dnext, dprev,
                                        address)
                call_backward_projection(a.projection_code[phase], step, r0, running, 0, hidden, 0, work, dprev,
                                         address)
        if running < r1:
            carry_gradients(dprev, dnext, max(r0, running), r1, 0, hidden)


def _run_rows(each_block_code, rows_block_code, rows_loop_code, a, row_bounds, t0, t1):
    """The rows loop at ``rows_loop_code`` (compiled for ``a``) on steps t0 … t1 − 1 of every
    block of rows (``row_bounds``, (blocks + 1,) int64), from Python: one block in this thread,
    several in one parallel region (:func:`.regions.each_block` at ``each_block_code``) of
    :func:`rows_block` (at ``rows_block_code``)."""
    rows(each_block_code, rows_block_code, rows_loop_code, borrowed(a), row_bounds, address_of_value((a, row_bounds)),
         t0, t1)


def _rows(each_block_code, rows_block_code, rows_loop_code, a, row_bounds, address, t0, t1):
    """:func:`_run_rows` in compiled code, ``address`` that of the pair (a, row_bounds)."""
    if row_bounds.shape[0] == 2:
        call_rows_loop(rows_loop_code, a, t0, t1, row_bounds[0], row_bounds[1], a.work[0])
    else:
        call_each_block(each_block_code, rows_block_code, row_bounds.shape[0] - 1, address, rows_loop_code, t0, t1,
                        0, 0, 0, 0)


rows = njit(inline="always")(_rows)
run_rows = stamped(_run_rows)


def rows_block(block, address, rows_loop_code, t0, t1, i3, i4, i5, i6):
    """Block function (:mod:`.regions`) of a "sequences" plan: the rows loop at
    ``rows_loop_code`` on block ``block`` of rows, steps t0 … t1 − 1. Its values: the
    direction's arrays and the row bounds, (blocks + 1,) int64."""
    a, row_bounds = value_at(address, VALUES)
    call_rows_loop(rows_loop_code, a, t0, t1, row_bounds[block], row_bounds[block + 1], a.work[block])


@njit(inline="always")
def forward_unit_phase(a, block, phase, t, slot, step, rec_slot, next_slot, running, address):
    """Forward phase ``phase`` of step t on unit block ``block`` of ``a`` (:class:`.steps.ForwardArrays`,
    at ``address``), every running row."""
    call_forward_phase(a.phase_code[phase], t, slot, step, rec_slot, next_slot, 0, running, a.bounds[block],
                       a.bounds[block + 1], block, a.work[block], address)


@njit(inline="always")
def backward_unit_region(a, block, region, t, step, running, address):
    """Region ``region`` of backward step t on unit block ``block`` of ``a`` (:class:`.steps.BackwardArrays`,
    at ``address``): the projection of phase region − 1's gradients, then phase ``region``'s math,
    where there are such phases."""
    u0, u1, work = a.bounds[block], a.bounds[block + 1], a.work[block]
    dnext, dprev = a.dstates[(step + 1) % 2], a.dstates[step % 2]
    if region > 0:
        call_backward_projection(a.projection_code[region - 1], step, 0, running, u0, u1, block, work, dprev, address)
    if region < a.pointwise_code.shape[0] and a.pointwise_code[region] != 0:
        call_backward_pointwise(a.pointwise_code[region], t, step, 0, running, u0, u1, work, dnext, dprev, address)


def forward_units_block(block, address, phase, t, slot, step, rec_slot, next_slot, running):
    """Block function (:mod:`.regions`) of :func:`forward_loop`: :func:`forward_unit_phase` (its
    values: :class:`.steps.ForwardArrays`)."""
    forward_unit_phase(value_at(address, VALUES), block, phase, t, slot, step, rec_slot, next_slot, running, address)


def backward_units_block(block, address, region, t, step, running, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`backward_loop`: :func:`backward_unit_region` (its
    values: :class:`.steps.BackwardArrays`)."""
    backward_unit_region(value_at(address, VALUES), block, region, t, step, running, address)


def forward_loop(a, t0, t1, each_block_code, block_code):
    """Run steps ``t0`` … ``t1 − 1`` forward (``a``: :class:`.steps.ForwardArrays`), each phase of
    each step a parallel region (:func:`.regions.each_block` at ``each_block_code``) of
    :func:`forward_units_block` (at ``block_code``, compiled for ``a``'s type).

    On entry ``a.states[:, t0]`` holds the state before step t0 (and, under recurrent dropout,
    ``a.inputs`` its h ⊙ mask); on return ``a.states[:, t0 + 1 … t1]`` are filled.
    """
    address = address_of_value(a)
    batch = a.states.shape[2]
    block_count = a.bounds.shape[0] - 1
    keep = 1 if a.tape.shape[1] == a.states.shape[1] - 1 else 0
    every_input = a.inputs.shape[0] == a.states.shape[1]
    for t in range(t0, t1):
        running = a.active[t]
        rec_slot, next_slot = (t, t + 1) if every_input else (t % 2, (t + 1) % 2)
        if running > 0:
            for phase in range(FORWARD_PHASES):
                all_blocks(each_block_code, block_code, block_count, address, phase, t, t * keep, t - t0, rec_slot,
                           next_slot, running)
        if running < batch:
            carry_states(a.states, t, running, batch, 0, a.states.shape[3])


def backward_loop(a, t0, t1, each_block_code, block_code):
    """Run steps ``t1 − 1`` down to ``t0`` backward (``a``: :class:`.steps.BackwardArrays`), each
    region of each step a parallel region of :func:`backward_units_block` (as :func:`forward_loop`).

    ``a.dstates`` (2, S, B, H) is a pair of state-gradient buffers used alternately: on entry
    ``a.dstates[(t1 − t0) % 2]`` holds the gradient of the state after step t1 − 1, on return
    ``a.dstates[0]`` holds the gradient of the state before step t0. ``a.dgx``/``a.dgh``, zero
    on entry, receive the steps' gate gradients; rows past a sequence's end stay zero and pass
    the state gradient through. A step is one region per backward phase plus one: region p
    projects phase p − 1's gradients back (p > 0) and runs phase p's math (p < P), both on
    the block's own units.
    """
    address = address_of_value(a)
    batch = a.dy.shape[1]
    block_count = a.bounds.shape[0] - 1
    for t in range(t1 - 1, t0 - 1, -1):
        step = t - t0
        dnext = a.dstates[(step + 1) % 2]
        dprev = a.dstates[step % 2]
        running = a.active[t]
        if running > 0:
            if RECORD_NORMS:
                record_state_gradient(t, 0, running, a.dy, dnext, a.norms)
            for region in range(BACKWARD_PHASES + 1):
                all_blocks(each_block_code, block_code, block_count, address, region, t, step, running, 0, 0, 0)
        if running < batch:
            carry_gradients(dprev, dnext, running, batch, 0, a.dy.shape[2])


def forward_units_held(a, t0, t1, each_block_code, block_code):
    """:func:`forward_loop`'s steps in one parallel region (:func:`.regions.each_block` at
    ``each_block_code``) of :func:`forward_units_held_block` (at ``block_code``): each unit block
    held by one thread for the segment. Only where each block surely gets a thread of its own
    (:func:`.strategy.held_threads`): else the barrier would never open."""
    words = np.zeros(BARRIER_WORDS, np.int64)
    call_each_block(each_block_code, block_code, a.bounds.shape[0] - 1, address_of_value(a), t0, t1,
                    words.ctypes.data, 0, 0, 0, 0)


def backward_units_held(a, t0, t1, each_block_code, block_code):
    """:func:`backward_loop`'s steps in one parallel region of :func:`backward_units_held_block`,
    as :func:`forward_units_held`."""
    words = np.zeros(BARRIER_WORDS, np.int64)
    call_each_block(each_block_code, block_code, a.bounds.shape[0] - 1, address_of_value(a), t0, t1,
                    words.ctypes.data, 1 if RECORD_NORMS else 0, 0, 0, 0)


@njit(inline="always")
def held_start(words_address, block, bounds):
    """A held block's start: its region's barrier state (at ``words_address``), the parties (the
    unit blocks of ``bounds``), and the blocks it runs and whether it waits
    (:func:`.barrier.take_blocks`)."""
    words = values_at(words_address, BARRIER_WORDS, np.int64)
    parties = bounds.shape[0] - 1
    first, last, waits = take_blocks(words, block, parties)
    return words, parties, first, last, waits


def forward_units_held_block(block, address, t0, t1, words_address, i3, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`forward_units_held`: steps t0 … t1 − 1 of unit
    block ``block`` (its values: :class:`.steps.ForwardArrays`), a barrier (its state at
    ``words_address``) after each phase; or of every block, or none (:func:`.barrier.take_blocks`)."""
    a = value_at(address, VALUES)
    words, parties, first, last, waits = held_start(words_address, block, a.bounds)
    if first == last:
        return
    batch = a.states.shape[2]
    keep = 1 if a.tape.shape[1] == a.states.shape[1] - 1 else 0
    every_input = a.inputs.shape[0] == a.states.shape[1]
    for t in range(t0, t1):
        running = a.active[t]
        rec_slot, next_slot = (t, t + 1) if every_input else (t % 2, (t + 1) % 2)
        if running > 0:
            for phase in range(a.phase_code.shape[0]):
                if a.phase_code[phase] != 0:
                    for b in range(first, last):
                        forward_unit_phase(a, b, phase, t, t * keep, t - t0, rec_slot, next_slot, running, address)
                    if waits:
                        wait_all(words, parties)
        if running < batch:
            carry_states(a.states, t, running, batch, a.bounds[first], a.bounds[last])


def backward_units_held_block(block, address, t0, t1, words_address, record_norms, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`backward_units_held`: steps t1 − 1 … t0 of unit
    block ``block`` (its values: :class:`.steps.BackwardArrays`), a barrier after each region of
    :func:`backward_units_block`'s (and, recording norms, before a step: block 0 reads every unit);
    or of every block, or none (:func:`.barrier.take_blocks`)."""
    a = value_at(address, VALUES)
    words, parties, first, last, waits = held_start(words_address, block, a.bounds)
    if first == last:
        return
    batch = a.dy.shape[1]
    phases = 0
    for phase in range(a.pointwise_code.shape[0]):
        if a.pointwise_code[phase] != 0:
            phases += 1
    for t in range(t1 - 1, t0 - 1, -1):
        step = t - t0
        dnext = a.dstates[(step + 1) % 2]
        dprev = a.dstates[step % 2]
        running = a.active[t]
        if running > 0:
            if record_norms != 0:
                if waits:
                    wait_all(words, parties)      # every block's carried gradients are in dnext
                if first == 0:
                    record_state_gradient(t, 0, running, a.dy, dnext, a.norms)
            for region in range(phases + 1):
                for b in range(first, last):
                    backward_unit_region(a, b, region, t, step, running, address)
                if waits:
                    wait_all(words, parties)
        if running < batch:
            carry_gradients(dprev, dnext, running, batch, a.bounds[first], a.bounds[last])

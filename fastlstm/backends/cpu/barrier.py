"""A barrier between the threads of one parallel region, for loops that hold their blocks for a whole segment.

The "units" loop splits each step by hidden units; ending a parallel region per phase of each
step costs 1.5–3 µs on this project's 2-core machines (fork, join, scheduling). When every block
has a thread of its own, the loop instead runs one region per segment in which each thread
keeps its block for every step, and the blocks wait for one another after each phase here:
a counter and a generation in shared memory (atomic, sequentially consistent), the last
thread to arrive resetting the counter and advancing the generation. A waiting thread spins
``SPINS`` times (x86 ``pause``), then yields its core to the OS scheduler at each further
look, so that a waiting thread does not keep a core from a descheduled partner or another process.

Only a region whose blocks run concurrently may wait here: one block per thread, every
thread running (:func:`.strategy.held_threads` checks Numba's threading layer and thread count).
A runtime can still give a region fewer threads than Numba's count (``OMP_THREAD_LIMIT``,
``OMP_DYNAMIC``, a region started inside another): then one thread would run a block, wait
for the next block at the barrier, and never return to run it. So the blocks first meet
(:func:`take_blocks`): if every block is running within ``START_SPINS`` looks, each keeps
its own and waits at the barrier; if not, the first to stop waiting runs every block itself,
one after the other and phase by phase, without a barrier (the same blocks, so the same bits),
and every other block, whenever it starts, finds its work done.
"""
import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# int64 words of a barrier's state: the counter at 0 and the generation at GENERATION, a cache line
# apart; in a third line, the start's (:func:`take_blocks`): the blocks arrived, the tickets taken
# to decide, and the decision
BARRIER_WORDS = 24
GENERATION = 8
ARRIVED, TICKET, DECISION = 16, 17, 18
HELD, ALONE = 1, 2
# spins before a waiting thread starts yielding its core (each spin a ``pause``, ~40 cycles on Zen 4)
SPINS = 2000
# looks (spins, then yields of the core) a block waits at the start for the others before one
# thread runs them all: ~10 ms on an idle core (a yield with nothing else to run ~0.5 µs), a
# scheduler's time slice or more where another process waits for the core
START_SPINS = SPINS + 20000

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def atomic_add(typingctx, words, index, value):
    """``words[index] += value`` atomically (sequentially consistent); returns the old value."""
    def codegen(context, builder, signature, arguments):
        array = context.make_array(signature.args[0])(context, builder, arguments[0])
        pointer = builder.gep(array.data, [arguments[1]])
        return builder.atomic_rmw("add", pointer, arguments[2], "seq_cst")
    return types.int64(words, types.intp, types.int64), codegen


@intrinsic
def atomic_load(typingctx, words, index):
    """``words[index]`` read atomically (sequentially consistent)."""
    def codegen(context, builder, signature, arguments):
        array = context.make_array(signature.args[0])(context, builder, arguments[0])
        return builder.load_atomic(builder.gep(array.data, [arguments[1]]), "seq_cst", 8)
    return types.int64(words, types.intp), codegen


@intrinsic
def atomic_store(typingctx, words, index, value):
    """``words[index] = value`` atomically (sequentially consistent)."""
    def codegen(context, builder, signature, arguments):
        array = context.make_array(signature.args[0])(context, builder, arguments[0])
        builder.store_atomic(arguments[2], builder.gep(array.data, [arguments[1]]), "seq_cst", 8)
        return context.get_dummy_value()
    return types.void(words, types.intp, types.int64), codegen


@intrinsic
def pause(typingctx):
    """A spin-wait hint to the core (x86 ``pause``; nothing elsewhere)."""
    def codegen(context, builder, signature, arguments):
        if _X86:
            builder.call(cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                        "llvm.x86.sse2.pause"), [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def yield_core(typingctx):
    """Give the core back to the OS scheduler (POSIX ``sched_yield``)."""
    def codegen(context, builder, signature, arguments):
        builder.call(cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                                    "sched_yield"), [])
        return context.get_dummy_value()
    return types.void(), codegen


@njit(inline="always")
def _look(spins):
    """One look of a waiting thread: a ``pause`` for the first :data:`SPINS`, then a yield of its core."""
    if spins < SPINS:
        pause()
    else:
        yield_core()


@njit(inline="always")
def wait_all(words, parties):
    """Return once all ``parties`` threads have called this on ``words`` (a barrier's state,
    :data:`BARRIER_WORDS` int64, zero before its first use) as many times as this thread."""
    generation = atomic_load(words, GENERATION)
    if atomic_add(words, 0, 1) == parties - 1:
        atomic_store(words, 0, 0)
        atomic_add(words, GENERATION, 1)
        return
    spins = 0
    while atomic_load(words, GENERATION) == generation:
        _look(spins)
        spins += 1


@njit(inline="always")
def take_blocks(words, block, parties):
    """The blocks this thread runs of a held region of ``parties`` blocks, and whether it waits
    at the barrier after each phase: ``(block, block + 1, True)`` where every block is running
    at once; else ``(0, parties, False)`` for the one thread that runs them all, ``(0, 0, False)``
    for every other. ``words``: the region's barrier state, zero before the start."""
    atomic_add(words, ARRIVED, 1)
    decider = asked = False
    spins = 0
    while atomic_load(words, DECISION) == 0:
        if not asked and (atomic_load(words, ARRIVED) == parties or spins >= START_SPINS):
            # the first thread to stop waiting decides, from the arrivals it sees; the others wait for it
            asked = True
            if atomic_add(words, TICKET, 1) == 0:
                decider = True
                atomic_store(words, DECISION, HELD if atomic_load(words, ARRIVED) == parties else ALONE)
                break
        _look(spins)
        spins += 1
    if atomic_load(words, DECISION) == HELD:
        return block, block + 1, True
    if decider:
        return 0, parties, False
    return 0, 0, False


def new_barrier():
    """A barrier's state (for tests and callers from Python): :data:`BARRIER_WORDS` zeros."""
    return np.zeros(BARRIER_WORDS, np.int64)

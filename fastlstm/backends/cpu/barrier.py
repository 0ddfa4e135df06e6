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
"""
import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# int64 words of a barrier's state: the counter at 0 and the generation at GENERATION, a cache line apart
BARRIER_WORDS = 16
GENERATION = 8
# spins before a waiting thread starts yielding its core (each spin a ``pause``, ~40 cycles on Zen 4)
SPINS = 2000

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
        if spins < SPINS:
            pause()
            spins += 1
        else:
            yield_core()


def new_barrier():
    """A barrier's state (for tests and callers from Python): :data:`BARRIER_WORDS` zeros."""
    return np.zeros(BARRIER_WORDS, np.int64)

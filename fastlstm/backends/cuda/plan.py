"""Which recurrent loop runs a layer: persistent (weights on chip), per step, or per-step GEMMs.

The rule (:func:`choose`), for a layer of batch B:

1. B ≥ ``GEMM_MIN_BATCH`` (32): the **GEMM** loop. Per phase of each step, one GEMM of the
   B × H states (or the tape plane the phase projects) against ``weight_hh``'s rows, then one
   pointwise kernel, a thread per (sequence, unit), that runs the cell's math (forward and
   backward; the design of cuDNN's float32 RNNs and of Haste). Why from 32: the GEMM's
   64 × 64 tiles (:mod:`.gemm`) then hold at least half a tile of rows, so each weight a tile
   stages in shared memory serves ≥ 32 sequences, and the B/64 × G·H/64 tiles spread over
   every SM; whereas the persistent kernel's blocks are at most as many as the GPU holds at
   once, each doing B × (its units) × G·H multiply-adds per step behind a grid barrier, a
   time that grows linearly with B. Below 32 rows most of a tile is empty and the step's two
   launches (GEMM, pointwise) per phase are most of its cost. The DeepBench rows of
   ``bench/cuda_vs_cudnn.py`` fall on either side: inference at B ≤ 4 persistent, training
   at B = 32, 64, 128 GEMM. **The threshold is reasoned, not measured**: no GPU has timed
   these loops yet (``bench/gpu_session.py`` prints the plan per shape and times each loop).
2. Otherwise the **persistent** kernel, which keeps each block's share of ``weight_hh`` in
   shared memory for the whole sequence and synchronises the grid once per phase of a
   step. It needs every block resident at once (a cooperative launch): the weights must fit
   in the shared memory of as many blocks as the GPU can hold together.
3. Otherwise (weights too large for the chip at a small batch) the **per-step** loop: one
   launch per phase of each step, a group of lanes per (sequence, unit) computing its dot
   products with weights read from global memory (L2) every step.

The tuning knob ``cuda_loop`` (environment ``FASTLSTM_CUDA_LOOP``) forces any of the three:
"persistent", "per-step" or "gemm"; "auto" applies the rule.
"""
from dataclasses import dataclass

from ... import tuning

# Shared memory a block may use without the opt-in attribute (every GPU since Kepler).
SHARED_BYTES_PER_BLOCK = 48 * 1024
THREADS_PER_BLOCK = 256
# From this batch on, the GEMM loop (see the module's text).
GEMM_MIN_BATCH = 32
# Threads per block of the GEMM loop's pointwise kernels (a thread per (sequence, unit)).
POINTWISE_THREADS = 128
STEP_THREADS = 128
WARP = 32
# Each lane of a group should sum at least this many terms of a dot product.
TERMS_PER_LANE = 8


def forced_loop():
    """The loop the tuning knob ``cuda_loop`` asks for: "auto", "persistent", "per-step" or "gemm"
    (environment ``FASTLSTM_CUDA_LOOP``, read at each call; tests force each)."""
    return tuning.get("cuda_loop")


@dataclass(frozen=True)
class LoopPlan:
    """How the time loop of a layer runs.

    Attributes
    ----------
    kind : {"persistent", "per-step", "gemm"}
    blocks, threads : int
        Launch geometry (per step for "per-step"; the pointwise kernels' for "gemm").
    lanes : int
        Threads that share one (sequence, unit) pair's dot products (a power of two ≤ 32; 1
        for "gemm", whose dot products are the GEMM's).
    units_per_block : int
        Hidden units owned by each block of the persistent kernel (0 per step).
    shared_bytes : int
        Dynamic shared memory per block: the weights held on chip, then the lanes' partial sums.
    reason : str
        Why this loop was chosen, for ``python -m fastlstm check`` and users.
    """

    kind: str
    blocks: int
    threads: int
    lanes: int
    units_per_block: int
    shared_bytes: int
    reason: str

    def describe(self):
        """One line: the loop, its geometry and why."""
        if self.kind == "persistent":
            return (f"persistent: {self.blocks} blocks x {self.threads} threads ({self.lanes} per unit), "
                    f"{self.units_per_block} units and {self.shared_bytes / 1024:.1f} KiB of shared memory "
                    f"each ({self.reason})")
        if self.kind == "gemm":
            return (f"gemm: per step a GEMM of the batch's rows against weight_hh, then a pointwise kernel of "
                    f"{self.blocks} blocks x {self.threads} threads ({self.reason})")
        return (f"per-step: {self.blocks} blocks x {self.threads} threads ({self.lanes} per unit) "
                f"per step ({self.reason})")


def _power_of_two_at_most(n):
    return 1 << (max(int(n), 1).bit_length() - 1)


def lanes_for(length):
    """Lanes for a dot product of ``length`` terms: a power of two, ≤ 32, about 8 terms each."""
    lanes = 1
    while lanes < WARP and lanes * TERMS_PER_LANE < length:
        lanes *= 2
    return lanes


def _threads_for(lanes, items, most):
    return max(WARP, min(most, WARP * -(-lanes * items // WARP)))


def per_step(gates, batch, hidden, itemsize, reason):
    """One launch per phase of each step: a lane group per (b, u), weights from global memory."""
    lanes = lanes_for(hidden)
    threads = _threads_for(lanes, batch * hidden, STEP_THREADS)
    blocks = -(-batch * hidden // (threads // lanes))
    return LoopPlan("per-step", blocks, threads, lanes, 0, threads * gates * itemsize, reason)


def gemm(batch, hidden, reason):
    """Per step a GEMM and a pointwise kernel of a thread per (b, u)."""
    threads = POINTWISE_THREADS
    return LoopPlan("gemm", max(1, -(-batch * hidden // threads)), threads, 1, 0, 0, reason)


def choose(gates, batch, hidden, itemsize, max_resident_blocks, loop=None):
    """Pick the loop for one layer.

    Parameters
    ----------
    gates, batch, hidden, itemsize : int
    max_resident_blocks : callable
        ``max_resident_blocks(threads, shared_bytes)``: how many blocks of the persistent
        kernel the GPU holds at once (None where it cannot tell, e.g. the simulator, which
        runs a cooperative grid of one block only). Not called for the GEMM loop.
    loop : {"auto", "persistent", "per-step", "gemm"}, optional
        Defaults to :func:`forced_loop`.

    Returns
    -------
    LoopPlan
        By the module's rule: the GEMM loop from ``GEMM_MIN_BATCH`` sequences; below it,
        persistent wherever the weights fit on chip, spread over as many resident blocks as
        the GPU holds (fewer units per block: more lane groups per unit's work), else per step.
    """
    loop = loop or forced_loop()
    if loop == "per-step":
        return per_step(gates, batch, hidden, itemsize, "forced")
    if loop == "gemm":
        return gemm(batch, hidden, "forced")
    if loop == "auto" and batch >= GEMM_MIN_BATCH:
        return gemm(batch, hidden, f"batch {batch} >= {GEMM_MIN_BATCH}")
    unit_bytes = gates * hidden * itemsize
    partial_bytes = THREADS_PER_BLOCK * gates * itemsize
    fit = (SHARED_BYTES_PER_BLOCK - partial_bytes) // unit_bytes
    capacity = max_resident_blocks(THREADS_PER_BLOCK, partial_bytes + max(fit, 1) * unit_bytes)
    if capacity is None:   # one block holds every unit
        blocks, units, reason = 1, hidden, "single-block grid"
    elif fit < 1:
        return per_step(gates, batch, hidden, itemsize, f"one unit's {gates}x{hidden} weights exceed "
                        f"{(SHARED_BYTES_PER_BLOCK - partial_bytes) // 1024} KiB of shared memory")
    else:
        units = -(-hidden // min(hidden, capacity))
        if units > fit:
            return per_step(gates, batch, hidden, itemsize, f"weight_hh needs {-(-hidden // fit)} resident "
                            f"blocks, the GPU holds {capacity}")
        blocks, reason = -(-hidden // units), "weight_hh fits on chip"
    items = batch * units
    lanes = max(1, min(lanes_for(hidden), _power_of_two_at_most(THREADS_PER_BLOCK // items)))
    threads = _threads_for(lanes, items, THREADS_PER_BLOCK)
    return LoopPlan("persistent", blocks, threads, lanes, units, units * unit_bytes + threads * gates * itemsize,
                    reason)

"""Which recurrent loop runs a layer: persistent (weights on chip) or one launch per step.

The persistent kernel keeps each block's share of ``weight_hh`` in shared memory for the
whole sequence and synchronises the grid once per phase of a step. It needs every block
resident at once (a cooperative launch): the weights must fit in the shared memory of as
many blocks as the GPU can hold together. Otherwise the loop launches a kernel per phase
of each step and reads the weights from global memory (L2) every step.
"""
from dataclasses import dataclass

from ... import tuning

# Shared memory a block may use without the opt-in attribute (every GPU since Kepler).
SHARED_BYTES_PER_BLOCK = 48 * 1024
THREADS_PER_BLOCK = 256
STEP_THREADS = 128
WARP = 32
# Each lane of a group should sum at least this many terms of a dot product.
TERMS_PER_LANE = 8


def forced_loop():
    """The loop the tuning knob ``cuda_loop`` asks for: "auto", "persistent" or "per-step"
    (environment ``FASTLSTM_CUDA_LOOP``, read at each call; tests run both)."""
    return tuning.get("cuda_loop")


@dataclass(frozen=True)
class LoopPlan:
    """How the time loop of a layer runs.

    Attributes
    ----------
    kind : {"persistent", "per-step"}
    blocks, threads : int
        Launch geometry (per step for "per-step").
    lanes : int
        Threads that share one (sequence, unit) pair's dot products (a power of two ≤ 32).
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


def choose(gates, batch, hidden, itemsize, max_resident_blocks, loop=None):
    """Pick the loop for one layer.

    Parameters
    ----------
    gates, batch, hidden, itemsize : int
    max_resident_blocks : callable
        ``max_resident_blocks(threads, shared_bytes)``: how many blocks of the persistent
        kernel the GPU holds at once (None where it cannot tell, e.g. the simulator, which
        runs a cooperative grid of one block only).
    loop : {"auto", "persistent", "per-step"}, optional
        Defaults to :func:`forced_loop`.

    Returns
    -------
    LoopPlan
        Persistent wherever the weights fit on chip, spread over as many resident blocks as
        the GPU holds (fewer units per block: more lane groups per unit's work).
    """
    loop = loop or forced_loop()
    if loop == "per-step":
        return per_step(gates, batch, hidden, itemsize, "forced")
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

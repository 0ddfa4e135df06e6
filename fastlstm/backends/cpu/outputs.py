"""The layer's output ``y`` written from a direction's state history, by every thread."""
import numpy as np

from .calls import value_at
from .regions import VALUES, run_blocks
from .units import block_count

# outputs of at least this many bytes are written by every thread, a block of steps each
PARALLEL_OUTPUT_BYTES = 1 << 18

NATURAL_TIME = np.empty((0, 0), np.int64)       # no time index: step t at time t (or T − 1 − t)
EVERY_STEP = np.empty((0, 0), np.bool_)         # no mask: every step of every sequence valid


def output_steps(block, address, offset, blocks, reverse, i3, i4, i5, i6):
    """Block function (:mod:`.regions`) of :func:`write_output`: its steps [t0, t1); values
    (states, time, valid, y) (``time`` empty: step t at time t, or T − 1 − t if ``reverse``)."""
    states, time, valid, y = value_at(address, VALUES)
    steps, batch = y.shape[:2]
    hidden = states.shape[3]
    for t in range(block * steps // blocks, (block + 1) * steps // blocks):
        for b in range(batch):
            if valid.shape[0] == 0 or valid[t, b]:
                step = (steps - 1 - t if reverse else t) if time.shape[0] == 0 else time[t, b]
                for u in range(hidden):
                    y[t, b, offset + u] = states[0, step + 1, b, u]
            else:
                for u in range(hidden):
                    y[t, b, offset + u] = 0


def write_output(states, time, valid, y, offset):
    """``y[t, b, offset:offset + H] = h`` of step ``time[t, b]`` of sequence b, 0 where ``valid``
    is False.

    Parameters
    ----------
    states : ndarray (S, T + 1, B, H): a direction's state history, h first (``states[0, t + 1]``
        the h of its step t)
    time : ndarray of int64 (T, B), or None: the direction's step at each natural time (None: t)
    valid : ndarray of bool (T, B), or None (every step of every sequence)
    y : ndarray (T, B, D·H); its columns [offset, offset + H) written
    offset : int
    """
    steps, hidden = y.shape[0], states.shape[3]
    if time is None and valid is None and y.nbytes < PARALLEL_OUTPUT_BYTES:
        y[..., offset:offset + hidden] = states[0, 1:]     # NumPy's copy costs less than a compiled call's entry
        return
    time = NATURAL_TIME if time is None else time
    valid = EVERY_STEP if valid is None else valid
    blocks, parallel = output_split(steps, y.nbytes)
    run_blocks(output_steps, blocks, (states, time, valid, y), offset, blocks, 0, parallel=parallel)


def output_split(steps, nbytes):
    """How :func:`output_steps` writes a ``y`` of ``steps`` steps and ``nbytes`` bytes: ``(blocks,
    parallel)``, blocks of steps, on every thread if ``parallel`` (else one after the other)."""
    return block_count(steps, 1), nbytes >= PARALLEL_OUTPUT_BYTES


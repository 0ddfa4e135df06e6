"""Interleaved timing of several contenders and the statistics the table reports."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

# Between contenders: lets the previous one's spinning thread pool (Numba's OpenMP,
# OpenBLAS, PyTorch's OpenMP, ONNX Runtime's) go idle, so that nobody is timed while
# another's threads still hold a core.
PAUSE_S = 0.2
# Each timed sample is a block of back-to-back calls at least this long.
MIN_BLOCK_S = 0.1
# Untimed calls before each timed block, after the pause (see interleaved_times).
SETTLE_S = 0.1


@dataclass(frozen=True)
class Summary:
    """Median and interquartile range of one contender's times, in seconds."""

    median: float
    q1: float
    q3: float
    count: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def relative_iqr(self) -> float:
        """IQR / median (0 for a zero median)."""
        return self.iqr / self.median if self.median > 0 else 0.0


def summarise(times) -> Summary:
    """Median and quartiles of ``times`` (seconds, one per round)."""
    times = np.asarray(times, dtype=np.float64)
    if times.size == 0:
        raise ValueError("summarise: no times given")
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return Summary(float(median), float(q1), float(q3), int(times.size))


def interleaved_times(contenders: Mapping[str, Callable[[], object]], repeats: int,
                      warmup: int = 1, pause: float = PAUSE_S, min_block: float = MIN_BLOCK_S,
                      settle: float = SETTLE_S, clock=time.perf_counter,
                      sleep=time.sleep) -> dict[str, list[float]]:
    """Time each contender ``repeats`` times, in rounds A, B, C, A, B, C, ….

    Every contender is first called ``warmup`` times (untimed: compilation, first-touch
    allocations, session set-up); one more call, warm, measures how many back-to-back calls
    fill ``min_block`` seconds. In each round every contender gets, after
    a pause of ``pause`` seconds, ``settle`` seconds of untimed calls and then one timed
    block of that many calls; its time is the block's duration over its number of calls.
    On these virtual machines the cores run slowly for a while after being idle (measured:
    a 0.6 ms fastlstm call took 1.5 ms on average over the 0.1 s after a 0.2 s pause, and a
    2 ms PyTorch LSTM inference 8 ms as a single call), which a user's loop of calls does
    not see; the settled block measures the loop.

    Parameters
    ----------
    contenders : mapping name -> zero-argument callable
    repeats : int, ≥ 1
    warmup : int, ≥ 1
    pause : float, seconds
    min_block : float, seconds; 0 times single calls
    settle : float, seconds of untimed calls before each timed block
    clock, sleep : the timer and the pause (replaceable in tests)

    Returns
    -------
    dict name -> list of ``repeats`` per-call wall-clock durations in seconds, in round order
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected a positive integer, got {repeats}")
    if warmup < 1:
        raise ValueError(f"warmup: expected a positive integer, got {warmup}")
    calls = {}
    for name, run in contenders.items():
        for _ in range(warmup):
            sleep(pause)
            run()
        # sized on a warm call: a first call that compiles would make every block one call
        start = clock()
        run()
        single = clock() - start
        calls[name] = max(1, math.ceil(min_block / single)) if single > 0 else 1
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            sleep(pause)
            start = clock()
            while clock() - start < settle:
                run()
            start = clock()
            for _ in range(calls[name]):
                run()
            times[name].append((clock() - start) / calls[name])
    return times


def median_ratio(numerator, denominator) -> float:
    """The median over rounds of numerator[r] / denominator[r].

    Rounds run back to back, so a slow phase of the machine slows both sides of a round;
    the per-round ratio cancels it where a ratio of medians would not.
    """
    a = np.asarray(numerator, dtype=np.float64)
    b = np.asarray(denominator, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"median_ratio: expected two equally long non-empty series, got {a.size} and {b.size}")
    return float(np.median(a / b))

"""Interleaved timing of several contenders and the statistics the table reports."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

# Between contenders: lets the previous one's spinning thread pool (Numba's OpenMP,
# OpenBLAS, PyTorch's OpenMP, ONNX Runtime's) go idle, so that nobody is timed while
# another's threads still hold a core.
PAUSE_S = 0.2


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
                      warmup: int = 1, pause: float = PAUSE_S,
                      clock=time.perf_counter, sleep=time.sleep) -> dict[str, list[float]]:
    """Time each contender ``repeats`` times, in rounds A, B, C, A, B, C, ….

    Every contender is first called ``warmup`` times (untimed: compilation, first-touch
    allocations, session set-up). Before each call, timed or not, the run pauses ``pause``
    seconds.

    Parameters
    ----------
    contenders : mapping name -> zero-argument callable
    repeats : int, ≥ 1
    warmup : int, ≥ 0
    pause : float, seconds
    clock, sleep : the timer and the pause (replaceable in tests)

    Returns
    -------
    dict name -> list of ``repeats`` wall-clock durations in seconds, in round order
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected a positive integer, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup: expected a non-negative integer, got {warmup}")
    for _ in range(warmup):
        for run in contenders.values():
            sleep(pause)
            run()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            sleep(pause)
            start = clock()
            run()
            times[name].append(clock() - start)
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

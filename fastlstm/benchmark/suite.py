"""Run the shapes table: for each shape, build the contenders and time them interleaved."""
from __future__ import annotations

from dataclasses import dataclass, field

from .machine import OtherLoad
from .peers import build_contenders
from .shapes import BenchShape, gemm_flops
from .timing import PAUSE_S, Summary, interleaved_times, median_ratio, summarise


@dataclass
class ShapeResult:
    """The measurements of one shape.

    Attributes
    ----------
    shape : BenchShape
    times : dict name -> list of seconds, one per round (fastlstm and each available peer)
    unavailable : dict peer name -> why it did not run
    versions : dict name -> package version of each contender that ran
    other_load : float or None
        Cores used on average by other processes while this shape was timed.
    """

    shape: BenchShape
    times: dict
    unavailable: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    other_load: float | None = None

    def summary(self, name) -> Summary:
        return summarise(self.times[name])

    @property
    def ratios(self) -> dict:
        """peer -> median over rounds of time(fastlstm) / time(peer), for peers that ran."""
        return {peer: median_ratio(self.times["fastlstm"], self.times[peer])
                for peer in self.shape.peers if peer in self.times}

    @property
    def met(self):
        """True/False: every peer ran and every ratio is within the target; None when no peer ran."""
        ratios = self.ratios
        if not ratios:
            return None
        return len(ratios) == len(self.shape.peers) and all(r <= self.shape.target for r in ratios.values())

    @property
    def flops(self) -> float:
        return gemm_flops(self.shape)

    @property
    def gflops(self) -> float:
        """fastlstm's achieved GEMM GFLOP/s at its median time."""
        return self.flops / self.summary("fastlstm").median / 1e9

    def as_dict(self) -> dict:
        s = self.shape
        return {
            "key": s.key, "id": s.id, "cell": s.label, "input_size": s.input_size,
            "hidden_size": s.hidden_size, "batch": s.batch, "steps": s.steps, "mode": s.mode,
            "dtype": s.dtype, "target": s.target, "flops": self.flops, "gflops": self.gflops,
            "times_s": self.times,
            "median_ms": {name: 1e3 * self.summary(name).median for name in self.times},
            "iqr_ms": {name: 1e3 * self.summary(name).iqr for name in self.times},
            "ratios": self.ratios, "met": self.met, "unavailable": self.unavailable,
            "versions": self.versions, "other_load_cores": self.other_load,
        }


def run_shape(shape: BenchShape, repeats: int, warmup: int = 1, pause: float = PAUSE_S,
              seed: int = 0) -> ShapeResult:
    """Time fastlstm and the shape's peers on one shape, interleaved.

    Parameters
    ----------
    shape : BenchShape
    repeats : int
        Timed rounds; each round runs every contender once.
    warmup : int
        Untimed rounds first (compilation and set-up excluded from the times).
    pause : float
        Seconds of idle before each call.
    seed : int
        Seed of the weights and inputs (all contenders share them).

    Returns
    -------
    ShapeResult
    """
    layer = shape.make_layer(seed=seed)
    x, dy = shape.make_inputs(seed)
    contenders = build_contenders(shape, layer, x, dy)
    runs = {c.name: c.run for c in contenders if c.available}
    unavailable = {c.name: c.reason for c in contenders if not c.available}
    monitor = OtherLoad().start()
    times = interleaved_times(runs, repeats, warmup=warmup, pause=pause)
    return ShapeResult(shape, times, unavailable, {c.name: c.version for c in contenders if c.available},
                       monitor.stop())


def run_suite(shapes, repeats: int, warmup: int = 1, pause: float = PAUSE_S, progress=None):
    """:func:`run_shape` on each of ``shapes``; ``progress(shape)`` is called before each.

    Returns
    -------
    list of ShapeResult
    """
    results = []
    for shape in shapes:
        if progress is not None:
            progress(shape)
        results.append(run_shape(shape, repeats, warmup=warmup, pause=pause))
    return results

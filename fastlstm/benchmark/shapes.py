"""The benchmark's shapes table: which layer, which sizes, which mode, against which peer.

Every entry is one row of ``python -m fastlstm bench``. A row's key is its id, plus
``/float64`` for the float64 variants (``"2"`` and ``"2/float64"`` are two rows).
:func:`sample_grid` draws the random shapes of ``python -m fastlstm bench --grid``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..cells import CELL_KINDS, Cell, make_cell

MODES = ("inference", "training")
DTYPES = ("float32", "float64")
PEERS = ("torch", "onnxruntime", "cudnn")


@dataclass(frozen=True)
class BenchShape:
    """One benchmarked problem.

    Attributes
    ----------
    id : str
        The table's shape id (``"1"`` … ``"8b"``), shared by a shape's dtype variants, or a
        grid shape's (``"grid-01"`` …, see :func:`sample_grid`).
    cell : {"lstm", "gru", "rnn"}
    options : tuple of (str, object) pairs
        Layer options beyond the sizes, e.g. ``(("peephole", True),)``.
    input_size, hidden_size, batch, steps : int
        I, H, B, T; the input ``x`` is (T, B, I), the output ``y`` (T, B, H).
    mode : {"inference", "training"}
        ``"inference"``: forward only, nothing recorded for backward. ``"training"``: forward
        and backward of the whole sequence with ``dy`` given.
    dtype : {"float32", "float64"}
    peers : tuple of str
        The implementations fastlstm is compared with (``"torch"``, ``"onnxruntime"``).
    target : float
        The goal for time(fastlstm) / time(peer), against every peer.
    """

    id: str
    cell: str
    options: tuple
    input_size: int
    hidden_size: int
    batch: int
    steps: int
    mode: str
    dtype: str
    peers: tuple
    target: float

    def __post_init__(self):
        if self.cell not in CELL_KINDS:
            raise ValueError(f"cell: expected one of {CELL_KINDS}, got {self.cell!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {self.mode!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {DTYPES}, got {self.dtype!r}")
        unknown = [p for p in self.peers if p not in PEERS]
        if unknown:
            raise ValueError(f"peers: expected names from {PEERS}, got {unknown}")

    @property
    def key(self) -> str:
        """The row's unique name: the id, with ``/float64`` appended for float64 rows."""
        return self.id if self.dtype == "float32" else f"{self.id}/{self.dtype}"

    @property
    def option_dict(self) -> dict:
        return dict(self.options)

    @property
    def cell_type(self) -> Cell:
        """The shape's :class:`~fastlstm.cells.Cell`, with its options."""
        return make_cell(self.cell, **self.option_dict)

    @property
    def label(self) -> str:
        """The cell as the table prints it, e.g. ``"LSTM+peephole"``."""
        return self.cell_type.label

    @property
    def description(self) -> str:
        """The shape in words, e.g. ``"LSTM inference float32 I=8 H=64 B=32 T=200"``."""
        return (f"{self.label} {self.mode} {self.dtype} I={self.input_size} H={self.hidden_size} "
                f"B={self.batch} T={self.steps}")

    @property
    def gates(self) -> int:
        """Gate blocks of width H in the weights: 4 (LSTM), 3 (GRU), 1 (RNN)."""
        return self.cell_type.gates

    def make_layer(self, backend="cpu", seed=0, dtype=None):
        """A fresh single-layer fastlstm layer of this shape.

        Parameters
        ----------
        backend : {"cpu", "reference", "cuda"}
        seed : int
        dtype : str, optional
            Overrides the shape's dtype (the reference oracle runs in float64).
        """
        import fastlstm

        cls = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}[self.cell]
        return cls(self.input_size, self.hidden_size, dtype=dtype or self.dtype, backend=backend,
                   seed=seed, **self.option_dict)

    def make_inputs(self, seed=0):
        """Random ``x`` (T, B, I) and ``dy`` (T, B, H), standard normal, of the shape's dtype."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((self.steps, self.batch, self.input_size)).astype(self.dtype)
        dy = rng.standard_normal((self.steps, self.batch, self.hidden_size)).astype(self.dtype)
        return x, dy

    def replace(self, **changes) -> "BenchShape":
        """A copy with some fields changed (e.g. ``steps`` for quick runs)."""
        return dataclasses.replace(self, **changes)


def gemm_flops(shape: BenchShape) -> float:
    """Floating-point operations of the GEMMs of one benchmarked call.

    A forward pass multiplies a (T·B, I) input by the (I, G·H) input weights and, step by
    step, a (B, H) state by the (H, G·H) recurrent weights: 2·T·B·(I + H)·G·H flops, with
    G = 4 (LSTM), 3 (GRU), 1 (RNN). A training step counts 3× the forward: the backward
    does two GEMMs of the same size per forward GEMM (the gradient of the input/state and
    the gradient of the weights). Element-wise gate work is not counted.

    Parameters
    ----------
    shape : BenchShape

    Returns
    -------
    float
    """
    forward = 2.0 * shape.steps * shape.batch * (shape.input_size + shape.hidden_size) \
        * shape.gates * shape.hidden_size
    return 3.0 * forward if shape.mode == "training" else forward


def _shape(id, cell, size, batch, steps, mode, target, peers=("torch",), input_size=None,
           dtype="float32", **options):
    return BenchShape(id=id, cell=cell, options=tuple(sorted(options.items())),
                      input_size=input_size or size, hidden_size=size, batch=batch, steps=steps,
                      mode=mode, dtype=dtype, peers=tuple(peers), target=target)


SHAPES = (
    _shape("1", "lstm", 256, batch=1, steps=150, mode="inference", target=0.5),
    _shape("2", "lstm", 256, batch=64, steps=150, mode="training", target=0.75),
    _shape("3", "lstm", 512, batch=64, steps=25, mode="training", target=0.75),
    _shape("4", "lstm", 1024, batch=4, steps=25, mode="inference", target=0.5),
    _shape("5", "gru", 512, batch=32, steps=100, mode="training", target=0.5),
    _shape("6", "gru", 1024, batch=1, steps=100, mode="inference", target=0.5),
    _shape("7a", "lstm", 64, input_size=8, batch=32, steps=200, mode="training", target=0.5),
    _shape("7b", "gru", 64, input_size=8, batch=32, steps=200, mode="training", target=0.5),
    # PyTorch has neither a peephole LSTM nor the reset-before GRU: ONNX Runtime has both.
    _shape("8", "lstm", 256, batch=16, steps=100, mode="inference", target=0.5,
           peers=("onnxruntime",), peephole=True),
    _shape("8b", "gru", 256, batch=16, steps=100, mode="inference", target=0.5,
           peers=("onnxruntime",), reset_after=False),
    _shape("2", "lstm", 256, batch=64, steps=150, mode="training", target=1.0, dtype="float64"),
    _shape("5", "gru", 512, batch=32, steps=100, mode="training", target=1.0, dtype="float64"),
)


# The GPU table (bench/cuda_vs_cudnn.py): the cuda backend against PyTorch's cuDNN RNNs on
# DeepBench shapes, I = H; the target bounds time(fastlstm) / time(cuDNN).
CUDNN_SHAPES = (
    _shape("g1", "lstm", 256, batch=1, steps=150, mode="inference", target=1.0, peers=("cudnn",)),
    _shape("g2", "lstm", 512, batch=1, steps=25, mode="inference", target=1.0, peers=("cudnn",)),
    _shape("g3", "lstm", 1024, batch=4, steps=25, mode="inference", target=1.0, peers=("cudnn",)),
    _shape("g4", "lstm", 256, batch=64, steps=150, mode="training", target=2.0, peers=("cudnn",)),
    _shape("g5", "lstm", 1024, batch=128, steps=25, mode="training", target=2.0, peers=("cudnn",)),
    _shape("g6", "gru", 1024, batch=32, steps=150, mode="training", target=2.0, peers=("cudnn",)),
)


def shape_ids(shapes=SHAPES) -> list[str]:
    """The distinct shape ids of ``shapes``, in table order."""
    return list(dict.fromkeys(s.id for s in shapes))


def select_shapes(ids=None, dtypes=None, shapes=SHAPES) -> list[BenchShape]:
    """The rows of ``shapes`` whose id is in ``ids`` and dtype in ``dtypes``.

    Parameters
    ----------
    ids : iterable of str, optional
        Shape ids (``"2"`` selects both its float32 and float64 rows); all when ``None``.
    dtypes : iterable of str, optional
        ``"float32"`` and/or ``"float64"``; all when ``None``.
    shapes : sequence of BenchShape

    Returns
    -------
    list of BenchShape, in table order

    Raises
    ------
    ValueError
        For an unknown id or dtype (the message lists the valid ones), or when the
        combination selects no row.
    """
    valid = shape_ids(shapes)
    ids = valid if ids is None else [str(i).strip() for i in ids]
    unknown = [i for i in ids if i not in valid]
    if unknown:
        raise ValueError(f"unknown shape id(s) {', '.join(unknown)}; valid ids: {', '.join(valid)}")
    dtypes = list(DTYPES) if dtypes is None else list(dtypes)
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise ValueError(f"unknown dtype(s) {', '.join(bad)}; valid: {', '.join(DTYPES)}")
    chosen = [s for s in shapes if s.id in ids and s.dtype in dtypes]
    if not chosen:
        available = ", ".join(s.key for s in shapes if s.id in ids)
        raise ValueError(f"shapes {', '.join(ids)} have no {'/'.join(dtypes)} rows; "
                         f"available rows: {available}")
    return chosen


def quick_steps(steps: int, factor: int = 5, minimum: int = 10) -> int:
    """The shortened T of quick runs: T / ``factor``, at least ``minimum`` (never above T)."""
    return min(steps, max(minimum, steps // factor))


# The grid of ``python -m fastlstm bench --grid`` (see sample_grid).
GRID_COUNT = 40
GRID_RANGES = {"input_size": (1, 256), "hidden_size": (16, 1024), "batch": (1, 256), "steps": (50, 1000)}
# A drawn shape whose GEMM flops (gemm_flops, at its drawn T) exceed this is drawn again: on
# the project's 2-core machines (100–200 GFLOP/s in these GEMMs) one call then takes at
# most about 0.1–0.2 s, so a whole shape times in seconds.
GRID_FLOP_BUDGET = 2e10
GRID_TARGET = 1.0
# (cell, options, probability, whether PyTorch has the variant). The peephole LSTM and the
# reset-before GRU are drawn in inference mode only, where ONNX Runtime has them.
GRID_VARIANTS = (
    ("lstm", (), 0.3, True),
    ("gru", (), 0.3, True),
    ("rnn", (), 0.2, True),
    ("lstm", (("peephole", True),), 0.1, False),
    ("gru", (("reset_after", False),), 0.1, False),
)


def _log_uniform(rng, low: int, high: int) -> int:
    """An integer in [low, high] with P(k) ∝ log((k+1)/k): the floor of a log-uniform draw
    on [low, high + 1)."""
    value = int(np.exp(rng.uniform(np.log(low), np.log(high + 1))))
    return min(max(value, low), high)


def sample_grid(count: int = GRID_COUNT, seed: int = 0, ranges=None,
                flop_budget: float = GRID_FLOP_BUDGET) -> list[BenchShape]:
    """The random float32 shapes of ``python -m fastlstm bench --grid``.

    Each shape is drawn with ``numpy.random.default_rng(seed)``, in order: the cell variant
    (LSTM 0.3, GRU 0.3, RNN 0.2, peephole LSTM 0.1, reset-before GRU 0.1, see
    ``GRID_VARIANTS``), the mode (inference or training with equal odds; the peephole LSTM
    and the reset-before GRU, which PyTorch lacks, are inference only, timed against ONNX
    Runtime alone), then I, H, B and T, each a log-uniform integer in its range of
    ``ranges`` (so small and large sizes are equally represented per factor of size). A
    draw whose :func:`gemm_flops` exceed ``flop_budget`` is thrown away and drawn again,
    whole; the grid therefore leans towards smaller shapes than the ranges alone.

    Parameters
    ----------
    count : int
        Shapes to draw, at least 1; their ids are ``"grid-01"``, ``"grid-02"`` … (zero-padded
        to at least two digits, so they never collide with the table's ids).
    seed : int
        The generator's seed, at least 0: the same seed gives the same shapes.
    ranges : dict, optional
        ``{"input_size": (low, high), "hidden_size": …, "batch": …, "steps": …}``, inclusive
        bounds; defaults to ``GRID_RANGES`` (I 1–256, H 16–1024, B 1–256, T 50–1000).
    flop_budget : float
        The most GEMM flops one call of a shape may take (default ``GRID_FLOP_BUDGET``, 2e10).

    Returns
    -------
    list of BenchShape
        Targets ``GRID_TARGET`` (1.0: parity with each peer). Peers: PyTorch whenever it has
        the variant, ONNX Runtime for LSTM and GRU inference (it runs inference only, and the
        benchmark has no ONNX plain-RNN model).

    Raises
    ------
    ValueError
        For a count below 1, a negative seed, a range that is not 1 ≤ low ≤ high, or a budget
        that even the cheapest shape of the ranges exceeds.
    """
    ranges = dict(GRID_RANGES if ranges is None else ranges)
    if count < 1:
        raise ValueError(f"count: expected a positive integer, got {count}")
    if seed < 0:
        raise ValueError(f"seed: expected an integer ≥ 0, got {seed}")
    if sorted(ranges) != sorted(GRID_RANGES):
        raise ValueError(f"ranges: expected the keys {sorted(GRID_RANGES)}, got {sorted(ranges)}")
    for name, (low, high) in ranges.items():
        if not 1 <= low <= high:
            raise ValueError(f"ranges[{name!r}]: expected 1 ≤ low ≤ high, got ({low}, {high})")
    # The cheapest outcome of a draw (an RNN inference at the lower bounds) must fit, so that
    # redrawing ends.
    cheapest = BenchShape(id="cheapest", cell="rnn", options=(), mode="inference", dtype="float32",
                          peers=(), target=GRID_TARGET, **{name: low for name, (low, _) in ranges.items()})
    if gemm_flops(cheapest) > flop_budget:
        raise ValueError(f"flop_budget: even the cheapest shape of the ranges takes "
                         f"{gemm_flops(cheapest):.3g} flops, above the budget {flop_budget:.3g}")
    rng = np.random.default_rng(seed)
    odds = np.array([variant[2] for variant in GRID_VARIANTS])
    width = max(2, len(str(count)))
    shapes = []
    while len(shapes) < count:
        cell, options, _, in_torch = GRID_VARIANTS[rng.choice(len(GRID_VARIANTS), p=odds)]
        mode = MODES[rng.integers(len(MODES))] if in_torch else "inference"
        peers = (("torch",) if in_torch else ()) + \
            (("onnxruntime",) if mode == "inference" else ())
        sizes = {name: _log_uniform(rng, low, high) for name, (low, high) in ranges.items()}
        shape = BenchShape(id=f"grid-{len(shapes) + 1:0{width}d}", cell=cell, options=options,
                           mode=mode, dtype="float32", peers=peers, target=GRID_TARGET, **sizes)
        if gemm_flops(shape) <= flop_budget:
            shapes.append(shape)
    return shapes

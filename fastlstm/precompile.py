"""Compile the cpu kernels ahead of use, into Numba's on-disk cache.

A kernel compiles on its first call (lazily, per cell, dtype, loop strategy and in-loop
regulariser) and is cached on disk; a reinstall empties the cache. :func:`precompile` runs
one tiny call of every combination asked for, so that the first real call of each loads
machine code instead of compiling it.
"""
from __future__ import annotations

import time

import numpy as np


def precompile(cells=None, dtypes=("float32", "float64"), strategies=None, training=True,
               regularisers=False, streaming=False, progress=None):
    """Compile (or load from the cache) the cpu kernels of these configurations.

    Parameters
    ----------
    cells : iterable of str, optional
        Cell variants (``fastlstm.cells.VARIANTS``: ``"lstm"``, ``"lstm_peephole"``, ``"gru"``,
        ``"gru_reset_before"``, ``"rnn_tanh"``, ``"rnn_relu"``); all when None.
    dtypes : iterable of {"float32", "float64"}
    strategies : iterable of {"sequences", "single", "units"}, optional
        The loop strategies to compile (``tuning.cpu_loop``); all when None (the cost model picks
        among all three).
    training : bool
        Also the loops a training call runs: its forward's (which keep the tape) and the
        backward's (and the layer's gradient GEMMs); inference's loops are always compiled.
    regularisers : bool
        Also the loops with recurrent dropout and zoneout inside them (each alone and both).
    streaming : bool
        Also the one-step kernel of ``layer.step`` (one per cell and dtype).
    progress : callable taking one str, optional
        Told each configuration as it is done, with its seconds.

    Returns
    -------
    list of (str, float)
        Each configuration's description and the seconds it took (compiling, or loading).

    Raises
    ------
    ValueError
        For an unknown cell variant, dtype or strategy.
    """
    from . import tuning
    from .backends.cpu.strategy import STRATEGIES   # here: importing it loads Numba
    from .cells import VARIANTS
    from .layers import GRU, LSTM, RNN

    cells = list(VARIANTS) if cells is None else list(cells)
    unknown = [c for c in cells if c not in VARIANTS]
    if unknown:
        raise ValueError(f"precompile: cells: expected names from {tuple(VARIANTS)}, got {unknown}")
    dtypes = [str(d) for d in dtypes]
    bad = [d for d in dtypes if d not in ("float32", "float64")]
    if bad:
        raise ValueError(f"precompile: dtypes: expected 'float32' and/or 'float64', got {bad}")
    strategies = list(STRATEGIES if strategies is None else strategies)
    wrong = [s for s in strategies if s not in STRATEGIES]
    if wrong:
        raise ValueError(f"precompile: strategies: expected names from {STRATEGIES}, got {wrong}")
    in_loop = [{}]
    if regularisers:
        in_loop += [dict(recurrent_dropout=0.1), dict(zoneout=0.1), dict(recurrent_dropout=0.1, zoneout=0.1)]
    classes = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
    done = []
    for name in cells:
        kind, options = VARIANTS[name]
        for dtype in dtypes:
            x = np.zeros((2, 2, 1), dtype)
            for rates in in_loop:
                layer = classes[kind](1, 2, dtype=dtype, seed=0, **options, **rates)
                for strategy in strategies:
                    start = time.perf_counter()
                    # blocks of one row, so that "sequences" compiles its parallel region too
                    with tuning.override(cpu_loop=strategy, batch_rows=1):
                        y, _ = layer(x, tape=False)          # inference's loops
                        if training:
                            layer(x)
                            layer.backward(np.zeros_like(y))
                    label = f"{name} {dtype} {strategy}" + "".join(f" {k}" for k in rates)
                    done.append((label, time.perf_counter() - start))
                    if progress is not None:
                        progress(f"{label}: {done[-1][1]:.1f} s")
            if streaming:
                start = time.perf_counter()
                classes[kind](1, 2, dtype=dtype, seed=0, **options).step(x[0])
                done.append((f"{name} {dtype} step", time.perf_counter() - start))
                if progress is not None:
                    progress(f"{done[-1][0]}: {done[-1][1]:.1f} s")
    return done

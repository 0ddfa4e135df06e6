"""``python -m fastlstm bench``: the shapes table, or a random grid of shapes (``--grid``),
against PyTorch and ONNX Runtime."""
from __future__ import annotations

import argparse
import sys

from .shapes import (
    DTYPES,
    GRID_COUNT,
    GRID_FLOP_BUDGET,
    GRID_RANGES,
    quick_steps,
    sample_grid,
    select_shapes,
    shape_ids,
)
from .timing import PAUSE_S

MEMORY_IDS = ("2", "5")
FULL_REPEATS, QUICK_REPEATS = 7, 3
FULL_SGEMM, QUICK_SGEMM = (1024, 2048), (1024,)
# The options that choose the table's rows or T, which the grid draws itself.
NOT_WITH_GRID = ("shapes", "dtype", "steps")


def _grid_help():
    sizes = ", ".join(f"{letter} {low}–{high}" for letter, (low, high) in zip("IHBT", GRID_RANGES.values()))
    return (f"instead of the table, time --count random float32 shapes drawn with seed --seed: "
            f"LSTM, GRU, RNN, and sometimes the peephole LSTM and the reset-before GRU (inference "
            f"only: ONNX Runtime alone has them); {sizes}, each log-uniform; inference or training; "
            f"a draw whose GEMM flops (forward 2·T·B·(I+H)·G·H, training 3×) exceed "
            f"{GRID_FLOP_BUDGET:.0e} per call is drawn again. Peers: PyTorch when it has the cell, "
            f"ONNX Runtime for inference; ids grid-01…; ends with a per-peer summary. "
            f"Not with --shapes, --dtype, --steps or --memory")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    parser.add_argument("--quick", action="store_true",
                        help="about a minute: T shortened to T/5 (at least 10), "
                             f"{QUICK_REPEATS} rounds, sgemm at 1024 only, no memory unless --memory")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed rounds per shape (default {FULL_REPEATS}, quick {QUICK_REPEATS})")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1, at least 1)")
    parser.add_argument("--pause", type=float, default=PAUSE_S,
                        help=f"seconds idle before each timed call (default {PAUSE_S})")
    parser.add_argument("--shapes", default=None,
                        help=f"comma-separated shape ids (default all: {','.join(shape_ids())})")
    parser.add_argument("--dtype", default=None,
                        help="float32, float64 or both comma-separated (default both)")
    parser.add_argument("--steps", type=int, default=None, help="run every shape with this T instead")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                        help=f"measure peak memory of training shapes {', '.join(MEMORY_IDS)} "
                             "(default: on in the full run, off with --quick or --grid)")
    parser.add_argument("--grid", action="store_true", help=_grid_help())
    parser.add_argument("--count", type=int, default=None,
                        help=f"grid shapes to draw, at least 1 (default {GRID_COUNT}; only with --grid)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the grid's numpy.random.default_rng, at least 0 "
                             "(default 0; only with --grid)")
    parser.add_argument("--json", dest="json_path", default=None, metavar="PATH",
                        help="also write every measurement to this JSON file")


def _split(text):
    return [part.strip() for part in text.split(",") if part.strip()]


def resolve(args):
    """Validate the parsed options and derive the run's shapes and settings.

    Returns
    -------
    shapes : list of BenchShape (T already changed for quick/--steps runs)
    settings : dict (see :func:`fastlstm.benchmark.report.header_lines`) plus ``memory``
        (bool) and ``sgemm_sizes``; ``grid`` is ``None`` for the table, else a dict of the
        grid's ``count``, ``seed`` and ``flop_budget``

    Raises
    ------
    ValueError
        With a message naming the option, for any invalid value.
    """
    repeats = args.repeats if args.repeats is not None else (QUICK_REPEATS if args.quick else FULL_REPEATS)
    if repeats < 1:
        raise ValueError(f"--repeats: expected a positive integer, got {repeats}")
    if args.warmup < 1:
        raise ValueError(f"--warmup: expected a positive integer, got {args.warmup}")
    if not args.pause >= 0:
        raise ValueError(f"--pause: expected seconds ≥ 0, got {args.pause}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps: expected a positive integer, got {args.steps}")
    if args.grid:
        shapes, grid = _grid_shapes(args)
    else:
        shapes, grid = _table_shapes(args), None
    if args.steps is not None:
        shapes = [s.replace(steps=args.steps) for s in shapes]
        steps_note = f"T set to {args.steps} for every shape (--steps)"
    elif args.quick:
        shapes = [s.replace(steps=quick_steps(s.steps)) for s in shapes]
        steps_note = "quick mode shortens T to T/5 (at least 10): the T column is the T that ran"
    else:
        steps_note = ""
    settings = {
        "quick": args.quick, "repeats": repeats, "warmup": args.warmup, "pause": args.pause,
        "steps_note": steps_note, "grid": grid,
        "memory": args.memory if args.memory is not None else not (args.quick or args.grid),
        "sgemm_sizes": QUICK_SGEMM if args.quick else FULL_SGEMM,
    }
    return shapes, settings


def _grid_shapes(args):
    """The ``--grid`` shapes (full T) and the grid's settings; refuses the table's options."""
    given = [f"--{name}" for name in NOT_WITH_GRID if getattr(args, name) is not None]
    if args.memory:
        given.append("--memory")
    if given:
        raise ValueError(f"--grid: cannot be combined with {', '.join(given)} (the grid draws its own "
                         f"float32 shapes and T; peak memory is measured for table shapes "
                         f"{', '.join(MEMORY_IDS)} only)")
    count = GRID_COUNT if args.count is None else args.count
    seed = 0 if args.seed is None else args.seed
    if count < 1:
        raise ValueError(f"--count: expected a positive integer, got {count}")
    if seed < 0:
        raise ValueError(f"--seed: expected an integer ≥ 0, got {seed}")
    return sample_grid(count, seed), {"count": count, "seed": seed, "flop_budget": GRID_FLOP_BUDGET}


def _table_shapes(args):
    """The table's rows that --shapes and --dtype select (full T)."""
    given = [f"--{name}" for name in ("count", "seed") if getattr(args, name) is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: only with --grid")
    ids = _split(args.shapes) if args.shapes is not None else None
    if ids is not None and (not ids or any(i not in shape_ids() for i in ids)):
        unknown = [i for i in ids if i not in shape_ids()]
        raise ValueError(f"--shapes: unknown shape id(s) {', '.join(unknown) or repr(args.shapes)}; "
                         f"valid ids: {', '.join(shape_ids())}")
    dtypes = _split(args.dtype) if args.dtype is not None else None
    if dtypes is not None and (not dtypes or any(d not in DTYPES for d in dtypes)):
        raise ValueError(f"--dtype: expected {' or '.join(DTYPES)} (comma-separated for both), "
                         f"got {args.dtype!r}")
    try:
        shapes = select_shapes(ids, dtypes)
    except ValueError as error:
        raise ValueError(f"--shapes/--dtype: {error}") from None  # an id without that dtype
    return shapes


def run(args, out=print, progress=None) -> int:
    """Run the benchmark the parsed ``args`` ask for and print its table with ``out``.

    Parameters
    ----------
    args : argparse.Namespace from a parser set up by :func:`add_arguments`
    out : callable taking one str
    progress : callable taking one str, optional; defaults to writing to stderr

    Returns
    -------
    int
        The exit status: 0 (speed is reported, never asserted).
    """
    from threadpoolctl import threadpool_limits

    from .machine import OtherLoad, machine_info
    from .peers import load_peers, numba_threads
    from .report import (
        format_grid_summary,
        format_memory,
        format_table,
        grid_summary,
        to_json,
    )
    from .suite import run_suite

    shapes, settings = resolve(args)
    if progress is None:
        def progress(message):
            print(message, file=sys.stderr, flush=True)

    def announce(s):
        progress(f"bench: {s.key} {s.description}")

    threads = numba_threads()
    load_peers(threads)
    machine = machine_info(threads, settings["sgemm_sizes"])
    other_load = OtherLoad().start()
    with threadpool_limits(limits=threads, user_api="blas"):
        results = run_suite(shapes, settings["repeats"], warmup=settings["warmup"],
                            pause=settings["pause"], progress=announce)
    machine["other_load_cores"] = other_load.stop()
    out(format_table(results, machine, settings))
    summary = None
    if settings["grid"] is not None:
        summary = grid_summary(results)
        out("")
        out(format_grid_summary(summary))
    memory = []
    if settings["memory"]:
        from .memory import CONTENDERS, measure

        for shape in shapes:
            if shape.id in MEMORY_IDS and shape.mode == "training":
                progress(f"bench: peak memory of {shape.key}")
                memory.append((shape, {name: measure(shape, name) for name in CONTENDERS}))
        out("")
        if memory:
            out(format_memory(memory))
        else:
            out(f"peak memory: measured for training shapes {', '.join(MEMORY_IDS)} only, "
                "and none of them was selected")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            handle.write(to_json(results, machine, settings, memory, summary))
        progress(f"bench: wrote {args.json_path}")
    return 0

"""The printed table and the JSON record of a benchmark run."""
from __future__ import annotations

import json
import math

from .timing import MIN_BLOCK_S, SETTLE_S

PEER_COLUMNS = {"torch": "torch", "onnxruntime": "ort"}
# Other processes using this many cores on average while timing make the times unreliable.
BUSY_CORES = 0.1


def _ms(summary):
    return f"{1e3 * summary.median:.2f} ±{100 * summary.relative_iqr:.0f}%"


def _row(values, columns):
    """One line: each value aligned in its (name, alignment, width) column, one space apart."""
    return " ".join(f"{str(value):{align}{width}}" for value, (_, align, width) in zip(values, columns)).rstrip()


def _met(value):
    return {True: "yes", False: "NO", None: "?"}[value]


def _peers_in(results):
    names = []
    for result in results:
        for peer in result.shape.peers:
            if peer not in names:
                names.append(peer)
    return names


def header_lines(machine: dict, settings: dict) -> list[str]:
    """The lines above the table: run settings, machine, versions, what the columns mean.

    Parameters
    ----------
    machine : dict from :func:`fastlstm.benchmark.machine.machine_info`
    settings : dict with ``quick`` (bool), ``repeats``, ``warmup``, ``pause``,
        ``steps_note`` (str, how T was changed, empty when it was not) and optionally ``grid``
        (``None``, or the ``count``, ``seed`` and ``flop_budget`` of a ``--grid`` run)
    """
    sgemm = ", ".join(f"{n}×{n}: {g:.1f}" for n, g in machine["sgemm_gflops"].items())
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    mode = "quick" if settings["quick"] else "full"
    load = machine.get("load_average")
    lines = [
        f"fastlstm bench ({mode}): {settings['repeats']} timed rounds after {settings['warmup']} "
        f"warm-up call(s), contenders interleaved with {settings['pause']:g} s pauses; each sample "
        f"is the per-call time of a block of back-to-back calls lasting ≥ {MIN_BLOCK_S:g} s, "
        f"after {SETTLE_S:g} s of untimed calls",
        f"machine: {machine['cpu']}; {machine['threads']} threads for every contender "
        f"(Numba, BLAS, torch intra-op, onnxruntime intra-op); "
        f"NumPy sgemm GFLOP/s {sgemm}" + ("" if load is None else f"; load average {load:.2f}")
        + (f"; fastlstm's BLAS: {machine['kernel_blas']}" if "kernel_blas" in machine else ""),
        f"versions: {versions}",
    ]
    others = machine.get("other_load_cores")
    if others is not None:
        verdict = "WARNING: the times below are not reliable" if others >= BUSY_CORES else "quiet enough"
        lines.append(f"other processes used {others:.2f} cores on average while timing: {verdict}")
    grid = settings.get("grid")
    if grid:
        lines.append(f"grid: {grid['count']} float32 shapes drawn with numpy.random.default_rng("
                     f"{grid['seed']}), at most {grid['flop_budget']:.0e} GEMM flops each at the drawn T "
                     f"(python -m fastlstm bench --help); target 1.00: parity with each peer")
    if settings.get("steps_note"):
        lines.append(settings["steps_note"])
    lines.append("ms: median ±IQR/median; ÷peer: median over rounds of time(fastlstm)/time(peer), "
                 "met when ≤ target for every peer; GFLOP/s: fastlstm's GEMM flops "
                 "(forward 2·T·B·(I+H)·G·H, training 3×) / its median time; others: cores used by "
                 f"other processes while the row was timed (! from {BUSY_CORES}: unreliable row)")
    return lines


def format_table(results, machine: dict, settings: dict) -> str:
    """The whole printed report: header lines, one row per shape, then notes.

    Parameters
    ----------
    results : list of ShapeResult
    machine, settings : see :func:`header_lines`

    Returns
    -------
    str
    """
    peers = _peers_in(results)
    columns = [("id", "<", 9), ("cell", "<", 22), ("I", ">", 4), ("H", ">", 4), ("B", ">", 3),
               ("T", ">", 4), ("mode", ">", 9), ("dtype", ">", 7), ("fastlstm ms", ">", 15)]
    columns += [(f"{PEER_COLUMNS[p]} ms", ">", 15) for p in peers]
    columns += [(f"÷{PEER_COLUMNS[p]}", ">", 6) for p in peers]
    columns += [("target", ">", 6), ("met", ">", 3), ("GFLOP/s", ">", 7), ("others", ">", 6)]
    head = _row([name for name, _, _ in columns], columns)
    lines = header_lines(machine, settings) + [head, "-" * len(head)]
    notes = []
    for result in results:
        s = result.shape
        ratios = result.ratios
        cells = [s.key, s.label, s.input_size, s.hidden_size, s.batch, s.steps, s.mode, s.dtype,
                 _ms(result.summary("fastlstm"))]
        cells += [_ms(result.summary(p)) if p in result.times else "-" for p in peers]
        cells += [f"{ratios[p]:.3f}" if p in ratios else "-" for p in peers]
        others = "-" if result.other_load is None else \
            f"{result.other_load:.2f}" + ("!" if result.other_load >= BUSY_CORES else "")
        cells += [f"≤{s.target:.2f}", _met(result.met), f"{result.gflops:.1f}", others]
        lines.append(_row(cells, columns))
        for peer, reason in result.unavailable.items():
            notes.append(f"  {s.key}: {peer} did not run: {reason}")
    return "\n".join(lines + notes)


def format_memory(results) -> str:
    """The peak-memory block: one row per shape, fastlstm and torch in MiB and their ratio.

    Parameters
    ----------
    results : list of (BenchShape, {contender: MemoryResult})
    """
    columns = [("id", "<", 9), ("cell", "<", 22), ("I", ">", 4), ("H", ">", 4), ("B", ">", 3),
               ("T", ">", 4), ("dtype", ">", 7), ("fastlstm MiB", ">", 12), ("torch MiB", ">", 10),
               ("ratio", ">", 6), ("method", "<", 9)]
    lines = ["peak memory of one training step: growth of peak RSS over a warmed-up baseline, "
             "each contender in a fresh process",
             _row([name for name, _, _ in columns], columns)]
    for shape, by_contender in results:
        ours, theirs = by_contender["fastlstm"], by_contender["torch"]
        mib = lambda m: f"{m.growth_mib:.1f}" if m.growth_mib is not None else "-"
        ratio = f"{ours.growth_mib / theirs.growth_mib:.2f}" \
            if ours.growth_mib is not None and theirs.growth_mib else "-"
        methods = "/".join(sorted({m.method for m in (ours, theirs) if m.method}))
        lines.append(_row([shape.key, shape.label, shape.input_size, shape.hidden_size, shape.batch,
                           shape.steps, shape.dtype, mib(ours), mib(theirs), ratio, methods], columns))
        for m in (ours, theirs):
            if m.growth_mib is None:
                lines.append(f"  {shape.key}: {m.contender} not measured: {m.reason}")
    return "\n".join(lines)


def _geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _part(pairs, keep):
    """Count and geometric mean of the ratios of the (shape, ratio) ``pairs`` whose shape ``keep`` accepts."""
    ratios = [r for s, r in pairs if keep(s)]
    return {"shapes": len(ratios), "geomean": _geomean(ratios)}


def grid_summary(results) -> dict:
    """Per peer, the ratios time(fastlstm)/time(peer) of a grid run summed up.

    Parameters
    ----------
    results : list of ShapeResult (anything with ``shape`` and ``ratios`` will do)

    Returns
    -------
    dict
        peer -> ``{"shapes": n, "geomean": …, "lstm": {"shapes", "geomean"},
        "small_hidden": {"shapes", "geomean"}, "faster": k, "worst": {"key", "description",
        "ratio"}}``, for each peer with at least one ratio, in order of first appearance.
        ``geomean`` is the geometric mean of the ratios over all shapes the peer ran; ``lstm``
        over the LSTM shapes only (peephole included), ``small_hidden`` over the shapes with
        H ≤ 128 only (geomean ``None`` when there is none); ``faster`` counts the ratios below
        1; ``worst`` is the shape of the largest ratio (the first of equal ones).
    """
    by_peer = {}
    for result in results:
        for peer, ratio in result.ratios.items():
            by_peer.setdefault(peer, []).append((result.shape, ratio))
    summary = {}
    for peer, pairs in by_peer.items():
        worst_shape, worst_ratio = max(pairs, key=lambda pair: pair[1])
        summary[peer] = {
            "shapes": len(pairs),
            "geomean": _geomean([r for _, r in pairs]),
            "lstm": _part(pairs, lambda s: s.cell == "lstm"),
            "small_hidden": _part(pairs, lambda s: s.hidden_size <= 128),
            "faster": sum(r < 1 for _, r in pairs),
            "worst": {"key": worst_shape.key, "description": worst_shape.description, "ratio": worst_ratio},
        }
    return summary


def format_grid_summary(summary: dict) -> str:
    """The lines after a grid run's table: :func:`grid_summary` per peer."""
    def mean(part):
        value = "-" if part["geomean"] is None else f"{part['geomean']:.3f}"
        return f"{value} ({part['shapes']} shape{'' if part['shapes'] == 1 else 's'})"

    lines = ["grid summary: geometric means of time(fastlstm)/time(peer) (< 1: fastlstm faster)"]
    for peer, entry in summary.items():
        worst = entry["worst"]
        lines += [(f"  {PEER_COLUMNS[peer]}: all {mean(entry)}, LSTM {mean(entry['lstm'])}, "
                   f"H ≤ 128 {mean(entry['small_hidden'])}; faster on {entry['faster']} of {entry['shapes']}"),
                  f"    worst: {worst['key']} {worst['description']}: {worst['ratio']:.3f}"]
    if not summary:
        lines.append("  no peer ran on any grid shape")
    return "\n".join(lines)


def to_json(results, machine: dict, settings: dict, memory=(), summary=None) -> str:
    """The run as JSON: ``machine``, ``settings``, ``results`` (one dict per shape, times in
    seconds), ``memory`` (MiB) and, when ``summary`` (the dict of :func:`grid_summary`) is
    given, ``grid_summary``."""
    record = {
        "machine": machine,
        "settings": settings,
        "results": [r.as_dict() for r in results],
        "memory": [
            {"key": shape.key, **{name: {"growth_mib": m.growth_mib, "method": m.method, "reason": m.reason}
                                  for name, m in by_contender.items()}}
            for shape, by_contender in memory
        ],
    }
    if summary is not None:
        record["grid_summary"] = summary
    return json.dumps(record, indent=2, default=str)

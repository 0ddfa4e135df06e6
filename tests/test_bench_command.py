"""``python -m fastlstm bench``'s machinery on tiny problems: the table, its ratios, the flop
count, the interleaving, argument errors, the memory probe and the ``--grid`` sampler and summary. Nothing
here asserts a speed."""
import functools
import importlib.util
import json
import math
import re
import sys

import numpy as np
import pytest

from fastlstm.__main__ import build_parser, main
from fastlstm.benchmark import command, memory, report, timing
from fastlstm.benchmark.peers import _torch_unsupported
from fastlstm.benchmark.shapes import (
    GRID_FLOP_BUDGET,
    GRID_RANGES,
    SHAPES,
    BenchShape,
    gemm_flops,
    quick_steps,
    sample_grid,
    select_shapes,
    shape_ids,
)
from fastlstm.benchmark.suite import ShapeResult

HAS_TORCH = importlib.util.find_spec("torch") is not None
TINY = ["bench", "--quick", "--shapes", "7a", "--steps", "3", "--pause", "0", "--no-memory"]


def table_row(text, key):
    rows = [line.split() for line in text.splitlines() if line.split()[:1] == [key]]
    assert len(rows) == 1, text
    return rows[0]


def test_gemm_flops_match_the_formula_by_hand():
    by_key = {s.key: s for s in SHAPES}
    # shape 2, LSTM training: forward 2·T·B·(I+H)·4H = 2·150·64·(256+256)·1024, times 3
    assert gemm_flops(by_key["2"]) == 3 * 2 * 150 * 64 * 512 * 1024 == 30_198_988_800
    # shape 6, GRU inference: 2·T·B·(I+H)·3H = 2·100·1·(1024+1024)·3072
    assert gemm_flops(by_key["6"]) == 2 * 100 * 1 * 2048 * 3072 == 1_258_291_200
    # shape 7b, GRU training with I ≠ H: 3 · 2·200·32·(8+64)·192
    assert gemm_flops(by_key["7b"]) == 3 * 2 * 200 * 32 * 72 * 192 == 530_841_600


def test_table_has_the_row_and_its_ratio_is_fastlstm_over_peer(capsys, tmp_path):
    # One round: the median of per-round ratios is then exactly the ratio of the two times.
    json_path = tmp_path / "bench.json"
    assert main(TINY + ["--repeats", "1", "--json", str(json_path)]) == 0
    out = capsys.readouterr().out
    row = table_row(out, "7a")
    assert row[1:8] == ["LSTM", "8", "64", "32", "3", "training", "float32"]
    fast_ms = float(row[8])
    assert fast_ms > 0 and row[9].startswith("±")
    assert "quick mode" not in out and "T set to 3" in out
    assert "sgemm" in out and "versions:" in out
    record = json.loads(json_path.read_text())
    assert record["results"][0]["key"] == "7a"
    if not HAS_TORCH:
        assert row[10] == "-" and "torch did not run" in out
        return
    torch_ms, ratio = float(row[10]), float(row[12])
    # printed values: ms to 2 decimals, the ratio to 3
    slack = (fast_ms / torch_ms) * (0.005 / fast_ms + 0.005 / torch_ms) + 0.0005 + 1e-9
    assert abs(ratio - fast_ms / torch_ms) <= slack
    times = record["results"][0]["times_s"]
    assert record["results"][0]["ratios"]["torch"] == pytest.approx(times["fastlstm"][0] / times["torch"][0])


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_json_ratio_is_the_median_of_per_round_ratios(capsys, tmp_path):
    json_path = tmp_path / "bench.json"
    assert main(TINY + ["--repeats", "3", "--json", str(json_path)]) == 0
    result = json.loads(json_path.read_text())["results"][0]
    fast, peer = np.array(result["times_s"]["fastlstm"]), np.array(result["times_s"]["torch"])
    assert len(fast) == len(peer) == 3
    assert result["ratios"]["torch"] == pytest.approx(np.median(fast / peer))
    assert result["median_ms"]["fastlstm"] == pytest.approx(1e3 * np.median(fast))
    assert result["gflops"] == pytest.approx(result["flops"] / np.median(fast) / 1e9)
    assert result["met"] == (result["ratios"]["torch"] <= result["target"])


def test_unknown_shape_id_names_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--shapes", "2,99"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "99" in err and "valid ids: 1, 2, 3, 4, 5, 6, 7a, 7b, 8, 8b" in err


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "--repeats"),
    (["--dtype", "float16"], "--dtype"),
    (["--steps", "-1"], "--steps"),
    (["--shapes", "1", "--dtype", "float64"], "no float64 rows"),
])
def test_bad_arguments_are_refused_before_anything_runs(capsys, argv, message):
    with pytest.raises(SystemExit):
        main(["bench"] + argv)
    assert message in capsys.readouterr().err


def test_shape_ids_select_every_dtype_row():
    assert [s.key for s in select_shapes(["2"])] == ["2", "2/float64"]
    assert [s.key for s in select_shapes(["2", "5"], ["float64"])] == ["2/float64", "5/float64"]


def test_contenders_run_interleaved_after_untimed_warmup():
    calls = []
    contenders = {name: (lambda name=name: calls.append(name)) for name in "ABC"}
    ticks = iter(range(100))
    times = timing.interleaved_times(contenders, repeats=2, warmup=1, pause=0.0, min_block=0.0, settle=0.0,
                                     clock=lambda: next(ticks), sleep=lambda s: None)
    assert calls == list("AABBCC") + list("ABC") * 2   # each warmed up and sized, then the rounds
    assert times == {"A": [1, 1], "B": [1, 1], "C": [1, 1]}


def test_short_calls_are_timed_in_blocks_that_fill_the_minimum():
    calls = []
    times = timing.interleaved_times({"A": lambda: calls.append("A")}, repeats=2, warmup=1, pause=0.0,
                                     min_block=3.5, settle=0.0, clock=lambda: len(calls),
                                     sleep=lambda s: None)
    # Each call takes one tick of this clock: the call after the warm-up measures 1, so a block is 4 calls.
    assert len(calls) == 1 + 1 + 2 * 4
    assert times == {"A": [1.0, 1.0]}
    assert timing.median_ratio([1.0, 2.0, 9.0], [2.0, 2.0, 3.0]) == 1.0
    summary = timing.summarise([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (summary.median, summary.q1, summary.q3) == (3.0, 2.0, 4.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS read from /proc")
def test_memory_probe_measures_a_training_step_in_a_fresh_process():
    shape = {s.key: s for s in SHAPES}["7a"]  # T=200, B=32, I=8, H=64, float32
    result = memory.measure(shape, "fastlstm", timeout=300)
    assert result.growth_mib is not None, result.reason
    # Any LSTM training step keeps at least the T·B·H hidden states for the weight gradients.
    assert 200 * 32 * 64 * 4 / 2 ** 20 <= result.growth_mib < 1024
    text = report.format_memory([(shape, {"fastlstm": result,
                                          "torch": memory.MemoryResult("7a", "torch", 2 * result.growth_mib,
                                                                       "VmHWM")})])
    assert text.splitlines()[-1].split()[-2] == "0.50"


def test_each_timed_block_follows_untimed_settling_calls():
    calls = []
    times = timing.interleaved_times({"A": lambda: calls.append("A")}, repeats=3, warmup=1, pause=0.0,
                                     min_block=2.0, settle=3.0, clock=lambda: len(calls),
                                     sleep=lambda s: None)
    # 1 warm-up call, 1 sizing call, then per round 3 settling calls (the clock advances one per
    # call) and 2 timed.
    assert len(calls) == 1 + 1 + 3 * (3 + 2)
    assert times == {"A": [1.0, 1.0, 1.0]}


def test_grid_is_reproducible_for_a_seed_and_differs_across_seeds():
    assert sample_grid(seed=3) == sample_grid(seed=3)
    assert sample_grid(seed=3) != sample_grid(seed=4)
    # A shorter grid of the same seed is the start of the longer one.
    assert sample_grid(5, seed=3) == sample_grid(seed=3)[:5]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_shapes_lie_in_the_stated_ranges_under_the_flop_cap(seed):
    shapes = sample_grid(seed=seed)
    assert len(shapes) >= 40
    ids = [s.id for s in shapes]
    assert len(set(ids)) == len(ids) and ids[0] == "grid-01"
    assert not set(ids) & set(shape_ids())
    for s in shapes:
        assert s.dtype == "float32" and s.mode in ("inference", "training"), s
        for name, (low, high) in GRID_RANGES.items():
            assert low <= getattr(s, name) <= high, (name, s)
        assert gemm_flops(s) <= GRID_FLOP_BUDGET, s
        if _torch_unsupported(s):
            assert s.peers == ("onnxruntime",) and s.mode == "inference", s
        else:
            assert "torch" in s.peers, s
        if s.mode == "training":
            assert "onnxruntime" not in s.peers, s
        assert ("onnxruntime" in s.peers) == (s.mode == "inference"), s
    assert {s.label for s in shapes} == {"LSTM", "GRU", "RNN(tanh)", "LSTM+peephole", "GRU(reset_after=False)"}


def test_grid_sizes_are_log_uniform():
    # Log-uniform on H 16…1025 (floored): P(H ≤ 128) = log(129/16) / log(1025/16) ≈ 0.50 and
    # P(H ≥ 363) = log(1025/363) / log(1025/16) ≈ 0.25. Without the flop cap (which favours
    # small shapes) the fractions follow these odds.
    shapes = sample_grid(2000, seed=0, flop_budget=math.inf)
    hidden = np.array([s.hidden_size for s in shapes])
    assert abs(np.mean(hidden <= 128) - math.log(129 / 16) / math.log(1025 / 16)) < 0.05
    assert abs(np.mean(hidden >= 363) - math.log(1025 / 363) / math.log(1025 / 16)) < 0.05
    assert hidden.min() == 16 and hidden.max() >= 1000


def test_grid_ids_widen_past_99_and_the_cap_is_respected():
    shapes = sample_grid(120, seed=5, flop_budget=1e8)
    assert shapes[0].id == "grid-001" and shapes[-1].id == "grid-120"
    assert max(gemm_flops(s) for s in shapes) <= 1e8


@pytest.mark.parametrize("kwargs, message", [
    ({"count": 0}, "count: expected a positive integer, got 0"),
    ({"seed": -1}, "seed: expected an integer ≥ 0, got -1"),
    ({"ranges": {**GRID_RANGES, "batch": (0, 4)}}, "ranges['batch']: expected 1 ≤ low ≤ high, got (0, 4)"),
    ({"flop_budget": 10.0}, "above the budget 10"),
])
def test_grid_sampler_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        sample_grid(**kwargs)


def fake_result(shape_id, cell, hidden_size, ratios, **options):
    """A one-round ShapeResult whose ratio to each peer is ``ratios[peer]``."""
    shape = BenchShape(id=shape_id, cell=cell, options=tuple(options.items()), input_size=8,
                       hidden_size=hidden_size, batch=4, steps=50, mode="inference", dtype="float32",
                       peers=tuple(ratios), target=1.0)
    times = {"fastlstm": [1.0], **{peer: [1.0 / ratio] for peer, ratio in ratios.items()}}
    return ShapeResult(shape, times)


def test_grid_summary_by_hand():
    results = [
        fake_result("grid-01", "lstm", 64, {"torch": 0.5, "onnxruntime": 0.25}),
        fake_result("grid-02", "lstm", 512, {"torch": 2.0}),
        fake_result("grid-03", "gru", 100, {"torch": 4.0, "onnxruntime": 4.0}),
        fake_result("grid-04", "rnn", 1024, {"torch": 1.0}),
        fake_result("grid-05", "lstm", 128, {"onnxruntime": 1.0}, peephole=True),
    ]
    summary = report.grid_summary(results)
    assert list(summary) == ["torch", "onnxruntime"]
    torch, ort = summary["torch"], summary["onnxruntime"]
    # torch: 0.5 · 2 · 4 · 1 = 4 over 4 shapes -> 4 ** (1/4) = √2
    assert torch["shapes"] == 4 and torch["geomean"] == pytest.approx(math.sqrt(2))
    # LSTM shapes 0.5, 2 -> 1; H ≤ 128: 0.5 (H=64) and 4 (H=100) -> √2
    assert torch["lstm"] == {"shapes": 2, "geomean": pytest.approx(1.0)}
    assert torch["small_hidden"] == {"shapes": 2, "geomean": pytest.approx(math.sqrt(2))}
    assert torch["faster"] == 1  # 1.0 is not faster
    assert torch["worst"]["key"] == "grid-03" and torch["worst"]["ratio"] == pytest.approx(4.0)
    assert torch["worst"]["description"].startswith("GRU ") and "H=100" in torch["worst"]["description"]
    # onnxruntime: 0.25 · 4 · 1 = 1; LSTM (peephole included) 0.25 · 1 -> 0.5; all three H ≤ 128
    assert ort["shapes"] == 3 and ort["geomean"] == pytest.approx(1.0)
    assert ort["lstm"] == {"shapes": 2, "geomean": pytest.approx(0.5)}
    assert ort["small_hidden"] == {"shapes": 3, "geomean": pytest.approx(1.0)}
    assert ort["faster"] == 1 and ort["worst"]["key"] == "grid-03"
    text = report.format_grid_summary(summary)
    assert "torch: all 1.414 (4 shapes), LSTM 1.000 (2 shapes), H ≤ 128 1.414 (2 shapes); faster on 1 of 4" in text
    assert "ort: all 1.000 (3 shapes)" in text and "worst: grid-03 GRU" in text


def test_grid_summary_of_a_peer_without_lstm_shapes_has_no_lstm_mean():
    summary = report.grid_summary([fake_result("grid-01", "gru", 512, {"torch": 0.5}),
                                   fake_result("grid-02", "rnn", 16, {})])
    assert summary["torch"]["lstm"] == {"shapes": 0, "geomean": None}
    assert summary["torch"]["small_hidden"] == {"shapes": 0, "geomean": None}
    assert "LSTM - (0 shapes)" in report.format_grid_summary(summary)
    assert report.grid_summary([]) == {}
    assert "no peer ran" in report.format_grid_summary({})


@pytest.mark.parametrize("argv, message", [
    (["--grid", "--shapes", "1"], "--grid: cannot be combined with --shapes"),
    (["--grid", "--dtype", "float64", "--steps", "5"], "--grid: cannot be combined with --dtype, --steps"),
    (["--grid", "--memory"], "--grid: cannot be combined with --memory"),
    (["--grid", "--count", "0"], "--count: expected a positive integer, got 0"),
    (["--grid", "--seed", "-2"], "--seed: expected an integer ≥ 0, got -2"),
    (["--count", "3"], "--count: only with --grid"),
])
def test_bad_grid_arguments_are_refused_before_anything_runs(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench"] + argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_grid_quick_shortens_t_as_for_the_table():
    parser, _ = build_parser()
    shapes, settings = command.resolve(parser.parse_args(["bench", "--grid", "--count", "5", "--quick"]))
    full = sample_grid(5)
    assert [s.steps for s in shapes] == [max(10, s.steps // 5) for s in full]
    assert settings["grid"] == {"count": 5, "seed": 0, "flop_budget": GRID_FLOP_BUDGET}
    assert settings["memory"] is False


TINY_GRID = {"input_size": (1, 4), "hidden_size": (4, 8), "batch": (1, 2), "steps": (50, 60)}


def test_grid_runs_end_to_end_on_tiny_shapes(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(command, "sample_grid", functools.partial(sample_grid, ranges=TINY_GRID))
    json_path = tmp_path / "grid.json"
    assert main(["bench", "--grid", "--count", "2", "--seed", "1", "--quick", "--repeats", "1",
                 "--pause", "0", "--no-memory", "--json", str(json_path)]) == 0
    out = capsys.readouterr().out
    expected = [s.replace(steps=quick_steps(s.steps)) for s in sample_grid(2, seed=1, ranges=TINY_GRID)]
    for shape in expected:
        row = table_row(out, shape.key)
        assert row[2:6] == [str(shape.input_size), str(shape.hidden_size), str(shape.batch), str(shape.steps)]
    assert "grid: 2 float32 shapes drawn with numpy.random.default_rng(1)" in out
    assert "grid summary" in out
    record = json.loads(json_path.read_text())
    assert [r["key"] for r in record["results"]] == [s.key for s in expected]
    ran = {peer for r in record["results"] for peer in r["ratios"]}
    assert set(record["grid_summary"]) == ran
    for peer, entry in record["grid_summary"].items():
        ratios = [r["ratios"][peer] for r in record["results"] if peer in r["ratios"]]
        assert entry["geomean"] == pytest.approx(math.exp(np.mean(np.log(ratios))))
    if HAS_TORCH:
        assert "torch" in ran

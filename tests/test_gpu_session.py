"""bench/gpu_session.py, the prepared GPU session, end to end under the CUDA simulator."""
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

import background

pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_session.py"
SECTIONS = ("environment", "plans", "agreement", "timings", "host_vs_gpu", "loops", "step_gemm")
OUT = Path(tempfile.mkdtemp(prefix="fastlstm-gpu-session-")) / "session.json"

# minutes of one core under the simulator: run beside the suite (tests/background.py)
SESSION = background.command("gpu session", [sys.executable, str(SCRIPT), "--simulate", "--out", str(OUT)],
                             dict(os.environ, NUMBA_ENABLE_CUDASIM="1"), cwd=SCRIPT.parents[1], timeout=900)


@pytest.mark.background(SESSION)
def test_the_gpu_session_runs_end_to_end_under_the_simulator():
    completed = background.result(SESSION)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    out = OUT
    session = json.loads(out.read_text())
    assert session["simulated"] and session["finished"]
    sections = session["sections"]
    assert set(SECTIONS) <= set(sections), sorted(sections)
    for name in SECTIONS:
        assert "error" not in sections[name] and "not_reached" not in sections[name], (name, sections[name])
    agreement = sections["agreement"]
    assert agreement["passed"] and agreement["cases_not_reached"] == 0
    from fastlstm.cells import VARIANTS

    assert {case["variant"] for case in agreement["cases"]} == set(VARIANTS)
    assert {case["dtype"] for case in agreement["cases"]} == {"float32", "float64"}
    assert {case["loop"] for case in agreement["cases"]} == {"persistent", "per-step", "gemm"}
    assert all(case["reference_ok"] for case in agreement["cases"])
    # torch has no CUDA under the simulator: the cuDNN comparison says it was skipped
    assert agreement["cudnn"].startswith("skipped") and sections["timings"]["cudnn"].startswith("skipped")
    assert all(str(case["cudnn"]).startswith("skipped") for case in agreement["cases"])
    assert len(sections["plans"]["shapes"]) == 2
    for row in sections["host_vs_gpu"]["shapes"]:
        assert row["allocations_per_call"] == 0, row
    for row in sections["loops"]["shapes"]:   # every loop forced ran each shape
        assert all(isinstance(row[f"{loop}_ms"], float) for loop in ("persistent", "per-step", "gemm")), row
    # no cuBLAS under the simulator: the step GEMM section says so, and "auto" took the numba GEMM
    assert set(sections["step_gemm"]) == {"skipped", "seconds"}, sections["step_gemm"]
    assert "cuda_step_gemm='cublas'" in sections["step_gemm"]["skipped"]
    assert "simulator" in sections["step_gemm"]["skipped"]
    assert sections["environment"]["step_gemm_auto"].startswith("numba (auto: the CUDA simulator")

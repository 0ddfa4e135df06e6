"""``python -m fastlstm check`` runs, prints its table and exits 0."""
import subprocess
import sys


def test_check_command_prints_every_cell_and_passes():
    result = subprocess.run([sys.executable, "-m", "fastlstm", "check", "--steps", "4", "--batch", "3",
                             "--input-size", "5", "--hidden-size", "6"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    measured = {(row[0], row[1], row[2]) for row in rows if len(row) >= 7 and row[2] == "cpu"}
    from fastlstm.check import CHECKED_CELLS
    from fastlstm.cells import make_cell
    expected = {(make_cell(**c).label, d, "cpu") for c in CHECKED_CELLS for d in ("float32", "float64")}
    assert measured == expected
    assert "all within tolerance" in result.stdout

"""Every notebook runs top to bottom (small settings: FASTLSTM_NOTEBOOK_QUICK=1)."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (the test extra has it)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (the test extra has it)")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_the_four_notebooks():
    assert [n.name for n in NOTEBOOKS] == ["01_quickstart.ipynb", "02_vanishing_gradients.ipynb",
                                           "03_sequence_classification.ipynb", "04_benchmark_plots.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("FASTLSTM_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors

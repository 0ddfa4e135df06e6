"""The README's usage example runs as written."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


# Optional peers an example may import: without them, that example is skipped (CI installs them).
OPTIONAL = ("torch", "onnx", "onnxruntime", "keras", "dask", "distributed")


@pytest.mark.parametrize("number", range(len(re.findall(r"```python\n", README.read_text()))))
def test_readme_usage_example_runs(number, tmp_path, monkeypatch):
    block = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)[number]
    for name in re.findall(r"^(?:import|from) (\w+)", block, flags=re.M):
        if name in OPTIONAL:
            pytest.importorskip(name)
    monkeypatch.chdir(tmp_path)              # whatever an example writes lands in a scratch folder
    exec(compile(block, str(README), "exec"), {})


def test_readme_quick_start_has_two_commands():
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [line for line in quick.splitlines() if line.strip()]
    assert commands == ['pip install . && python -m fastlstm demo',
                        'pip install ".[test]" && python -m pytest']


def test_readme_contract_states_every_cells_equations():
    from fastlstm.cells import MODULES

    text = README.read_text()
    for kind, module in MODULES.items():
        assert module.EQUATIONS in text, kind


def test_readme_names_only_files_the_project_has():
    root = README.parent
    for path in re.findall(r"`((?:fastlstm|bench|tests|notebooks)/[\w/.]+\.(?:py|md|csv))`", README.read_text()):
        assert (root / path).exists(), path

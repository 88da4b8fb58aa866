"""The notebooks execute, and every cell a user would copy is executed by a test.

Each notebook's first code cell chooses the setting (`PERTURBJAX_NOTEBOOK_TINY=1`: tiny data
and budgets) and is the only cell that reads it, so the tiny run executes every later cell
exactly as a user copies it; the first cell's full setting (real data when present, the
study's default configuration) is executed by a test of its own.
"""

import ast
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = {"ood_benchmark.ipynb": "Response metrics, calibrated",
            "signatures.ipynb": "Test metrics",
            "drug_response.ipynb": "Transfer to single cells",
            "perturbx.ipynb": "Aggregated latents vs status",
            "own_data.ipynb": "of genes inside the"}
SETTING = "TINY"


def code_cells(name: str) -> list[str]:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def test_every_notebook_is_executed_by_this_file():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_only_the_first_cell_depends_on_the_setting(name):
    names = [{n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
             for source in code_cells(name)]
    assert SETTING in names[0]
    assert not [i for i, used in enumerate(names[1:], start=2) if SETTING in used], (
        f"{name}: later cells read {SETTING}, so the tiny run does not execute them as a "
        "user copies them")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_first_cell_runs_in_the_full_setting(name, monkeypatch):
    monkeypatch.delenv("PERTURBJAX_NOTEBOOK_TINY", raising=False)
    monkeypatch.chdir(NOTEBOOKS)
    namespace: dict = {}
    exec(compile(code_cells(name)[0], f"{name}[cell 1]", "exec"), namespace)
    assert namespace[SETTING] is False and "config" in namespace
    assert os.path.isdir(namespace["workdir"])


# Notebooks of studies run end to end elsewhere in the default run (tests/studies, the
# documented --toy commands) execute under `-m slow` (25-30 s each); the main job's and the
# own-data one run always.
IN_THE_DEFAULT_RUN = ("ood_benchmark.ipynb", "own_data.ipynb")


@pytest.mark.parametrize("name", [n if n in IN_THE_DEFAULT_RUN else
                                  pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(EXPECTED)])
def test_notebook_executes_on_the_tiny_setting(name, monkeypatch):
    monkeypatch.setenv("PERTURBJAX_NOTEBOOK_TINY", "1")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in cells)
    outputs = [o for cell in cells for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(EXPECTED[name] in str(o) for o in outputs)

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("name, expected", [("ood_benchmark.ipynb", "Penalty ranking"),
                                            ("signatures.ipynb", "Test metrics"),
                                            ("drug_response.ipynb", "Transfer to single cells"),
                                            ("perturbx.ipynb", "Aggregated latents vs status")])
def test_notebook_executes_on_the_tiny_setting(name, expected, monkeypatch):
    monkeypatch.setenv("PERTURBJAX_NOTEBOOK_TINY", "1")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(expected in str(o) for o in outputs)

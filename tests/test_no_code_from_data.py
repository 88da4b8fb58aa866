"""No file a user hands us can run code: no pickle, `allow_pickle`, `eval` or unsafe YAML."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from perturbjax.data.gdsc import EXPRESSION_FILE, read_expression_npz, read_mutation_status
from perturbjax.data.schema import DataValidationError

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("perturbjax", "experiments", "benchmarks")
# Modules whose loaders can run code stored in a file.
CODE_LOADING_MODULES = {"pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve",
                        "marshal"}
# `<module>.load(...)` that unpickles or builds objects by default.
UNSAFE_LOADERS = {"yaml", "torch"}
CODE_RUNNING_CALLS = {"eval", "exec", "read_pickle", "unsafe_load", "full_load"}


class WritesAMarker:
    """Unpickling this object opens (creates) the marker file: code run by a load."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def plant_pickled_npz(path: Path, marker: Path, **plain: np.ndarray) -> None:
    """An .npz whose `cell_lines` array is a pickled object that writes `marker` when loaded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = np.empty(1, dtype=object)
    payload[0] = WritesAMarker(marker)
    np.savez(path, cell_lines=payload, **plain)


def code_loading_uses(path: Path) -> list[str]:
    """Each place in `path` that can run code from data, as `file:line what`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        what = None
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""])
            hits = [m for m in modules if m.split(".")[0] in CODE_LOADING_MODULES]
            what = f"import {hits[0]}" if hits else None
        elif isinstance(node, ast.Call):
            name = (node.func.id if isinstance(node.func, ast.Name) else
                    node.func.attr if isinstance(node.func, ast.Attribute) else "")
            if name in CODE_RUNNING_CALLS:
                what = f"{name}()"
            elif name == "load" and isinstance(node.func, ast.Attribute) and isinstance(
                    node.func.value, ast.Name) and node.func.value.id in UNSAFE_LOADERS:
                what = f"{node.func.value.id}.load()"
            for keyword in node.keywords:
                if keyword.arg == "allow_pickle" and not (
                        isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                    what = "allow_pickle not False"
        if what:
            found.append((node.lineno, f"{path.name}:{node.lineno} {what}"))
    return [use for _, use in sorted(found)]


def test_a_pickled_gdsc_expression_file_is_refused_without_running_its_code(tmp_path):
    path, marker = tmp_path / EXPRESSION_FILE, tmp_path / "marker"
    plant_pickled_npz(path, marker, X=np.zeros((1, 1), np.float32), genes=np.array(["TP53"]))
    with pytest.raises(DataValidationError, match=r"expression_zscored\.npz.*cell_lines.*pickle"):
        read_expression_npz(path)
    assert not marker.exists()


def test_a_pickled_mutation_file_is_refused_without_running_its_code(tmp_path):
    path, marker = tmp_path / "mutations.npz", tmp_path / "marker"
    plant_pickled_npz(path, marker, mutated=np.zeros((1, 1), np.uint8),
                      genes=np.array(["TP53"]))
    with pytest.raises(DataValidationError, match=r"mutations\.npz.*cell_lines.*pickle"):
        read_mutation_status(path)
    assert not marker.exists()


def test_the_planted_file_does_run_code_when_pickles_are_allowed(tmp_path):
    """The probe is live: the same file writes its marker under numpy's unsafe load."""
    path, marker = tmp_path / "planted.npz", tmp_path / "marker"
    plant_pickled_npz(path, marker)
    with np.load(path, allow_pickle=True) as data:
        data["cell_lines"]
    assert marker.exists()


def test_plain_text_arrays_still_load(tmp_path):
    path = tmp_path / "expression.npz"
    np.savez(path, X=np.ones((2, 1), np.float32), cell_lines=np.array(["A549", "H838"]),
             genes=np.array(["TP53"]))
    assert read_expression_npz(path).index.tolist() == ["A549", "H838"]


def test_no_source_file_loads_code_from_data():
    found = [use for folder in SOURCES for path in sorted((ROOT / folder).rglob("*.py"))
             for use in code_loading_uses(path)]
    assert found == []


def test_the_source_scan_finds_each_kind_of_code_loading(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("import pickle\nimport numpy as np\nimport yaml\n"
                    "np.load('a.npz', allow_pickle=True)\nyaml.load(open('c.yaml'))\n"
                    "eval('1')\nimport pandas as pd\npd.read_pickle('b')\ntorch.load('f.pt')\n"
                    "np.load('d.npz', allow_pickle=False)\nyaml.safe_load('e')\n")
    assert code_loading_uses(path) == [
        "bad.py:1 import pickle", "bad.py:4 allow_pickle not False", "bad.py:5 yaml.load()",
        "bad.py:6 eval()", "bad.py:8 read_pickle()", "bad.py:9 torch.load()"]

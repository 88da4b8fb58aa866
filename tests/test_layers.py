"""The package's imports run downward only: a module imports nothing from a higher layer."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "perturbjax"
# Layers from the bottom up; a top-level module of the package (cli, files, ot, plots, ...)
# belongs to the lowest layer.
LAYERS = ({"data", "nn", "train", "metrics", "linear"}, {"models"}, {"drug"}, {"studies"})


def layer_of(part: str) -> int:
    return next((i for i, names in enumerate(LAYERS) if part in names), 0)


def imports(path: Path) -> list[str]:
    """The absolute imports of `path`, as dotted names (`from perturbjax import x` as
    `perturbjax.x`: a submodule, or a name of the package root)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "perturbjax" and node.level == 0:
            names += [f"perturbjax.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def is_root_name(root: Path, name: str) -> bool:
    """Whether `perturbjax.<name>` is a name defined by the package root, not a submodule:
    the root imports from every layer, so it is above them all."""
    return not ((root / f"{name}.py").is_file() or (root / name).is_dir())


def upward_imports(root: Path) -> list[str]:
    """Every `module -> imported module` pair that goes from a lower layer to a higher one
    (the launchers and benchmarks are above every layer of the package, and so are the names
    of the package root)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts == ("__init__",):
            continue  # the package's public names may come from any layer
        mine = layer_of(parts[0])
        for name in imports(path):
            target = name.split(".")
            if target[0] in ("experiments", "benchmarks") or (
                    target[0] == "perturbjax" and len(target) > 1
                    and (layer_of(target[1]) > mine
                         or (len(target) == 2 and is_root_name(root, target[1])))):
                found.append(f"{path.relative_to(root.parent)} -> {name}")
    return found


def test_no_module_imports_from_a_higher_layer():
    assert upward_imports(PACKAGE) == []


def test_the_layer_check_finds_an_upward_import(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "loop.py").write_text("from perturbjax.models.mtae import MTAe\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mtae.py").write_text("from perturbjax.train.loop import fit\n")
    assert upward_imports(tmp_path) == [f"{tmp_path.name}/train/loop.py -> "
                                        "perturbjax.models.mtae"]


def test_the_launchers_are_above_the_package(tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "ood.py").write_text("import experiments.ood_benchmark\n")
    assert upward_imports(tmp_path) == [f"{tmp_path.name}/studies/ood.py -> "
                                        "experiments.ood_benchmark"]


def test_the_layer_check_finds_a_name_imported_from_the_package_root(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "trained.py").write_text(
        "from perturbjax import __version__\nfrom perturbjax import plots\n")
    (tmp_path / "plots.py").write_text("")
    assert upward_imports(tmp_path) == [f"{tmp_path.name}/models/trained.py -> "
                                        "perturbjax.__version__"]


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_cycles(root: Path) -> list[list[str]]:
    """Circles of imports between the package's modules (a module importing, directly or
    through others, one that imports it), type-checking imports included."""
    modules = {module_name(root, p): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]  # a name in a module -> the module
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_module_of_the_package_imports_itself_through_others():
    assert import_cycles(PACKAGE) == []


def test_the_circle_check_finds_a_configuration_imported_back(tmp_path):
    root = tmp_path / "perturbjax"
    (root / "studies").mkdir(parents=True)
    (root / "studies" / "ood.py").write_text("from perturbjax.studies.ood_data import load\n")
    (root / "studies" / "ood_data.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from perturbjax.studies.ood import OODConfig\n")
    assert import_cycles(root) == [["perturbjax.studies.ood", "perturbjax.studies.ood_data",
                                    "perturbjax.studies.ood"]]

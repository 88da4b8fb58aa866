"""Small rooms: every module fits in 400 lines, and docs/layout.md names every module."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "perturbjax"
MAX_LINES = 400


def long_modules(root: Path, limit: int = MAX_LINES) -> list[str]:
    return [f"{p.relative_to(root.parent)}: {n} lines"
            for p in sorted(root.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > limit]


def unlisted_modules(root: Path, layout: str) -> list[str]:
    """Modules (and subpackages) of `root` whose file (or folder) name the layout never
    mentions."""
    missing = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "__init__.py":
            if path.parent != root and f"{path.parent.name}/" not in layout:
                missing.append(str(path.parent.relative_to(root.parent)) + "/")
        elif path.name not in layout:
            missing.append(str(path.relative_to(root.parent)))
    return missing


def test_every_module_fits_in_400_lines():
    assert long_modules(PACKAGE) == []


def test_the_size_check_finds_a_long_module(tmp_path):
    (tmp_path / "big.py").write_text("x = 1\n" * 401)
    (tmp_path / "small.py").write_text("x = 1\n" * 400)
    assert long_modules(tmp_path) == [f"{tmp_path.name}/big.py: 401 lines"]


def test_the_layout_names_every_module():
    assert unlisted_modules(PACKAGE, (ROOT / "docs" / "layout.md").read_text()) == []


def test_the_layout_check_finds_an_unlisted_module_and_package(tmp_path):
    (tmp_path / "ood").mkdir()
    (tmp_path / "ood" / "__init__.py").write_text("")
    (tmp_path / "ood" / "truth.py").write_text("")
    (tmp_path / "plots.py").write_text("")
    assert unlisted_modules(tmp_path, "plots.py (figures)") == [
        f"{tmp_path.name}/ood/", f"{tmp_path.name}/ood/truth.py"]

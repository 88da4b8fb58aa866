"""A trained model on disk: a folder that proves it is whole and names no file from data.

    my_model/
      perturbjax_model.json     what was trained on what, the parts, the files' SHA-256
      part_<i>/                 one trained program each (parameters, training cells, history)
      calibration_<i>.csv       the conformal residuals of one condition

Format 2 (this one) records a SHA-256 of every file and of the description itself, and the
device; `read_description` checks them before anything is read, and refuses a folder whose
description or listed files differ, are missing, or lie outside it (a link out of it
included). Format 1 (no hashes, no history) still loads, unverified. Every name in the
folder is made here, from indices.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from perturbjax.errors import PerturbjaxError
from perturbjax.files import write_csv, write_text
from perturbjax.models.registry import Trained
from perturbjax.version import __version__

DESCRIPTION = "perturbjax_model.json"
FORMAT = 2
READABLE_FORMATS = (1, 2)


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_hashes(path: Path) -> dict[str, str]:
    """SHA-256 of every file under `path` but the description, by relative POSIX path."""
    return {p.relative_to(path).as_posix(): file_hash(p) for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != DESCRIPTION}


def write_model(path: Path, trained: Trained, calibration: dict[str, pd.DataFrame] | None,
                description: dict[str, Any]) -> None:
    """Save a trained model into `path`, a new folder (or an empty one): its parts, its
    calibration residuals, then `description` (what was trained on what) with the format,
    the version and every file's hash; written last, it makes the folder a saved model."""
    path = path.absolute()
    if path.exists() and not path.is_dir():
        raise PerturbjaxError(f"{path}: is a file; save a model into a new folder")
    if (path / DESCRIPTION).exists():
        raise PerturbjaxError(f"{path}: holds a saved model already; choose a new folder")
    if path.is_dir() and any(path.iterdir()):
        raise PerturbjaxError(f"{path}: is not empty; save a model into a new folder")
    path.mkdir(parents=True, exist_ok=True)
    parts = trained.save(path)
    files = []
    for i, (condition, residuals) in enumerate((calibration or {}).items()):
        write_csv(path / f"calibration_{i}.csv", residuals, index=True)
        files.append({"condition": condition, "file": f"calibration_{i}.csv"})
    whole = {"format": FORMAT, "version": __version__, **description, "parts": parts,
             "calibration": files if calibration is not None else None,
             "files": folder_hashes(path)}
    whole["description_hash"] = description_hash(whole)
    write_text(path / DESCRIPTION, json.dumps(whole, indent=1, default=str))


def description_hash(description: dict[str, Any]) -> str:
    """SHA-256 of a description's content (its own hash left out): an edited gene list or
    setting shows as a mismatch."""
    content = {k: v for k, v in description.items() if k != "description_hash"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _inside(path: Path, relative: str) -> Path:
    """`path / relative`, refused if it resolves (through any link) outside `path`."""
    target = (path / relative).resolve()
    if not target.is_relative_to(path.resolve()):
        raise PerturbjaxError(f"{path / DESCRIPTION}: the file '{relative}' lies outside the "
                              "model's folder; a saved model reads only inside its folder")
    return target


def read_description(path: Path) -> dict[str, Any]:
    """The description of the model saved in `path`, its files checked against their hashes."""
    path = path.absolute()
    try:
        description = json.loads((path / DESCRIPTION).read_text())
    except FileNotFoundError:
        raise PerturbjaxError(f"{path}: no {DESCRIPTION}; not a saved perturbjax model") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PerturbjaxError(f"{path / DESCRIPTION}: not valid JSON ({error}); the model "
                              "folder is damaged: save or fit it again") from None
    if not isinstance(description, dict) or description.get("format") not in READABLE_FORMATS:
        found = description.get("format") if isinstance(description, dict) else None
        raise PerturbjaxError(f"{path / DESCRIPTION}: format {found}; this version reads "
                              f"formats {list(READABLE_FORMATS)}: fit and save the model again")
    if description["format"] >= 2 and description.get("description_hash") != description_hash(
            json.loads(json.dumps(description, default=str))):
        raise PerturbjaxError(f"{path / DESCRIPTION}: its content differs from the one saved "
                              "(SHA-256 mismatch): the description was edited or damaged")
    for relative, expected in description.get("files", {}).items():
        target = _inside(path, relative)
        if not target.is_file():
            raise PerturbjaxError(f"{path}: the file '{relative}' is missing; the model "
                                  "folder is incomplete: save or fit it again")
        if file_hash(target) != expected:
            raise PerturbjaxError(f"{path}: the file '{relative}' differs from the one saved "
                                  "(SHA-256 mismatch): the model folder was changed or damaged")
    for entry in description.get("parts", []):
        _inside(path, str(entry.get("folder", "")))
    for entry in description.get("calibration") or []:
        _inside(path, str(entry.get("file", "")))
    return description

"""Result files are written whole or not at all, under names that never come raw from data.

Writes go to a temporary name, then a rename. A name taken from data (a context, a
condition, a model) becomes a file or folder name only through `safe_name`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

SAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._+,=@-]")
MAX_NAME = 64


def safe_name(name: str) -> str:
    """A file or folder name for `name`, a value from data: the name itself when it is short
    and made of letters, digits and `._+,=@-` (not starting with a dot), else its safe
    characters (at most 48) and `~` with a hash of the whole name. Distinct names give
    distinct results (`~` appears only in the altered ones), and none leaves its folder."""
    name = str(name)
    if (name and len(name) <= MAX_NAME and not name.startswith(".")
            and not SAFE_CHARACTERS.search(name)):
        return name
    kept = SAFE_CHARACTERS.sub("_", name).lstrip(".")[:48]
    return f"{kept}~{hashlib.sha256(name.encode()).hexdigest()[:12]}"


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`.

    A crash leaves the old file or none, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_target(path) as tmp:
        tmp.write_text(text)


def write_csv(path: str | os.PathLike, frame: pd.DataFrame, index: bool = False) -> None:
    """`frame.to_csv` with the same all-or-nothing guarantee."""
    write_text(path, frame.to_csv(index=index))

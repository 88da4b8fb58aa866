"""A study's workdir is tied to what produced it: `run.json` holds the run's fingerprint and
its progress.

The fingerprint covers the configuration, each model's resolved schedule and a hash of the
data's content. A rerun in the same workdir resumes only when its fingerprint is the same.
Otherwise it is refused before any file there changes, with the fields that differ, unless
`overwrite` removes the old outputs first. `run.json` also says whether the run completed,
which contexts are done and which are missing.

A running study holds its workdir (`hold_workdir`): a second process asking to run in the
same workdir is refused while the first one runs, so that two writers never overwrite each
other's table.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from perturbjax.data.fingerprint import normalised
from perturbjax.errors import PerturbjaxError
from perturbjax.files import write_text

RUN_FILE = "run.json"
LOCK_FILE = ".lock"  # locked while a run holds its folder; holds that process's id


class WorkdirMismatchError(PerturbjaxError):
    """The workdir holds a run of other data, configuration or schedule."""


class WorkdirBusyError(PerturbjaxError):
    """Another process is running in the workdir."""


@contextlib.contextmanager
def hold_workdir(workdir: Path) -> Iterator[None]:
    """Hold `workdir` (created if absent) for the duration of the block, or refuse with
    `WorkdirBusyError` if another process holds it. The hold is an advisory lock
    (`fcntl.flock`) on its `LOCK_FILE`, released when the file closes, even if the process
    is killed."""
    if workdir.exists() and not workdir.is_dir():
        raise WorkdirMismatchError(f"workdir {workdir} is a file; expected a folder")
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise WorkdirBusyError(
                f"workdir {workdir} is in use by a run still going (process {holder}); "
                "nothing was changed. Wait for it to end or stop it (kill -TERM), then "
                "rerun") from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items()
                for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


def differences(old: dict, new: dict, limit: int = 8) -> list[str]:
    """`field: old -> new` for each leaf that differs, at most `limit` of them."""
    before, after = _flat(old), _flat(new)
    changed = [key for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    lines = [f"{key}: {before.get(key, '(absent)')} -> {after.get(key, '(absent)')}"
             for key in changed[:limit]]
    return lines + ([f"... and {len(changed) - limit} more"] if len(changed) > limit else [])


def claim_workdir(workdir: Path, fingerprint: dict, outputs: Sequence[str],
                  overwrite: bool = False, read: Callable[[dict], Any] = normalised) -> None:
    """Make `workdir` this run's, or refuse: call before writing anything into it.

    A workdir holding a run with another fingerprint (or outputs with no `run.json`) is
    refused, naming what changed; with `overwrite`, a run's `outputs` (names inside it) are
    removed first, but never files that no `run.json` shows a run of ours wrote. `read`
    turns a recorded fingerprint into the form compared (a study's older records included).
    Nothing is written here."""
    present = [name for name in outputs if (workdir / name).exists()]
    if not present:
        return
    record = workdir / RUN_FILE
    saved = read(_recorded_fingerprint(record)) if record.is_file() else None
    if saved == read(fingerprint):
        return
    if overwrite and saved is None:
        raise WorkdirMismatchError(
            f"workdir {workdir} holds {present} but no {RUN_FILE}, so nothing shows they were "
            "written by a run of ours; --overwrite removes only a run's own outputs. Nothing "
            "was changed: use a fresh workdir, or move those files away")
    if overwrite:
        for name in present:
            path = workdir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return
    what = ("; ".join(differences(saved, read(fingerprint))) if saved is not None
            else f"it holds {present} but no {RUN_FILE} (written by an older version)")
    raise WorkdirMismatchError(
        f"workdir {workdir} holds another run ({what}); nothing was changed. Use a fresh "
        "workdir, or overwrite=True (--overwrite) to replace it")


def _recorded_fingerprint(record: Path) -> dict:
    """The fingerprint a `run.json` holds, or an error naming the file."""
    try:
        return json.loads(record.read_text())["fingerprint"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise WorkdirMismatchError(f"{record}: not a readable run record ({error!r}); the "
                                   "workdir's record is damaged: use a fresh workdir") from None


def write_record(workdir: Path, fingerprint: dict, done: Sequence[str],
                 missing: Sequence[str], error: str | None = None,
                 cells: dict | None = None, pending: str | None = None) -> None:
    """`run.json`: the fingerprint and the progress (`complete`, or `partial` with the
    contexts done and missing, what is still `pending` to write, and the error that stopped
    it, if any), and the study's record of its finished parts (`cells`), if it keeps one."""
    record = {"status": "partial" if missing or error or pending else "complete",
              "done": list(done), "missing": list(missing), "error": error,
              **({"pending": pending} if pending else {}),
              "fingerprint": normalised(fingerprint),
              **({"cells": cells} if cells is not None else {})}
    write_text(workdir / RUN_FILE, json.dumps(record, indent=2) + "\n")

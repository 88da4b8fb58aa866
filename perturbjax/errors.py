"""The package's own error types: problems with what a user gave (data, flags, a workdir).

The launchers print the message of a `PerturbjaxError` alone and exit with status 2; any other
exception is a bug and keeps its traceback. Each type is a `ValueError`, so callers of the
library that catch `ValueError` keep working.
"""

from __future__ import annotations

from collections.abc import Sequence


class PerturbjaxError(ValueError):
    """A problem with the user's input, stated so that a person can fix it."""


def seed_problem(name: str, seeds: Sequence[int]) -> str | None:
    """What is wrong with a list of seeds (none, or one repeated), or None."""
    if not seeds:
        return f"{name}: none given; expected at least one integer seed"
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        return (f"{name}: {repeated} given more than once; a repeated seed trains an "
                "identical member, so seeds must be distinct")
    return None


class RunValidationError(PerturbjaxError):
    """Every problem found before a run starts, listed together."""

    def __init__(self, what: str, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{what}: {len(self.problems)} problem(s) found before any "
                         f"training:\n{lines}")

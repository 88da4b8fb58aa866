"""What the absl launchers in `experiments/` share: readable errors and checked seed flags.

`run_launcher(main)` runs `main` under absl. A `PerturbjaxError` (bad data, flags or workdir)
or a launcher's `app.UsageError` prints as `<launcher>: error: <message>` on stderr and exits
with status 2; `--verbose` shows its traceback too. Any other exception is a bug and keeps
its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import app, flags

from perturbjax.errors import PerturbjaxError, seed_problem

flags.DEFINE_bool("verbose", False, "Show the traceback of an input error too.")
USAGE_ERROR = 2


def parse_seeds(values: Sequence[str], flag: str = "seeds") -> tuple[int, ...]:
    """The distinct integers of a comma-separated seed flag, or an error naming the flag."""
    seeds = []
    for value in values:
        try:
            seeds.append(int(value))
        except ValueError:
            raise PerturbjaxError(f"--{flag}: '{value}' is not an integer seed "
                                  f"(expected e.g. --{flag}=1,2,3)") from None
    problem = seed_problem(f"--{flag}", seeds)
    if problem:
        raise PerturbjaxError(problem)
    return tuple(seeds)


def run_launcher(main: Callable[[list[str]], None]) -> None:
    """absl's `app.run(main)`, with the package's own errors printed in one block."""

    def guarded(argv: list[str]) -> None:
        try:
            main(argv)
        except (PerturbjaxError, app.UsageError) as error:
            if flags.FLAGS.verbose:
                raise
            name = Path(sys.argv[0]).name
            print(f"{name}: error: {error}", file=sys.stderr)
            sys.exit(USAGE_ERROR)

    app.run(guarded)

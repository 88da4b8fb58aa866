"""What the absl launchers in `experiments/` share: flags made from the configuration
dataclasses, checked seed flags and readable errors.

`define_flags(Config, help)` defines one flag per field of a study's configuration, with the
field's own default, and `config_from_flags(Config)` builds the configuration back from them:
a default is written once, in the dataclass. `run_launcher(main)` runs `main` under absl. A
`PerturbjaxError` (bad data, flags or workdir) or a launcher's `app.UsageError` prints as
`<launcher>: error: <message>` on stderr and exits with status 2; `--verbose` shows its
traceback too. Any other exception is a bug and keeps its traceback. SIGTERM (`kill`) stops a
launcher as Ctrl-C does, so that it records where it stopped; a job started in the background
of a script ignores SIGINT, so `kill -TERM` is the way to stop one.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import signal
import sys
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from absl import app, flags

from perturbjax.errors import PerturbjaxError, seed_problem

flags.DEFINE_bool("verbose", False, "Show the traceback of an input error too.")
flags.DEFINE_bool("progress", None, "Log a line per epoch (loss, s/epoch, time left) and per "
                  "context and model (default: when stderr is a terminal).")
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


def _field_kind(annotation: Any) -> tuple[type, bool]:
    """(the scalar type of a field, whether it is a tuple of them); `X | None` is X."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _field_kind(args[0])
    if typing.get_origin(annotation) is tuple:
        return args[0], True
    return annotation, False


def _fields(config_class: type, include: Collection[str] | None
            ) -> list[tuple[dataclasses.Field, type, bool]]:
    hints = typing.get_type_hints(config_class)
    return [(f, *_field_kind(hints[f.name])) for f in dataclasses.fields(config_class)
            if include is None or f.name in include]


def define_flags(config_class: type, help: Mapping[str, str], *,
                 include: Collection[str] | None = None, names: Mapping[str, str] = {},
                 choices: Mapping[str, Sequence[str]] = {},
                 flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """One absl flag per field of the dataclass `config_class` (those in `include`, or all),
    named as the field or as `names` says, with the field's default and `help[field]`: a bool
    flag, an integer, float or string flag (an enum with `choices`), or a comma-separated list
    for a tuple. A field whose default is None gets a flag without default."""
    caller = sys._getframe(1).f_globals.get("__name__")  # --helpshort lists the launcher's flags
    module = {"module_name": sys.argv[0] if caller == "__main__" else caller,
              "flag_values": flag_values}
    for field, kind, is_tuple in _fields(config_class, include):
        name = names.get(field.name, field.name)
        default = (field.default_factory() if field.default is dataclasses.MISSING
                   else field.default)
        text = help.get(field.name, field.name)
        if is_tuple:
            listed = None if default is None else [str(v) for v in default]
            flags.DEFINE_list(name, listed, text, **module)
        elif field.name in choices:
            flags.DEFINE_enum(name, default, list(choices[field.name]), text, **module)
        elif kind is bool:
            flags.DEFINE_bool(name, default, text, **module)
        elif kind is int:
            flags.DEFINE_integer(name, default, text, **module)
        elif kind is float:
            flags.DEFINE_float(name, default, text, **module)
        elif kind is str:
            flags.DEFINE_string(name, default, text, **module)
        else:
            raise TypeError(f"{config_class.__name__}.{field.name}: no flag for a {kind}")


def _parsed(name: str, kind: type, value: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise PerturbjaxError(f"--{name}: '{value}' is not a {kind.__name__}") from None


def config_from_flags(config_class: type, *, include: Collection[str] | None = None,
                      names: Mapping[str, str] = {},
                      flag_values: flags.FlagValues = flags.FLAGS, **given: Any) -> Any:
    """`config_class` built from the flags `define_flags` made (lists parsed to tuples of
    the field's type, seed lists checked by `parse_seeds`), with `given` fields as they are."""
    values = {}
    for field, kind, is_tuple in _fields(config_class, include):
        if field.name in given:
            continue
        name = names.get(field.name, field.name)
        value = getattr(flag_values, name)
        if is_tuple and value is not None:
            value = (parse_seeds(value, name) if field.name.endswith("seeds")
                     else tuple(_parsed(name, kind, v) for v in value))
        values[field.name] = value
    return config_class(**values, **given)


def show_progress(asked: bool | None) -> None:
    """The package's progress lines on stderr when `asked` (--progress), or by default when
    stderr is a terminal; otherwise (tests, pipes, batch jobs) warnings only."""
    shown = sys.stderr.isatty() if asked is None else asked
    logging.getLogger("perturbjax").setLevel(logging.INFO if shown else logging.WARNING)


STOPPED = 128 + signal.SIGTERM  # the shell's status for a process ended by SIGTERM


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)  # recorded as "KeyboardInterrupt: SIGTERM"


# Errors of the disk, not of the code: a full disk, a read-only folder, no permission.
STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def run_launcher(main: Callable[[list[str]], None]) -> None:
    """absl's `app.run(main)`, with the package's own errors printed in one block. SIGTERM
    raises `KeyboardInterrupt` in `main`, whose handlers record the stop (a study's
    `run.json`); the launcher then says so and exits with `STOPPED`."""

    def guarded(argv: list[str]) -> None:
        signal.signal(signal.SIGTERM, _stop)
        name = Path(sys.argv[0]).name
        try:
            main(argv)
        except (PerturbjaxError, app.UsageError) as error:
            if flags.FLAGS.verbose:
                raise
            print(f"{name}: error: {error}", file=sys.stderr)
            sys.exit(USAGE_ERROR)
        except KeyboardInterrupt:
            print(f"{name}: stopped; every file it wrote is whole", file=sys.stderr)
            sys.exit(STOPPED)
        except OSError as error:
            if error.errno not in STORAGE_ERRORS or flags.FLAGS.verbose:
                raise
            print(f"{name}: error: {error.filename or 'a file'}: {error.strerror}; the run "
                  "stopped there, and every file it finished is whole", file=sys.stderr)
            sys.exit(USAGE_ERROR)

    app.run(guarded)

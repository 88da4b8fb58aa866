"""Flags made from a configuration dataclass carry its defaults and build it back; a
launcher stopped by SIGTERM records the stop and says so."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from absl import flags

from perturbjax.cli import STOPPED, config_from_flags, define_flags, parse_seeds
from perturbjax.errors import PerturbjaxError


@dataclasses.dataclass(frozen=True)
class Settings:
    design: str = "single"
    epochs: int | None = None
    rate: float = 0.5
    figures: bool = True
    held_out: tuple[str, ...] = ()
    doses: tuple[float, ...] = (0.1, 1.0)
    seeds: tuple[int, ...] = (1, 2)
    hidden: str = "not a flag"


FLAGGED = [f.name for f in dataclasses.fields(Settings) if f.name != "hidden"]


def _flags(*argv: str) -> flags.FlagValues:
    values = flags.FlagValues()
    define_flags(Settings, {"epochs": "Epochs."}, include=FLAGGED,
                 names={"rate": "learning_rate"}, choices={"design": ("single", "species")},
                 flag_values=values)
    values(["launcher", *argv])
    return values


def test_flags_default_to_the_dataclass_and_build_it_back():
    values = _flags()
    assert values["learning_rate"].default == 0.5 and values["epochs"].help == "Epochs."
    built = config_from_flags(Settings, include=FLAGGED, names={"rate": "learning_rate"},
                              flag_values=values)
    assert built == Settings()


def test_given_flags_are_parsed_to_the_field_types():
    values = _flags("--design=species", "--epochs=3", "--learning_rate=0.1", "--nofigures",
                    "--held_out=a,b", "--doses=3,10", "--seeds=5")
    built = config_from_flags(Settings, names={"rate": "learning_rate"}, flag_values=values,
                              hidden="given")
    assert built == Settings("species", 3, 0.1, False, ("a", "b"), (3.0, 10.0), (5,), "given")


def test_bad_values_name_their_flag():
    with pytest.raises(flags.IllegalFlagValueError):
        _flags("--design=bulk")
    values = _flags("--doses=1,x")
    with pytest.raises(PerturbjaxError, match="--doses: 'x' is not a float"):
        config_from_flags(Settings, names={"rate": "learning_rate"}, flag_values=values,
                          hidden="h")
    with pytest.raises(PerturbjaxError, match="--seeds"):
        parse_seeds(["1", "1"], "seeds")


def test_progress_lines_show_when_asked_or_on_a_terminal_only(monkeypatch):
    import logging
    import sys

    from perturbjax.cli import show_progress

    logger = logging.getLogger("perturbjax")
    level = logger.level
    try:
        monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
        show_progress(None)
        assert logger.getEffectiveLevel() == logging.WARNING
        show_progress(True)
        assert logger.getEffectiveLevel() == logging.INFO
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
        show_progress(None)
        assert logger.getEffectiveLevel() == logging.INFO
        show_progress(False)
        assert logger.getEffectiveLevel() == logging.WARNING
    finally:
        logger.setLevel(level)


LAUNCHER = """
import sys, time
from pathlib import Path
from perturbjax.cli import run_launcher

def main(argv):
    marker = Path(argv[1])
    try:
        marker.write_text("started")
        time.sleep(120)
    except KeyboardInterrupt as stop:
        marker.write_text(f"stop recorded: {stop}")
        raise

run_launcher(main)
"""


def test_a_launcher_stopped_by_sigterm_records_the_stop_says_so_and_exits_143(tmp_path):
    script, marker = tmp_path / "launcher.py", tmp_path / "marker"
    script.write_text(textwrap.dedent(LAUNCHER))
    child = subprocess.Popen([sys.executable, str(script), str(marker)],
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, errors = child.communicate(timeout=120)
    assert (child.returncode, STOPPED) == (143, 143)
    assert "launcher.py: stopped" in errors and marker.read_text() == "stop recorded: SIGTERM"


FULL_DISK = """
import errno
from perturbjax.cli import run_launcher

def main(argv):
    raise OSError(errno.ENOSPC, "No space left on device", "runs/x/metrics.csv")

run_launcher(main)
"""


def test_a_full_disk_ends_the_launcher_with_one_line_naming_the_file_and_status_2(tmp_path):
    script = tmp_path / "launcher.py"
    script.write_text(textwrap.dedent(FULL_DISK))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "launcher.py: error: runs/x/metrics.csv: No space left on device; the run stopped "
        "there, and every file it finished is whole"]

"""Time per step and time left, for the progress lines of long fits and studies."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator


def duration(seconds: float) -> str:
    """A short human duration: '42s', '3m05s', '1h02m'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Steps `first..total` of a loop: after `done` steps, the mean time of those run here
    and an estimate of the time left (the mean times the steps still to run)."""

    def __init__(self, total: int, first: int = 0):
        self.total, self.first = total, first
        self.started = time.perf_counter()

    def per_step(self, done: int) -> float:
        return (time.perf_counter() - self.started) / max(done - self.first, 1)

    def left(self, done: int) -> str:
        return duration(self.per_step(done) * max(self.total - done, 0))


class _EveryTenth(logging.Filter):
    """Lets through every line but the epoch lines, of which it keeps about one in ten."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("epoch "):
            return True
        done, total = (int(n) for n in message.split()[1].split("/"))
        return done == total or done % max(1, total // 10) == 0


@contextlib.contextmanager
def shown(progress: bool) -> Iterator[None]:
    """While it is open, the library's progress lines (INFO of the 'perturbjax' logger, about
    ten epoch lines per fit) go to stderr, unless `progress` is False or the caller has set
    up logging of their own (a handler on that logger or on the root)."""
    logger = logging.getLogger("perturbjax")
    if not progress or logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("perturbjax: %(message)s"))
    handler.addFilter(_EveryTenth())
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

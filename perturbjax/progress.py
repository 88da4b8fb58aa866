"""Time per step and time left, for the progress lines of long fits and studies."""

from __future__ import annotations

import time


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

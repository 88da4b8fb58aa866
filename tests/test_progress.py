"""Durations read by people, and the time-left estimate of a loop."""

from __future__ import annotations

from perturbjax import progress
from perturbjax.progress import Progress, duration


def test_durations_are_short_and_exact():
    assert [duration(s) for s in (0.4, 42, 185, 3725)] == ["0s", "42s", "3m05s", "1h02m"]


def test_time_left_is_the_mean_step_times_the_steps_to_run(monkeypatch):
    now = iter([100.0, 130.0, 130.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(now))
    clock = Progress(total=10, first=2)  # resumed after 2 steps; started at t = 100
    assert clock.per_step(5) == 10.0  # 3 steps in 30 s
    assert clock.left(5) == "50s"  # 5 steps to go

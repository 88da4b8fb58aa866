"""Result files are written whole or not at all."""

from __future__ import annotations

import pandas as pd
import pytest

from perturbjax.files import atomic_target, write_csv, write_text


def test_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out" / "summary.md"
    write_text(path, "first")
    write_text(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["summary.md"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.csv"
    write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_target(path) as tmp:
        tmp.write_text("half a fi")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_write_csv_round_trips_a_frame(tmp_path):
    frame = pd.DataFrame({"model": ["a", "b"], "r2": [0.5, 0.25]})
    write_csv(tmp_path / "t.csv", frame)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), frame)

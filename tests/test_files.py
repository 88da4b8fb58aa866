"""Result files are written whole or not at all."""

from __future__ import annotations

import pandas as pd
import pytest

from perturbjax.files import atomic_target, safe_name, write_csv, write_text


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


@pytest.mark.parametrize("name", ["../../../x", "/abs/path/x", "a" * 300, "..", ".", "",
                                  "a/b", "a\\b", "a\x00b", "ünïcode"])
def test_a_name_from_data_becomes_one_bounded_name_inside_its_folder(tmp_path, name):
    safe = safe_name(name)
    assert 0 < len(safe) <= 64 and "/" not in safe and not safe.startswith(".")
    assert (tmp_path / safe).resolve().parent == tmp_path.resolve()


def test_safe_names_stay_as_they_are_and_colliding_ones_stay_distinct():
    assert [safe_name(n) for n in ("B", "CD14+Mono", "type_0", "0.1")] == [
        "B", "CD14+Mono", "type_0", "0.1"]
    altered = [safe_name(n) for n in ("a/b", "a b", "a_b", "a" * 300, "a" * 301)]
    assert len(set(altered)) == 5 and altered[2] == "a_b"

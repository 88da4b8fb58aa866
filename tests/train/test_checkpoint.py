"""Orbax checkpoints: a saved state comes back exactly, another run's checkpoint is refused."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import pytest

from perturbjax.train.checkpoint import Checkpointer, CheckpointMismatchError

STATE = {"params": {"w": jnp.arange(6.0).reshape(2, 3)}, "step": jnp.asarray(4, jnp.int32)}


def test_a_restored_state_equals_the_saved_one(tmp_path):
    saver = Checkpointer(tmp_path, {"epochs": 10})
    saver.save(3, STATE)
    saver.close()
    reader = Checkpointer(tmp_path, {"epochs": 10})
    assert reader.latest_epoch() == 3
    chex.assert_trees_all_equal(reader.restore(3, STATE), STATE)
    reader.close()


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    saver = Checkpointer(tmp_path, {}, max_to_keep=2)
    for epoch in (1, 2, 3):
        saver.save(epoch, STATE)
    assert saver.latest_epoch() == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["2", "3"]
    saver.close()


def test_a_checkpoint_of_another_run_is_refused_by_name(tmp_path):
    saver = Checkpointer(tmp_path, {"epochs": 10})
    saver.save(1, STATE)
    saver.close()
    with pytest.raises(CheckpointMismatchError, match="different run"):
        Checkpointer(tmp_path, {"epochs": 20}).restore(1, STATE)


def test_an_empty_directory_has_no_checkpoint(tmp_path):
    assert Checkpointer(tmp_path / "none", {}).latest_epoch() is None

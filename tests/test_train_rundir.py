"""The run folder (:mod:`basnet_cli.train.rundir`): where it goes, when it is made, and that
a run which cannot start leaves none behind."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from basnet_cli.train import Trainer, TrainError, TrainOptions
from basnet_cli.train.rundir import create_run_dir, next_run_dir, remove_unused

TINY_OPTS = {"model": "basnet-tiny", "resize": 72, "crop": 64, "batch_size": 4,
             "precision": "float32", "steps": 1}


def test_numbered_folders_take_the_first_free_number(tmp_path):
    base = tmp_path / "runs"
    assert next_run_dir(base) == base / "train-1"
    run, created = create_run_dir(base / "train-1", numbered=True)
    assert run == base / "train-1" and created == [run, base]
    # Another run took train-1 after this one picked it: it moves on to train-2.
    run2, created2 = create_run_dir(base / "train-1", numbered=True)
    assert run2 == base / "train-2" and created2 == [run2]
    # A named folder may exist already (and is then not this run's to remove).
    named, created3 = create_run_dir(base / "train-1", numbered=False)
    assert named == base / "train-1" and created3 == []


def test_only_unused_folders_this_run_made_are_removed(tmp_path):
    run, created = create_run_dir(tmp_path / "a" / "b" / "run", numbered=False)
    (run / "config.json").write_text("{}")
    remove_unused(run, created)
    assert not (tmp_path / "a").exists()
    run, created = create_run_dir(tmp_path / "keep", numbered=False)
    (run / "last.keras").write_text("")
    remove_unused(run, created)
    assert (run / "last.keras").is_file()
    existing = tmp_path / "existing"
    existing.mkdir()
    remove_unused(existing, [])
    assert existing.is_dir()


@pytest.mark.parametrize("change, message", [
    ({"model": "bad.h5"}, "neither a preset"),
    ({"backbone_weights": "/nonexistent.pth"}, "--backbone-weights"),
    ({"init": "/nonexistent.weights.h5"}, "nonexistent"),
])
def test_a_model_that_does_not_load_leaves_no_folder(synth_dataset, tmp_path, monkeypatch,
                                                     change, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrainError, match=message):  # runs/train-N
        Trainer(TrainOptions(data=str(synth_dataset), **{**TINY_OPTS, **change})).run()
    out = tmp_path / "new" / "run"
    with pytest.raises(TrainError, match=message):  # --out, parents included
        Trainer(TrainOptions(data=str(synth_dataset), out=str(out),
                             **{**TINY_OPTS, **change})).run()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cli_a_bad_backbone_file_leaves_no_folder(synth_dataset, tmp_path, monkeypatch):
    from basnet_cli.cli import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["train", str(synth_dataset), "--model", "basnet-tiny",
                                   "--resize", "72", "--crop", "64", "--batch-size", "4",
                                   "--steps", "1", "--precision", "float32",
                                   "--backbone-weights", "/nonexistent.pth"])
    assert res.exit_code == 2 and "--backbone-weights" in res.output, res.output
    assert not (tmp_path / "runs").exists()

"""`basnet train` options (:mod:`basnet_cli.train.options`): checks, choices, error kinds, and
what ``--resume`` may change."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

import pytest
from typer.testing import CliRunner

from basnet_cli.errors import RunFailure, UsageError
from basnet_cli.train import (
    PIPELINES,
    PRECISIONS,
    SCHEDULES,
    NonFiniteLoss,
    Schedule,
    TrainError,
    TrainOptions,
    resume_options,
)

# The "options" of a config.json as written before the train package existed: a run started
# then must stay resumable.
OLD_CONFIG_OPTIONS = {
    "data": "/data/DUTS-TR", "images": None, "masks": None, "val": None, "val_split": 0.02,
    "val_limit": 500, "strict": False, "model": "basnet-mobile", "init": None,
    "backbone_weights": "/w/lite0.pth", "out": "runs/mobile-s2", "epochs": None,
    "steps": 20000, "batch_size": 8, "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-08,
    "weight_decay": 0.0, "schedule": "cosine", "step_size": 0, "gamma": 0.1,
    "warmup_steps": 500, "resize": 256, "crop": 224, "flip": True, "cache": "memory",
    "seed": 0, "shuffle_seed": 3, "precision": "auto", "save_every": 200, "log_every": 50,
    "cpu_devices": 0, "tensorboard": False, "input_pipeline": "auto",
}


def _run_folder(tmp_path, **options):
    run = tmp_path / "run"
    run.mkdir()
    opts = {**OLD_CONFIG_OPTIONS, "out": str(run), **options}
    (run / "config.json").write_text(json.dumps({"options": opts, "total_steps": 20000}))
    return run


def test_choices_keep_their_values():
    from basnet_cli.runtime import PRECISIONS as RUNTIME_PRECISIONS

    assert SCHEDULES == ("constant", "cosine", "step")
    assert PIPELINES == ("auto", "tfdata", "python")
    assert PRECISIONS == RUNTIME_PRECISIONS
    # Enum members given to the core are stored as plain values (config.json stays plain).
    opts = TrainOptions(schedule=Schedule.cosine)
    assert type(opts.schedule) is str and json.loads(json.dumps(asdict(opts)))["schedule"] \
        == "cosine"


@pytest.mark.parametrize("change, message", [
    ({"epochs": 0}, "--epochs must be at least 1"),
    ({"steps": 0}, "--steps must be at least 1"),
    ({"schedule": "linear"}, "--schedule must be one of constant, cosine, step"),
    ({"cache": "disk"}, "--cache must be none, memory or file:PATH"),
    ({"crop": 100}, "--crop must be a multiple of 32"),
    ({"batch_size": 0}, "--batch-size must be at least 1"),
    ({"keep_every": -5}, "--keep-every must be 0"),
    ({"input_pipeline": "torch"}, "--input-pipeline must be one of auto, tfdata, python"),
    ({"precision": "fp8"}, "--precision must be one of auto, float32, bfloat16, float16"),
])
def test_validate_names_the_bad_option(change, message):
    with pytest.raises(TrainError, match=message):
        TrainOptions(**change).validate()
    TrainOptions(cache="file:/tmp/c").validate()


def test_error_kinds_map_to_the_exit_codes():
    from basnet_cli.cli.app import exit_code

    assert issubclass(TrainError, UsageError) and exit_code(TrainError("x")) == 2
    assert issubclass(NonFiniteLoss, RunFailure) and not issubclass(NonFiniteLoss, UsageError)
    assert exit_code(NonFiniteLoss("x")) == 1


@pytest.mark.parametrize("args, message", [
    (["--schedule", "linear"], "error: --schedule must be one of constant, cosine, step"),
    (["--precision", "fp8"], "error: --precision must be one of auto, float32, bfloat16, "
                             "float16"),
    (["--input-pipeline", "torch"], "error: --input-pipeline must be one of auto, tfdata, "
                                    "python"),
])
def test_cli_refuses_a_bad_choice_in_one_line(tmp_path, args, message):
    from basnet_cli.cli import app

    res = CliRunner().invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "r"), *args])
    assert res.exit_code == 2 and res.output.strip() == message, res.output
    assert not (tmp_path / "r").exists()


# Options added since: an old run resumes with their defaults.
NEWER_OPTIONS = {"keep_every"}


def test_an_old_config_is_resumed_with_the_given_adjustable_options(tmp_path):
    assert set(OLD_CONFIG_OPTIONS) | NEWER_OPTIONS == {f.name for f in fields(TrainOptions)}
    run = _run_folder(tmp_path)
    assert resume_options(run, TrainOptions(), set()).options.keep_every == 0
    resumed = resume_options(run, TrainOptions(steps=30000, log_every=10, lr=0.5,
                                               keep_every=500),
                             {"steps", "log_every", "keep_every"})
    assert resumed.changed == ["keep_every", "log_every", "steps"]
    opts = resumed.options
    assert (opts.steps, opts.log_every, opts.lr, opts.schedule) == (30000, 10, 0.001, "cosine")
    assert opts.keep_every == 500
    assert opts.out == str(run) and resumed.config["total_steps"] == 20000


def test_resume_refuses_other_options_and_compares_paths_by_target(tmp_path, monkeypatch):
    run = _run_folder(tmp_path, data=str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    # The same folder spelled differently, and a repeated value, are no change.
    same = TrainOptions(data="data/", out="./run", schedule="cosine")
    assert resume_options(run, same, {"data", "out", "schedule"}).changed == []
    with pytest.raises(TrainError, match=r"--crop 96 \(the run has 224\).*last\.keras"):
        resume_options(run, TrainOptions(crop=96), {"crop"})


def test_resume_with_epochs_alone_drops_the_old_steps(tmp_path):
    resumed = resume_options(_run_folder(tmp_path), TrainOptions(epochs=3), {"epochs"})
    assert (resumed.options.epochs, resumed.options.steps) == (3, None)
    assert resumed.changed == ["epochs", "steps"]


def test_resume_needs_a_readable_config(tmp_path):
    with pytest.raises(TrainError, match="no config.json, not a run folder"):
        resume_options(tmp_path, TrainOptions(), set())
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(TrainError):
        resume_options(tmp_path, TrainOptions(), set())


@pytest.mark.parametrize(("model", "asked", "machine", "expected"), [
    ("basnet-mobile", "auto", "bfloat16", "float32"),  # bf16 training steps slower on CPUs
    ("basnet-mobile-tiny", "auto", "bfloat16", "float32"),
    ("basnet-lite", "auto", "bfloat16", "bfloat16"),
    ("basnet", "auto", "bfloat16", "bfloat16"),
    ("basnet-mobile", "bfloat16", "bfloat16", "bfloat16"),  # asked for: kept
    ("basnet-mobile", "auto", "float16", "float16"),  # a GPU
    ("basnet-mobile", "auto", "float32", "float32"),
])
def test_auto_training_precision_follows_the_preset_on_bf16_cpus(
        monkeypatch: pytest.MonkeyPatch, model: str, asked: str, machine: str,
        expected: str) -> None:
    from basnet_cli import runtime
    from basnet_cli.train import prepare

    monkeypatch.setattr(runtime, "resolve_precision",
                        lambda p: machine if p == "auto" else p)
    opts = TrainOptions(model=model, precision=asked)
    assert prepare.train_precision(opts) == expected

"""The options of ``basnet train``, their checks, and what ``--resume`` may change."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from basnet_cli.errors import RunFailure, UsageError
from basnet_cli.model.config import DEFAULT_PRESET
from basnet_cli.runtime import PRECISIONS, Precision  # noqa: F401 - re-exported


class TrainError(UsageError):
    """Training cannot start, or a pair changed under a run (message is for the user)."""


class NonFiniteLoss(RunFailure):
    """The loss became NaN or infinite: the run started and had to stop."""


class Schedule(str, Enum):
    """``--schedule``: the learning-rate schedule."""

    constant = "constant"
    cosine = "cosine"
    step = "step"


class InputPipeline(str, Enum):
    """``--input-pipeline``: tf.data, or Pillow + ``keras.utils.PyDataset`` without TF."""

    auto = "auto"
    tfdata = "tfdata"
    python = "python"


SCHEDULES = tuple(s.value for s in Schedule)
PIPELINES = tuple(p.value for p in InputPipeline)
CACHE_MODES = ("none", "memory")  # or file:PATH
# What ``--resume`` may change: how long the run goes on and how it reports.  Everything else
# (data, model, optimiser, augmentation) is fixed by the run's config.json.
RESUME_ADJUSTABLE = ("steps", "epochs", "save_every", "keep_every", "log_every", "tensorboard")
_PATH_OPTIONS = ("data", "images", "masks", "val", "model", "init", "backbone_weights", "out")


@dataclass
class TrainOptions:
    """Every option of ``basnet train`` (written to ``config.json`` as plain values)."""

    data: str | None = None
    images: str | None = None
    masks: str | None = None
    val: str | None = None
    val_split: float = 0.0
    val_limit: int = 500
    strict: bool = False
    model: str = DEFAULT_PRESET
    init: str | None = None
    backbone_weights: str | None = None
    out: str | None = None
    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 8
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: str = "constant"
    step_size: int = 0
    gamma: float = 0.1
    warmup_steps: int = 0
    resize: int = 256
    crop: int = 224
    flip: bool = True
    cache: str = "none"
    seed: int = 0
    shuffle_seed: int | None = None
    precision: str = "auto"
    save_every: int = 200
    keep_every: int = 0
    log_every: int = 50
    cpu_devices: int = 0
    tensorboard: bool = False
    input_pipeline: str = "auto"

    def __post_init__(self) -> None:
        for name in ("schedule", "precision", "input_pipeline"):  # enum members: plain values
            value = getattr(self, name)
            if isinstance(value, Enum):
                setattr(self, name, value.value)

    def validate(self) -> None:
        """Check the options (a :class:`TrainError` names the first bad one); no ``--epochs``
        and no ``--steps`` means one epoch."""
        if self.epochs is None and self.steps is None:
            self.epochs = 1
        if self.epochs is not None and self.epochs < 1:
            raise TrainError("--epochs must be at least 1")
        if self.steps is not None and self.steps < 1:
            raise TrainError("--steps must be at least 1")
        if self.schedule not in SCHEDULES:
            raise TrainError(f"--schedule must be one of {', '.join(SCHEDULES)}")
        if self.cache not in CACHE_MODES and not self.cache.startswith("file:"):
            raise TrainError("--cache must be none, memory or file:PATH")
        if self.crop % 32:
            raise TrainError(f"--crop must be a multiple of 32 (BASNet halves 5 times), "
                             f"got {self.crop}")
        if self.batch_size < 1:
            raise TrainError("--batch-size must be at least 1")
        if self.keep_every < 0:
            raise TrainError("--keep-every must be 0 (none) or a number of steps")
        if self.input_pipeline not in PIPELINES:
            raise TrainError(f"--input-pipeline must be one of {', '.join(PIPELINES)}")
        if self.precision not in PRECISIONS:
            raise TrainError(f"--precision must be one of {', '.join(PRECISIONS)}")

    def data_seed(self) -> int:
        """The seed of the training order and augmentation: ``--shuffle-seed`` when given, else
        ``--seed``. A new stage started from earlier weights with the same ``--seed`` (so the
        same validation split) would otherwise see the same images first again."""
        return self.seed if self.shuffle_seed is None else self.shuffle_seed

    def pipeline(self) -> str:
        """The concrete input pipeline (``auto`` resolved on this machine)."""
        if self.input_pipeline != "auto":
            return self.input_pipeline
        from basnet_cli.data import tensorflow_available

        return "tfdata" if tensorflow_available() else "python"


@dataclass
class Resumed:
    """A run folder's options after :func:`resume_options`."""

    options: TrainOptions
    changed: list[str]  # the RESUME_ADJUSTABLE options that differ from config.json
    config: dict  # the run's config.json


def read_run_config(run_dir: Path) -> dict:
    """The ``config.json`` of a run folder."""
    path = run_dir / "config.json"
    if not path.is_file():
        raise TrainError(f"{run_dir}: no config.json, not a run folder")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:  # not JSON: same exit code as any other unreadable input
        raise TrainError(str(exc)) from exc


def resume_options(run_dir: Path, cli: TrainOptions, given: set[str]) -> Resumed:
    """The options of a resumed run: those in ``run_dir/config.json``, with the
    RESUME_ADJUSTABLE ones the user gave (``given``: the fields set on the command line);
    a different value for any other option is an error (it would be ignored)."""
    config = read_run_config(run_dir)
    saved = TrainOptions(**config["options"])
    changed, conflicts = [], []
    for name in sorted(given):
        new, old = getattr(cli, name), getattr(saved, name)
        if name == "out":
            old = str(run_dir)
        if name in RESUME_ADJUSTABLE:
            if new != old:
                setattr(saved, name, new)
                changed.append(name)
        elif not _same_option(name, new, old):
            conflicts.append(f"--{name.replace('_', '-')} {new} (the run has {old})")
    if conflicts:
        raise TrainError(
            f"{run_dir} was started with other options and --resume keeps them: "
            f"{'; '.join(conflicts)}. With --resume only --steps, --epochs, --save-every, "
            f"--keep-every, --log-every and --tensorboard can change; to train on with other "
            f"options start a new run from its weights: --model {run_dir / 'last.keras'}")
    if "epochs" in given and "steps" not in given and saved.steps is not None:
        saved.steps = None  # --epochs alone: the run's length in epochs, not its old --steps
        changed.append("steps")
    saved.out = str(run_dir)
    return Resumed(saved, changed, config)


def _same_option(name: str, new: object, old: object) -> bool:
    if name in _PATH_OPTIONS and new is not None and old is not None:
        return os.path.realpath(str(new)) == os.path.realpath(str(old))
    return new == old

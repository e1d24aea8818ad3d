"""`basnet train`: the paper's recipe, resumable, mixed precision, multi-device.

Run folder layout (``--out``; made once the data and the model have loaded):
- ``config.json``   every option, the dataset sizes, the preset config;
- ``last.keras``    model + optimizer state (the step is the optimizer's iteration count),
                    written atomically every ``--save-every`` steps, each epoch and on
                    Ctrl-C/SIGTERM (+ ``state.json``: step, epoch, best metrics);
- ``best.weights.h5`` weights with the best validation MAE;
- ``steps/step-NNNNNN.weights.h5`` the weights alone every ``--keep-every`` steps (0: none);
- ``log.csv``       one row per epoch: loss, validation MAE / max F, lr, images/s;
- ``summary.json``  written at the end: data, recipe, time, images/s, best metrics.

Modules: :mod:`~basnet_cli.train.options` (options, their checks, ``--resume`` merging),
:mod:`~basnet_cli.train.schedules` (optimiser and LR schedule),
:mod:`~basnet_cli.train.rundir` (the run folder and its files),
:mod:`~basnet_cli.train.prepare` (pairs, model, strategy, per-epoch data),
:mod:`~basnet_cli.train.trainer` (the loop, validation, checkpoints, signals, events).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from basnet_cli.lazy import lazy_exports

# The public names and the module of each; imported on first use, so that the command line
# (which needs only the option enums) starts without NumPy.
_EXPORTS = {
    "options": ("CACHE_MODES", "PIPELINES", "PRECISIONS", "RESUME_ADJUSTABLE", "SCHEDULES",
                "InputPipeline", "NonFiniteLoss", "Precision", "Resumed", "Schedule",
                "TrainError", "TrainOptions", "resume_options"),
    "rundir": ("RunState", "next_run_dir"),
    "schedules": ("COSINE_FINAL",),
    "trainer": ("Trainer", "validate_model"),
}
__all__ = [
    "CACHE_MODES", "COSINE_FINAL", "PIPELINES", "PRECISIONS", "RESUME_ADJUSTABLE", "SCHEDULES",
    "InputPipeline", "NonFiniteLoss", "Precision", "Resumed", "RunState", "Schedule",
    "TrainError", "TrainOptions", "Trainer", "next_run_dir", "resume_options", "validate_model",
]

if TYPE_CHECKING:
    from basnet_cli.train.options import (
        CACHE_MODES,
        PIPELINES,
        PRECISIONS,
        RESUME_ADJUSTABLE,
        SCHEDULES,
        InputPipeline,
        NonFiniteLoss,
        Precision,
        Resumed,
        Schedule,
        TrainError,
        TrainOptions,
        resume_options,
    )
    from basnet_cli.train.rundir import RunState, next_run_dir
    from basnet_cli.train.schedules import COSINE_FINAL
    from basnet_cli.train.trainer import Trainer, validate_model


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

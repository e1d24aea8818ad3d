"""The choices of ``basnet evaluate``: its usage error, ``--curve``, which mode the options
select and where the report goes by default.  No NumPy: the command line imports this at
start-up."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Protocol

from basnet_cli.errors import UsageError


class EvaluateUsageError(UsageError):
    """Bad options or nothing to evaluate (exit code 2)."""


class Curve(str, Enum):
    """``--curve``: per-image P/R/F curves averaged over images (PySODMetrics), or P and R
    averaged over images first, then F (classic toolboxes)."""

    image = "image"
    dataset = "dataset"


CURVES = tuple(c.value for c in Curve)


class Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, n: int) -> None: ...

    def stop(self) -> None: ...


def check_curve(curve: str) -> None:
    if curve not in CURVES:
        raise EvaluateUsageError(f"--curve must be one of {', '.join(CURVES)}, got {curve!r}")


def evaluation_mode(*, pred: Sequence[str] | None, gt: str | None, data: str | None,
                    images: str | None, masks: str | None,
                    merge: Sequence[str] | None = None) -> str:
    """``"maps"`` (``--pred``/``--gt``), ``"model"`` (``--data``/``--images``/``--masks``) or
    ``"merge"`` (``--merge``); raises :class:`EvaluateUsageError` when the options mix modes or
    give none."""
    maps_mode = bool(pred) or gt is not None
    model_mode = data is not None or images is not None or masks is not None
    if merge and (maps_mode or model_mode):
        raise EvaluateUsageError("--merge joins existing reports: give it without --pred/--gt "
                                 "or --data/--images/--masks")
    if merge:
        return "merge"
    if maps_mode and model_mode:
        raise EvaluateUsageError("use either --pred/--gt (maps mode) or --data/--images/--masks "
                                 "(model mode), not both")
    if not maps_mode and not model_mode:
        raise EvaluateUsageError("nothing to evaluate: give --data DIR (model mode) or --pred "
                                 "DIR --gt DIR (maps mode); see basnet evaluate --help")
    if maps_mode and (not pred or gt is None):
        raise EvaluateUsageError("maps mode needs both --pred DIR and --gt DIR")
    return "maps" if maps_mode else "model"


def default_report_dir(mode: str, dataset: str, model: str) -> Path:
    """Beside the model when ``--model`` is a file or a SavedModel folder, else
    ``./eval-<dataset>[-<preset>]``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    if mode == "model":
        path = Path(model)
        if path.is_file() or (path / "saved_model.pb").is_file():
            return path.parent / f"eval-{safe}"
        return Path(f"eval-{safe}-{model}")
    return Path(f"eval-{safe}")

"""The self-check of an export: reload it with its own runtime, run it on a few images and
compare with the Keras model within the tolerance of its format and quantisation."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli.export.formats import TOLERANCES, ExportError, Tolerance
from basnet_cli.export.images import synthetic_images
from basnet_cli.export.tfjs import run_tfjs


@dataclass
class CheckResult:
    """How the reloaded export compares with the Keras model."""

    runtime: str
    images: int
    image_source: str
    max_abs: float
    mean_abs: float
    tolerance: Tolerance
    time_per_image_s: float
    keras_time_per_image_s: float

    @property
    def passed(self) -> bool:
        return (self.max_abs <= self.tolerance.max_abs
                and self.mean_abs <= self.tolerance.mean_abs)


def _time_per_image(predictor: Callable[[np.ndarray], np.ndarray], images: np.ndarray
                    ) -> tuple[np.ndarray, float]:
    """Run image by image after one warm-up call; returns (outputs, mean seconds per image)."""
    predictor(images[:1])
    outs, total = [], 0.0
    for i in range(len(images)):
        t0 = time.perf_counter()
        outs.append(np.asarray(predictor(images[i:i + 1]), np.float32))
        total += time.perf_counter() - t0
    return np.concatenate(outs, axis=0), total / len(images)


_KERAS_PREDICTORS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _keras_predictor(model: Any) -> Any:
    """One traced :class:`~basnet_cli.inference.KerasPredictor` per model (reused by checks)."""
    from basnet_cli.inference import KerasPredictor

    predictor = _KERAS_PREDICTORS.get(model)
    if predictor is None:
        predictor = _KERAS_PREDICTORS[model] = KerasPredictor(model)
    return predictor


def check_export(fmt: str, quantize: str, path: Path, model: Any, images: np.ndarray,
                 source: str, log: Callable[[str], None] | None = None) -> CheckResult:
    """Load ``path`` with its runtime, run it on ``images`` and compare with ``model``."""
    x = images.astype(np.float32)
    keras_predictor = _keras_predictor(model)
    reference, keras_time = _time_per_image(keras_predictor, x)
    if fmt == "keras":
        from basnet_cli.runtime import import_keras

        keras = import_keras()
        reloaded = keras.saving.load_model(path, compile=False, safe_mode=True)
        from basnet_cli.inference import KerasPredictor

        got, seconds = _time_per_image(KerasPredictor(reloaded), x)
        runtime = f"keras {keras.__version__}"
    elif fmt == "tfjs":
        got, seconds, runtime = run_tfjs(path, x, log=log)
    else:
        from basnet_cli.inference import BackendError, open_exported

        try:
            predictor = open_exported(path)
        except BackendError as exc:
            raise ExportError(str(exc)) from None
        got, seconds = _time_per_image(predictor, x)
        runtime = predictor.runtime
        if fmt == "onnx":
            # The ONNX graph is size-agnostic: check a second size as well.
            h = x.shape[1] // 2 // 32 * 32 or x.shape[1] + 32
            other = synthetic_images(1, h, seed=1).astype(np.float32)
            reference = np.concatenate([reference.reshape(-1),
                                        keras_predictor(other).reshape(-1)])
            got = np.concatenate([got.reshape(-1), predictor(other).reshape(-1)])
    diff = np.abs(np.asarray(got, np.float64).reshape(-1)
                  - np.asarray(reference, np.float64).reshape(-1))
    return CheckResult(runtime=runtime, images=len(images), image_source=source,
                       max_abs=float(diff.max()), mean_abs=float(diff.mean()),
                       tolerance=TOLERANCES[(fmt, quantize)], time_per_image_s=seconds,
                       keras_time_per_image_s=keras_time)

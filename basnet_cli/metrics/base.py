"""What every measure shares: the accumulator protocol and the F-beta combination."""

from __future__ import annotations

from typing import Any

import numpy as np

from .sample import Sample, prepare


def f_beta(p: np.ndarray | float, r: np.ndarray | float, beta2: float) -> np.ndarray:
    """F-beta of precision and recall (``beta2`` is beta squared); 0 where ``p * r`` is 0."""
    p = np.asarray(p, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    num = (1 + beta2) * p * r
    den = np.where(num == 0, 1.0, beta2 * p + r)
    return num / den


class Metric:
    """Base of the accumulators.

    ``compute(sample)`` is pure (safe to call from worker threads) and returns this image's
    values: plain names are per-image scalars, names starting with ``_`` are curves kept only
    until ``add``. ``add(values)`` accumulates them (main thread) and returns the scalars.
    ``update(sample)`` and ``step(pred, gt)`` do both.
    """

    def step(self, pred: np.ndarray, gt: np.ndarray, normalize: bool = True) -> dict[str, float]:
        """Add one image (input conventions: :mod:`.sample`)."""
        return self.update(prepare(pred, gt, normalize))

    def update(self, sample: Sample) -> dict[str, float]:
        """Add one prepared image; returns this image's values (for per-image reports)."""
        return self.add(self.compute(sample))

    def compute(self, sample: Sample) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def add(self, values: dict[str, Any]) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError


def scalars(values: dict[str, Any]) -> dict[str, float]:
    """The per-image scalars of a ``compute`` result (curves, named ``_...``, left out)."""
    return {k: float(v) for k, v in values.items() if not k.startswith("_")}


class MeanOf(Metric):
    """A metric that is one number per image, averaged over images."""

    key = ""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, values: dict[str, Any]) -> dict[str, float]:
        self.total += values[self.key]
        self.count += 1
        return scalars(values)

    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def get_results(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

"""All measures together, fed from one prepared sample per image."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Metric, scalars
from .emeasure import EMeasure
from .fmeasure import FMeasure, WeightedFMeasure
from .mae import MAE
from .relaxed import RelaxedBoundaryFMeasure
from .sample import BETA2, THRESHOLDS, Sample, prepare
from .smeasure import SMeasure

METRIC_NAMES = ("mae", "max_f", "mean_f", "adaptive_f", "s_measure", "max_e", "mean_e",
                "adaptive_e", "weighted_f", "relaxed_f")


class MetricSuite:
    """Every measure of this package, fed from one prepared sample per image.

    ``step(pred, gt)`` returns the image's values (``mae``, ``max_f``, ``adaptive_f``,
    ``s_measure``, ``max_e``, ``adaptive_e``, ``weighted_f``, ``relaxed_f``); ``get_results()``
    gives the dataset numbers (``METRIC_NAMES``) plus curves.
    """

    def __init__(self, curve: str = "image", beta2: float = BETA2, rho: int = 3) -> None:
        self.mae = MAE()
        self.fm = FMeasure(beta2=beta2, curve=curve)
        self.sm = SMeasure()
        self.em = EMeasure()
        self.wfm = WeightedFMeasure()
        self.relax = RelaxedBoundaryFMeasure(rho=rho, beta2=beta2)
        self.curve = curve

    @property
    def count(self) -> int:
        return self.mae.count

    def _metrics(self) -> tuple[Metric, ...]:
        return (self.mae, self.fm, self.sm, self.em, self.wfm, self.relax)

    def compute(self, sample: Sample) -> dict[str, Any]:
        """All metrics' values for one image (pure: may run in a worker thread)."""
        out: dict[str, Any] = {}
        for metric in self._metrics():
            out.update(metric.compute(sample))
        return out

    def add(self, values: dict[str, Any]) -> dict[str, float]:
        """Accumulate :meth:`compute`'s values; returns the image's scalars."""
        for metric in self._metrics():
            metric.add(values)
        return scalars(values)

    def add_results(self, result: dict[str, Any]) -> None:
        """Add the sums behind another suite's :meth:`get_results` (``count``, ``metrics``,
        full-precision ``curves``; e.g. one shard's report), so that :meth:`get_results`
        covers the images of both, as if one suite had seen them all (to rounding)."""
        n = int(result["count"])
        if n <= 0:
            return
        values, curves = result["metrics"], result["curves"]
        for metric in (self.mae, self.sm, self.wfm, self.relax):
            metric.total += float(values[metric.key]) * n
            metric.count += n
        self.fm.p_total += np.asarray(curves["precision"], np.float64) * n
        self.fm.r_total += np.asarray(curves["recall"], np.float64) * n
        # the per-image F sums (a dataset-level F is recomputed from P and R instead)
        self.fm.f_total += np.asarray(curves["f"], np.float64) * n
        self.fm.adaptive_total += float(values["adaptive_f"]) * n
        self.fm.count += n
        self.em.curve_total += np.asarray(curves["e"], np.float64) * n
        self.em.adaptive_total += float(values["adaptive_e"]) * n
        self.em.count += n

    def update(self, sample: Sample) -> dict[str, float]:
        return self.add(self.compute(sample))

    def step(self, pred: np.ndarray, gt: np.ndarray, normalize: bool = True) -> dict[str, float]:
        return self.update(prepare(pred, gt, normalize))

    def get_results(self) -> dict[str, Any]:
        fm = self.fm.get_results()
        em = self.em.get_results()
        scalars = {
            "mae": self.mae.get_results()["mae"],
            "max_f": fm["max"],
            "mean_f": fm["mean"],
            "adaptive_f": fm["adaptive"],
            "s_measure": self.sm.get_results()["sm"],
            "max_e": em["max"],
            "mean_e": em["mean"],
            "adaptive_e": em["adaptive"],
            "weighted_f": self.wfm.get_results()["wfm"],
            "relaxed_f": self.relax.get_results()["relax_f"],
        }
        curves = {
            "thresholds": THRESHOLDS,
            "precision": fm["precision"],
            "recall": fm["recall"],
            "f": fm["curve"],
            "e": em["curve"],
        }
        return {"metrics": scalars, "curves": curves, "count": self.count}

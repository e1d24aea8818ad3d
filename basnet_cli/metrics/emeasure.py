"""E-measure, the enhanced-alignment measure (Fan et al., IJCAI 2018)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Metric, scalars
from .sample import EPS, N_THRESHOLDS, Sample

_PRED_FG = np.array([1.0, 1.0, 0.0, 0.0])  # binarised prediction of each E-measure part


def _e_from_counts(tp: np.ndarray | int, fp: np.ndarray | int, gt_count: int,
                   size: int) -> np.ndarray:
    """Enhanced-alignment measure from (TP, FP) counts of a binarised prediction (vectorised)."""
    tp = np.asarray(tp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    pred_fg = tp + fp
    pred_bg = size - pred_fg
    if gt_count == 0:
        total = pred_bg
    elif gt_count == size:
        total = pred_fg
    else:
        # the four parts (pred fg/bg x GT fg/bg) as rows: TP, FP, FN, TN
        fn = gt_count - tp
        numel = np.stack([tp, fp, fn, pred_bg - fn])
        mean_gt = gt_count / size
        shape = (4,) + (1,) * tp.ndim
        a = _PRED_FG.reshape(shape) - pred_fg / size  # demeaned prediction of each part
        b = np.array([1 - mean_gt, 0 - mean_gt, 1 - mean_gt, 0 - mean_gt]).reshape(shape)
        align = 2 * (a * b) / (a * a + b * b + EPS)
        align += 1
        total = (align * align / 4 * numel).sum(axis=0)  # parts added in order, as PySOD
    return total / (size - 1 + EPS)


class EMeasure(Metric):
    """E-measure (Fan et al., IJCAI 2018): adaptive, and mean/max of the per-image curves averaged
    over images (PySODMetrics' convention)."""

    def __init__(self) -> None:
        self.curve_total = np.zeros(N_THRESHOLDS)
        self.adaptive_total = 0.0
        self.count = 0

    def compute(self, sample: Sample) -> dict[str, Any]:
        tp, fp = sample.cumulative()
        atp, apos = sample.adaptive_counts()
        # the 256 thresholds and the adaptive one in one call (elementwise: same values)
        values = _e_from_counts(np.append(tp, atp), np.append(fp, apos - atp),
                                sample.gt_count, sample.size)
        curve = values[:N_THRESHOLDS]
        return {"max_e": float(curve.max()), "adaptive_e": float(values[-1]), "_e": curve}

    def add(self, values: dict[str, Any]) -> dict[str, float]:
        self.curve_total += values["_e"]
        self.adaptive_total += values["adaptive_e"]
        self.count += 1
        return scalars(values)

    def get_results(self) -> dict[str, Any]:
        if not self.count:
            nan = float("nan")
            return {"max": nan, "mean": nan, "adaptive": nan, "curve": self.curve_total}
        curve = self.curve_total / self.count
        return {"max": float(curve.max()), "mean": float(curve.mean()),
                "adaptive": self.adaptive_total / self.count, "curve": curve}

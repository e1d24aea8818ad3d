"""Salient-object-detection metrics, streaming and vectorised, with PySODMetrics' conventions.

Every metric is a small accumulator in the PySODMetrics style: ``step(pred, gt)`` once per image,
``get_results()`` at the end. Only running sums are kept (never the maps, never per-image curves),
so memory does not grow with the dataset.

Input conventions (identical to ``py_sod_metrics`` with ``normalize=True``):

* ``pred`` as ``uint8`` 0..255 (a saved map): divided by 255, then min-max normalised per image
  when it is not constant (MATLAB's ``mapminmax(im2double(.))``).
* ``pred`` as float in [0, 1] (a model output in memory): first quantised with :func:`to_uint8`
  (round to nearest, exactly what saving it as an 8-bit PNG does), then as above. So evaluating in
  memory gives the same numbers as saving the maps and scoring the PNGs.
* ``gt`` as ``uint8``: foreground where ``gt > 128``; float [0, 1]: where ``round(gt*255) > 128``;
  ``bool``: as is.
* With ``normalize=False`` (as in PySODMetrics) ``pred`` must be float in [0, 1] and ``gt`` bool;
  they are used unchanged.

Threshold curves have 256 entries ordered by **ascending** threshold ``t = 0..255``: entry ``t``
binarises the prediction at ``floor(pred*255) >= t`` (PySODMetrics stores the same curve reversed,
threshold 255 first). The adaptive threshold is ``min(2 * mean(pred), 1)`` applied to the
normalised float prediction with ``>=``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

EPS = float(np.spacing(1))  # MATLAB's eps, as PySODMetrics uses it
BETA2 = 0.3
N_THRESHOLDS = 256
THRESHOLDS = np.arange(N_THRESHOLDS) / 255.0  # threshold t/255 on the normalised prediction

_LEVELS = np.arange(256, dtype=np.float64) / 255.0


def to_uint8(pred: np.ndarray) -> np.ndarray:
    """Quantise a float map in [0, 1] to uint8 0..255 (round to nearest; clipped).

    uint8 input is returned unchanged; bool input maps to 0/255.
    """
    arr = np.asarray(pred)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * np.uint8(255)
    out = np.rint(np.clip(arr.astype(np.float32, copy=False), 0.0, 1.0) * 255.0)
    return out.astype(np.uint8)


def binarize_gt(gt: np.ndarray) -> np.ndarray:
    """Ground truth to bool with PySODMetrics' rule ``gt > 128`` on the 0..255 scale."""
    arr = np.asarray(gt)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype == bool:
        return arr
    if arr.dtype == np.uint8:
        return arr > 128
    if np.issubdtype(arr.dtype, np.integer):
        return arr > 128
    return np.rint(arr.astype(np.float64) * 255.0) > 128


@dataclass
class Sample:
    """One prepared (pred, gt) pair, shared by all metrics so that the work is done once.

    ``pred``: float64 normalised prediction in [0, 1]; ``gt``: bool; ``level``: uint8 histogram bin
    of each pixel (``floor(pred*255)``, PySODMetrics' ``(pred*255).astype(uint8)``);
    ``fg_hist``/``bg_hist``: per-level pixel counts inside / outside the ground truth.
    """

    pred: np.ndarray
    gt: np.ndarray
    level: np.ndarray
    fg_hist: np.ndarray
    bg_hist: np.ndarray
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return int(self.gt.size)

    @property
    def gt_count(self) -> int:
        return int(self.fg_hist.sum())

    def mean_pred(self) -> float:
        if "mean" not in self._cache:
            self._cache["mean"] = float(np.mean(self.pred))
        return self._cache["mean"]

    def adaptive_threshold(self) -> float:
        return min(2.0 * self.mean_pred(), 1.0)

    def adaptive_counts(self) -> tuple[int, int]:
        """(true positives, predicted positives) at the adaptive threshold."""
        if "adp" not in self._cache:
            binary = self.pred >= self.adaptive_threshold()
            tp = int(np.count_nonzero(binary & self.gt))
            self._cache["adp"] = (tp, int(np.count_nonzero(binary)))
        return self._cache["adp"]

    def cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        """(TP, FP) counts of ``level >= t`` for t = 0..255 (ascending threshold)."""
        if "cum" not in self._cache:
            tp = np.cumsum(self.fg_hist[::-1])[::-1]
            fp = np.cumsum(self.bg_hist[::-1])[::-1]
            self._cache["cum"] = (tp, fp)
        return self._cache["cum"]


def prepare(pred: np.ndarray, gt: np.ndarray, normalize: bool = True) -> Sample:
    """Normalise one pair exactly as PySODMetrics does and histogram it (vectorised)."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.ndim == 3:
        pred = pred[..., 0]
    if gt.ndim == 3:
        gt = gt[..., 0]
    if pred.shape != gt.shape:
        raise ValueError(f"Shape mismatch: prediction {pred.shape}, ground truth {gt.shape}")
    if normalize:
        q = to_uint8(pred)
        gt_b = binarize_gt(gt)
        lo, hi = int(q.min()), int(q.max())
        # Same float64 operations as PySODMetrics' prepare_data(), done on the 256 possible values
        # through a look-up table: the results are bit-identical.
        lut = _LEVELS
        if hi != lo:
            lut = (lut - lut[lo]) / (lut[hi] - lut[lo])
        level_lut = (lut * 255).astype(np.uint8)
        pred_f = lut[q]
        level = level_lut[q]
    else:
        if pred.dtype not in (np.float32, np.float64):
            raise TypeError(f"normalize=False needs a float prediction, got {pred.dtype}")
        if gt.dtype != bool:
            raise TypeError(f"Ground truth must be bool with normalize=False, got {gt.dtype}")
        pred_f = pred.astype(np.float64, copy=False)
        gt_b = gt
        level = (pred_f * 255).astype(np.uint8)
    joint = np.bincount((level.ravel().astype(np.intp) << 1) | gt_b.ravel(), minlength=512)
    joint = joint.reshape(256, 2)
    return Sample(pred=pred_f, gt=gt_b, level=level, fg_hist=joint[:, 1].copy(),
                  bg_hist=joint[:, 0].copy())


def _f_beta(p: np.ndarray | float, r: np.ndarray | float, beta2: float) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    num = (1 + beta2) * p * r
    den = np.where(num == 0, 1.0, beta2 * p + r)
    return num / den


class _Metric:
    """Base: ``step`` prepares the pair, ``update`` consumes a prepared :class:`Sample`."""

    def step(self, pred: np.ndarray, gt: np.ndarray, normalize: bool = True) -> None:
        self.update(prepare(pred, gt, normalize))

    def update(self, sample: Sample) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def per_image(self, sample: Sample) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_results(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


class MAE(_Metric):
    """Mean absolute error, per image then averaged over images."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0
        self.last = float("nan")

    def per_image(self, sample: Sample) -> float:
        return float(np.mean(np.abs(sample.pred - sample.gt)))

    def update(self, sample: Sample) -> None:
        self.last = self.per_image(sample)
        self.total += self.last
        self.count += 1

    def get_results(self) -> dict[str, Any]:
        return {"mae": self.total / self.count if self.count else float("nan")}


class FMeasure(_Metric):
    """F-measure (beta^2 = 0.3 by default) over 256 thresholds: max, mean, adaptive and curves.

    ``curve="image"`` (PySODMetrics, default): an F curve per image, averaged over images;
    ``max``/``mean`` are the max/mean of that averaged curve. ``curve="dataset"`` (classic MATLAB
    toolboxes): precision and recall curves averaged over images first, F computed from the mean
    curves. ``adaptive`` is the mean over images of F at ``min(2*mean(pred), 1)`` in both cases.
    ``beta2`` is beta squared (PySODMetrics' ``beta`` argument).
    """

    def __init__(self, beta2: float = BETA2, curve: str = "image") -> None:
        if curve not in ("image", "dataset"):
            raise ValueError(f"curve must be 'image' or 'dataset', got {curve!r}")
        self.beta2 = beta2
        self.curve = curve
        self.count = 0
        self.adaptive_total = 0.0
        self.f_total = np.zeros(N_THRESHOLDS)
        self.p_total = np.zeros(N_THRESHOLDS)
        self.r_total = np.zeros(N_THRESHOLDS)
        self.last = float("nan")
        self.last_adaptive = float("nan")

    def curves(self, sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-image (precision, recall, F) curves, ascending threshold."""
        tp, fp = sample.cumulative()
        pos = tp + fp
        precision = tp / np.where(pos == 0, 1, pos)
        recall = tp / max(sample.gt_count, 1)
        return precision, recall, _f_beta(precision, recall, self.beta2)

    def adaptive(self, sample: Sample) -> float:
        tp, pos = sample.adaptive_counts()
        if tp == 0:
            return 0.0
        p = tp / pos
        r = tp / sample.gt_count
        return float((1 + self.beta2) * p * r / (self.beta2 * p + r))

    def per_image(self, sample: Sample) -> float:
        """This image's max F over thresholds (for per-image reports)."""
        return float(self.curves(sample)[2].max())

    def update(self, sample: Sample) -> None:
        p, r, f = self.curves(sample)
        self.p_total += p
        self.r_total += r
        self.f_total += f
        self.last = float(f.max())
        self.last_adaptive = self.adaptive(sample)
        self.adaptive_total += self.last_adaptive
        self.count += 1

    def get_results(self) -> dict[str, Any]:
        n = max(self.count, 1)
        precision = self.p_total / n
        recall = self.r_total / n
        if self.curve == "image":
            f_curve = self.f_total / n
        else:
            f_curve = _f_beta(precision, recall, self.beta2)
        if self.count == 0:
            nan = float("nan")
            return {"max": nan, "mean": nan, "adaptive": nan, "curve": f_curve,
                    "precision": precision, "recall": recall, "thresholds": THRESHOLDS}
        return {
            "max": float(f_curve.max()),
            "mean": float(f_curve.mean()),
            "adaptive": self.adaptive_total / n,
            "curve": f_curve,
            "precision": precision,
            "recall": recall,
            "thresholds": THRESHOLDS,
        }

"""S-measure, the structure measure (Fan et al., ICCV 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import MeanOf
from .sample import EPS, Sample, Truth


def _s_object(x: np.ndarray) -> float:
    mean = float(np.mean(x))
    std = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    return 2 * mean / (mean * mean + 1 + std + EPS)


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    n = pred.size
    x = np.mean(pred)
    y = np.mean(gt)
    dx = pred - x
    dy = gt - y
    sigma_x = np.sum(dx * dx) / (n - 1 + EPS)
    sigma_y = np.sum(dy * dy) / (n - 1 + EPS)
    sigma_xy = np.sum(dx * dy) / (n - 1 + EPS)
    alpha = 4 * x * y * sigma_xy
    beta = (x * x + y * y) * (sigma_x + sigma_y)
    if alpha != 0:
        return float(alpha / (beta + EPS))
    return 1.0 if beta == 0 else 0.0


def s_measure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure (Fan et al., ICCV 2017) of a normalised float pred and a bool gt."""
    y = float(np.mean(gt))
    if y == 0:
        return float(1 - np.mean(pred))
    if y == 1:
        return float(np.mean(pred))
    # object-aware
    fg = _s_object(pred[gt]) * y
    bg = _s_object((1 - pred)[~gt]) * (1 - y)
    object_score = fg + bg
    # region-aware: split at the (rounded, MATLAB 1-based) foreground centroid
    quads = Truth(gt).quadrants()
    assert quads is not None
    gtf = gt.astype(np.float64)
    region_score = sum(_ssim(pred[r, c], gtf[r, c]) * wk
                       for (r, c), wk in zip(quads, _region_weights(gt.shape, quads)))
    return float(max(0.0, object_score * alpha + region_score * (1 - alpha)))


def _region_weights(shape: tuple[int, int], quads: list[tuple[slice, slice]]) -> list[float]:
    h, w = shape
    area = h * w
    cy, cx = quads[0][0].stop, quads[0][1].stop
    w_lt = cx * cy / area
    w_rt = cy * (w - cx) / area
    w_lb = (h - cy) * cx / area
    return [w_lt, w_rt, w_lb, 1 - w_lt - w_rt - w_lb]


def _s_object_counts(counts: np.ndarray, values: np.ndarray, n: int) -> float:
    """:func:`_s_object` of ``n`` pixels given as ``counts`` of each of ``values``."""
    mean = float(np.dot(counts, values)) / n
    if n > 1:
        d = values - mean
        std = float(np.sqrt(np.dot(counts, d * d) / (n - 1)))
    else:
        std = 0.0
    return 2 * mean / (mean * mean + 1 + std + EPS)


def _s_measure_counts(sample: Sample, alpha: float = 0.5) -> float:
    """:func:`s_measure` of a quantised sample, from its per-quadrant (value, GT) histograms."""
    assert sample.lut is not None and sample.quad_hist is not None
    n = sample.size
    count = sample.gt_count
    if count == 0:
        return float(1 - sample.mean_pred())
    if count == n:
        return float(sample.mean_pred())
    lut = sample.lut
    y = count / n
    fg = _s_object_counts(sample.qhist[:, 1], lut, count) * y
    bg = _s_object_counts(sample.qhist[:, 0], 1 - lut, n - count) * (1 - y)
    object_score = fg + bg
    # region-aware: SSIM of each quadrant from its histogram, all four at once
    quads = sample.truth.quadrants()
    assert quads is not None
    hist = sample.quad_hist.reshape(4, 256, 2).astype(np.float64)
    h_fg = hist[:, :, 1]
    h_all = hist[:, :, 0] + h_fg
    nk = h_all.sum(axis=1)
    ck = h_fg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = (h_all @ lut) / nk
        yk = ck / nk
        d = lut[None, :] - x[:, None]
        den = nk - 1 + EPS
        sigma_x = np.einsum("ij,ij,ij->i", h_all, d, d) / den
        sigma_y = (ck * (1 - yk) ** 2 + (nk - ck) * yk ** 2) / den
        fg_dev = np.einsum("ij,ij->i", h_fg, d)
        sigma_xy = (fg_dev * (1 - yk) - (np.einsum("ij,ij->i", h_all, d) - fg_dev) * yk) / den
        a = 4 * x * yk * sigma_xy
        b = (x * x + yk * yk) * (sigma_x + sigma_y)
        scores = np.where(a != 0, a / (b + EPS), np.where(b == 0, 1.0, 0.0))
    region_score = 0.0
    for k, ((r, c), wk) in enumerate(zip(quads, _region_weights(sample.truth.shape, quads))):
        score = float(scores[k])
        # Empty quadrant, or constant GT and constant map in it: PySODMetrics' result then hangs
        # on whether np.mean of the constant pixels rounds back to the constant; compute it so.
        if nk[k] == 0 or ((ck[k] == 0 or ck[k] == nk[k]) and np.count_nonzero(h_all[k]) == 1):
            score = _ssim(sample.pred[r, c], sample.gt[r, c].astype(np.float64))
        region_score += score * wk
    return float(max(0.0, object_score * alpha + region_score * (1 - alpha)))


class SMeasure(MeanOf):
    """S-measure (alpha = 0.5), per image then averaged."""

    key = "s_measure"

    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        self.alpha = alpha

    def compute(self, sample: Sample) -> dict[str, Any]:
        if sample.quantised:
            return {"s_measure": _s_measure_counts(sample, self.alpha)}
        return {"s_measure": s_measure(sample.pred, sample.gt, self.alpha)}

    def get_results(self) -> dict[str, Any]:
        return {"sm": self.mean()}

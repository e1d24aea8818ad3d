"""F-measure family: the thresholded F-measure (max, mean, adaptive, curves) and the weighted
F-measure (Margolin et al., CVPR 2014)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .base import MeanOf, Metric, f_beta, scalars
from .sample import BETA2, EPS, N_THRESHOLDS, THRESHOLDS, Sample, Truth


class FMeasure(Metric):
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

    def curves(self, sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-image (precision, recall, F) curves, ascending threshold."""
        tp, fp = sample.cumulative()
        precision = tp / np.maximum(tp + fp, 1)
        recall = tp / max(sample.gt_count, 1)
        num = (1 + self.beta2) * precision * recall
        den = self.beta2 * precision + recall
        den[num == 0] = 1
        return precision, recall, num / den

    def adaptive(self, sample: Sample) -> float:
        tp, pos = sample.adaptive_counts()
        if tp == 0:
            return 0.0
        p = tp / pos
        r = tp / sample.gt_count
        return float((1 + self.beta2) * p * r / (self.beta2 * p + r))

    def compute(self, sample: Sample) -> dict[str, Any]:
        p, r, f = self.curves(sample)
        return {"max_f": float(f.max()), "adaptive_f": self.adaptive(sample),
                "_p": p, "_r": r, "_f": f}

    def add(self, values: dict[str, Any]) -> dict[str, float]:
        self.p_total += values["_p"]
        self.r_total += values["_r"]
        self.f_total += values["_f"]
        self.adaptive_total += values["adaptive_f"]
        self.count += 1
        return scalars(values)

    def get_results(self) -> dict[str, Any]:
        n = max(self.count, 1)
        precision = self.p_total / n
        recall = self.r_total / n
        if self.curve == "image":
            f_curve = self.f_total / n
        else:
            f_curve = f_beta(precision, recall, self.beta2)
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


# --------------------------------------------------------------------------------------------
# Weighted F-measure (Margolin et al., CVPR 2014)


def _gauss_1d(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    m = (size - 1) / 2
    x = np.arange(-m, m + 1)
    h = np.exp(-(x * x) / (2 * sigma * sigma))
    return h / h.sum()


_GAUSS = _gauss_1d()


def _gauss_filter(img: np.ndarray) -> np.ndarray:
    """7x7 Gaussian (sigma 5) with zero padding, as MATLAB's ``imfilter(.., K)``.

    fspecial's kernel is the outer product of a normalised 1-D Gaussian with itself, so it is
    applied as two 1-D passes of scipy's ``correlate1d`` (equal to ``ndimage.convolve`` with the
    2-D kernel to ~1e-16, and much faster).
    """
    tmp = ndimage.correlate1d(img, _GAUSS, axis=1, mode="constant")
    return ndimage.correlate1d(tmp, _GAUSS, axis=0, mode="constant", output=tmp)


def _dilate7(mask: np.ndarray) -> np.ndarray:
    """Dilation by a 7x7 square (outside the image is background), as two 1-D passes."""
    h, w = mask.shape
    pad = np.zeros((h + 6, w + 6), dtype=bool)
    pad[3:3 + h, 3:3 + w] = mask
    rows = pad[:, 3:3 + w].copy()
    for i in (0, 1, 2, 4, 5, 6):
        rows |= pad[:, i:i + w]
    out = rows[3:3 + h].copy()
    for i in (0, 1, 2, 4, 5, 6):
        out |= rows[i:i + h]
    return out


def _feature_transform(feature: np.ndarray) -> np.ndarray:
    """scipy's nearest-feature-pixel indices, ``(2, H, W)`` int32, for the ``True`` pixels of
    ``feature`` (what ``distance_transform_edt(~feature, return_indices=True)`` returns)."""
    ft = np.empty((2,) + feature.shape, dtype=np.int32)
    try:  # the public function's own kernel, minus its int8 copy of the input
        ndimage._nd_image.euclidean_feature_transform((~feature).view(np.int8), None, ft)
    except (AttributeError, TypeError, RuntimeError):  # pragma: no cover - other scipy
        ft = ndimage.distance_transform_edt(~feature, return_distances=False, return_indices=True)
    return ft


def _wfm_truth(truth: Truth) -> tuple[Any, ...]:
    """The mask-only part of the weighted F-measure, cached on ``truth`` (needs a non-empty GT).

    ``(decay, box, band, source)``: ``decay`` is ``0.5^(dist/5)`` of every pixel, ``dist`` its
    Euclidean distance to the GT (the pixel importance off the GT is ``B = 2 - decay``); ``box``
    the GT's bounding box grown by 3 px (the 7x7 filtered error is only used on GT pixels, so
    only this box is filtered); ``band`` the flat box indices of the background pixels within
    3 px of the GT (the only ones the filter carries to GT pixels) and ``source`` the flat box
    index of each one's nearest GT pixel (scipy's ``distance_transform_edt`` tie rule), whose
    error it takes.
    """
    if "wfm" not in truth.cache:
        gt = truth.mask
        h, w = truth.shape
        rows = np.flatnonzero(truth.rows)
        cols = np.flatnonzero(truth.cols)
        r0, r1 = max(int(rows[0]) - 3, 0), min(int(rows[-1]) + 4, h)
        c0, c1 = max(int(cols[0]) - 3, 0), min(int(cols[-1]) + 4, w)
        box = (slice(r0, r1), slice(c0, c1))
        bw = c1 - c0
        g = gt[box]
        near = _dilate7(g)  # within 3 px (Chebyshev) of the GT
        near &= ~g
        band = np.flatnonzero(near)
        by, bx = np.divmod(band, bw)
        ft = _feature_transform(gt)
        at = (by + r0) * w + bx + c0  # flat image index of each band pixel
        source = (ft[0].ravel()[at] - r0) * bw + (ft[1].ravel()[at] - c0)
        dy, dx = ft[0], ft[1]
        dy -= np.arange(h, dtype=np.int32)[:, None]  # offsets to the nearest GT pixel
        dx -= np.arange(w, dtype=np.int32)[None, :]
        np.multiply(ft, ft, out=ft)
        d2 = np.add(dy, dx, out=dy)
        # dist = sqrt(d2), d2 an integer: the same float64 operations as PySODMetrics
        decay = np.sqrt(d2, dtype=np.float64)
        decay *= np.log(0.5) / 5
        np.exp(decay, out=decay)
        truth.cache["wfm"] = (decay, box, band, source)
    return truth.cache["wfm"]


def _weighted_f(bg_sum: float, bg_decayed: float, error_box: np.ndarray, truth: Truth,
                beta2: float = 1.0) -> float:
    """Weighted F-measure from sums over the error map ``E = |pred - gt|``: ``bg_sum`` of E off
    the GT, ``bg_decayed`` of ``E * decay`` off the GT (:func:`_wfm_truth`), and ``error_box``,
    E on the box (a fresh array, changed here). Needs a non-empty GT."""
    count = truth.count
    _, box, band, source = _wfm_truth(truth)
    # false positives: sum of E * B off the GT, B = 2 - decay (>= 1.13 there: no cancellation)
    fp_w = 2 * bg_sum - bg_decayed
    # GT pixels: min(E, EA), EA the 7x7 Gaussian of E where background pixels near the GT take
    # the error of their nearest GT pixel
    et = error_box.ravel()
    et[band] = et[source]
    ea = _gauss_filter(error_box)
    np.minimum(ea, error_box, out=ea)  # error_box == E on GT pixels
    fg_sum = float(np.sum(ea, where=truth.mask[box]))
    tp_w = count - fg_sum
    R = 1 - fg_sum / count
    P = tp_w / (tp_w + fp_w + EPS)
    return float((1 + beta2) * R * P / (R + beta2 * P + EPS))


def _weighted_f_of_error(error: np.ndarray, truth: Truth, beta2: float = 1.0) -> float:
    """Weighted F-measure of an error map ``|pred - gt|`` (0 for an empty GT)."""
    if truth.count == 0:
        return 0.0
    decay, box = _wfm_truth(truth)[:2]
    error_bg = np.where(truth.mask, 0.0, error)
    bg_decayed = float(np.einsum("i,i->", error_bg.ravel(), decay.ravel()))
    return _weighted_f(float(error_bg.sum()), bg_decayed, error[box].copy(), truth, beta2)


def weighted_f_measure(pred: np.ndarray, gt: np.ndarray, beta2: float = 1.0) -> float:
    """Weighted F-measure of a normalised float pred and a bool gt (0 for an empty gt).

    Same algorithm as PySODMetrics (MATLAB's WFb).
    """
    truth = Truth(np.asarray(gt, dtype=bool), normalize=False)
    return _weighted_f_of_error(np.abs(pred - truth.mask), truth, beta2)


class WeightedFMeasure(MeanOf):
    """Weighted F-measure (beta^2 = 1, 7x7 Gaussian sigma 5), per image then averaged."""

    key = "weighted_f"

    def __init__(self, beta2: float = 1.0) -> None:
        super().__init__()
        self.beta2 = beta2

    def compute(self, sample: Sample) -> dict[str, Any]:
        truth = sample.truth
        if not sample.quantised or truth.count == 0:
            return {"weighted_f": _weighted_f_of_error(sample.error(), truth, self.beta2)}
        assert sample.lut is not None and sample.code is not None
        lut, code = sample.lut, sample.code
        decay, box = _wfm_truth(truth)[:2]
        # sum of E * decay off the GT: decay summed per code, times E of each code (0 on the
        # GT); no image-sized error map
        per_code = np.bincount(code.ravel(), weights=decay.ravel(), minlength=sample.n_codes)
        bg_decayed = float(np.dot(per_code, sample.table(lut, np.zeros(256))))
        bg_sum = float(np.dot(sample.qhist[:, 0], lut))
        error_box = sample.table(lut, 1 - lut).take(code[box].astype(np.intp))  # |lut - 1|
        value = _weighted_f(bg_sum, bg_decayed, error_box, truth, self.beta2)
        return {"weighted_f": value}

    def get_results(self) -> dict[str, Any]:
        return {"wfm": self.mean()}


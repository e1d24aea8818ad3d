"""Relaxed boundary F-measure (BASNet, CVPR 2019)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import MeanOf, f_beta
from .sample import BETA2, Sample


def _shifted(mask: np.ndarray, offsets: list[tuple[int, int]], dilate: bool) -> np.ndarray:
    """Dilation (OR) or erosion (AND) over ``offsets``; outside the image is background."""
    r = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    h, w = mask.shape
    padded = np.zeros((h + 2 * r, w + 2 * r), dtype=bool)
    padded[r:r + h, r:r + w] = mask
    out = np.zeros_like(mask, dtype=bool) if dilate else np.ones_like(mask, dtype=bool)
    for dy, dx in offsets:
        view = padded[r + dy:r + dy + h, r + dx:r + dx + w]
        if dilate:
            out |= view
        else:
            out &= view
    return out


_SQUARE3 = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def boundary(mask: np.ndarray) -> np.ndarray:
    """``mask XOR erode(mask, 3x3)``; outside the image counts as background (zero padding)."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~_shifted(mask, _SQUARE3, dilate=False)


def _disk(rho: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(-rho, rho + 1) for dx in range(-rho, rho + 1)
            if dy * dy + dx * dx <= rho * rho]


def relaxed_boundary_f(pred_bin: np.ndarray, gt_bin: np.ndarray, rho: int = 3,
                       beta2: float = BETA2) -> tuple[float, float, float]:
    """(F, precision, recall) of the boundaries of two binary masks, with tolerance ``rho``.

    Relaxed precision: the fraction of predicted boundary pixels with a GT boundary pixel within
    Euclidean distance ``rho``; relaxed recall: the fraction of GT boundary pixels with a predicted
    boundary pixel within ``rho``. Both boundaries empty gives 1; only one empty gives 0.
    """
    pb = boundary(pred_bin)
    gb = boundary(gt_bin)
    n_p = int(np.count_nonzero(pb))
    n_g = int(np.count_nonzero(gb))
    if n_p == 0 and n_g == 0:
        return 1.0, 1.0, 1.0
    if n_p == 0 or n_g == 0:
        return 0.0, 0.0 if n_p else 1.0, 0.0 if n_g else 1.0
    disk = _disk(rho)
    precision = np.count_nonzero(pb & _shifted(gb, disk, dilate=True)) / n_p
    recall = np.count_nonzero(gb & _shifted(pb, disk, dilate=True)) / n_g
    f = float(f_beta(precision, recall, beta2))
    return f, float(precision), float(recall)


class RelaxedBoundaryFMeasure(MeanOf):
    """BASNet's relaxed boundary F-measure: prediction binarised at ``>= 0.5`` (after the usual
    normalisation), GT at ``> 128``; boundary = mask XOR its 3x3 erosion; tolerance ``rho`` = 3
    pixels (Euclidean); F per image with beta^2 = 0.3, averaged over images."""

    key = "relaxed_f"

    def __init__(self, rho: int = 3, beta2: float = BETA2) -> None:
        super().__init__()
        self.rho = rho
        self.beta2 = beta2

    def compute(self, sample: Sample) -> dict[str, Any]:
        if sample.quantised:
            assert sample.lut is not None
            binary = sample.per_pixel(sample.lut >= 0.5)
        else:
            binary = sample.pred >= 0.5
        f = relaxed_boundary_f(binary, sample.gt, self.rho, self.beta2)[0]
        return {"relaxed_f": f}

    def get_results(self) -> dict[str, Any]:
        return {"relax_f": self.mean()}

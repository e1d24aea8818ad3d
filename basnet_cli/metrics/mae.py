"""Mean absolute error."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import MeanOf
from .sample import Sample


class MAE(MeanOf):
    """Mean absolute error, per image then averaged over images."""

    key = "mae"

    def compute(self, sample: Sample) -> dict[str, Any]:
        if sample.quantised:
            assert sample.lut is not None
            qh = sample.qhist  # |pred - gt| is lut[q] off the GT, 1 - lut[q] on it
            total = float(np.dot(qh[:, 0], sample.lut)) + float(np.dot(qh[:, 1], 1 - sample.lut))
            return {"mae": total / sample.size}
        return {"mae": float(np.mean(np.abs(sample.pred - sample.gt)))}

    def get_results(self) -> dict[str, Any]:
        return {"mae": self.mean()}

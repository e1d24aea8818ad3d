"""What ``basnet evaluate`` produces: one :class:`MethodResult` per method (a ``--pred`` folder
or the model) inside an :class:`EvaluationRun`, and the conventions behind the numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from basnet_cli import metrics as M

# metrics.json's format; 2: full-precision curves, every file name, shard and merged_from (what
# merge_reports needs)
REPORT_FORMAT = 2


@dataclass
class MethodResult:
    """One method's numbers (a ``--pred`` folder or the model)."""

    name: str
    source: str
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    count: int = 0
    per_image: list[dict[str, Any]] = field(default_factory=list)
    # maps mode: GT stems without a map / maps without a GT;
    # model mode: images without a mask / masks without an image
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (stem, reason)
    resized: int = 0  # maps resized to their GT's size
    seconds: float = 0.0

    @property
    def maps_per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("nan")

    def finish(self, suite: M.MetricSuite, seconds: float) -> None:
        """Take the final numbers of ``suite``, which scored this method in ``seconds``."""
        out = suite.get_results()
        self.count = out["count"]
        self.metrics = out["metrics"]
        self.curves = out["curves"]
        self.seconds = seconds


@dataclass
class EvaluationRun:
    """Everything one ``basnet evaluate`` call produced."""

    mode: str  # "maps" | "model"
    dataset: str
    gt_dir: str
    curve: str
    methods: list[MethodResult]
    model: str | None = None
    size: int | None = None
    gt_count: int = 0
    seconds: float = 0.0
    shard: tuple[int, int] | None = None  # (K, N): only shard K of N was scored
    merged_from: list[str] = field(default_factory=list)  # report folders merged into this

    @property
    def evaluated(self) -> int:
        return sum(m.count for m in self.methods)

    @property
    def failures(self) -> int:
        return sum(len(m.failed) for m in self.methods)

    def conventions(self) -> dict[str, Any]:
        return conventions(self.curve)


def conventions(curve: str = "image") -> dict[str, Any]:
    """The conventions behind the numbers, for reports."""
    return {
        "pred": "uint8 maps / 255, then per-image min-max (PySODMetrics' normalize=True); float "
                "maps are first quantised to uint8 as `basnet predict` writes them",
        "gt": "binary, gt > 128",
        "f_beta2": M.BETA2,
        "thresholds": "256 (0..255 on the normalised map, pred >= t)",
        "f_curve": {"image": "per-image P/R/F curves averaged over images (PySODMetrics)",
                    "dataset": "P and R averaged over images, then F (classic toolboxes)"}[curve],
        "adaptive_threshold": "min(2 * mean(pred), 1) per image",
        "s_measure_alpha": 0.5,
        "weighted_f": "beta^2 = 1, 7x7 Gaussian sigma 5 (Margolin et al.)",
        "relaxed_f": "pred >= 0.5, boundary = mask XOR 3x3 erosion, rho = 3 px (Euclidean), "
                     "beta^2 = 0.3, per image then averaged (BASNet)",
        "resize": "maps of another size are resized to the GT size (bilinear)",
    }

"""Salient-object-detection metrics, streaming and vectorised, with PySODMetrics' conventions.

Every metric is a small accumulator in the PySODMetrics style: ``step(pred, gt)`` once per image,
``get_results()`` at the end. Only running sums are kept (never the maps, never per-image curves),
so memory does not grow with the dataset.

Modules: :mod:`.sample` (input conventions, :class:`Truth`, :class:`Sample`, :func:`prepare`:
the per-image histograms every measure reads), :mod:`.base` (the accumulator protocol),
:mod:`.mae`, :mod:`.fmeasure` (F-measure and weighted F-measure), :mod:`.emeasure`,
:mod:`.smeasure`, :mod:`.relaxed` (relaxed boundary F-measure) and :mod:`.suite`
(:class:`MetricSuite`, all of them from one sample per image).
"""

from __future__ import annotations

from .emeasure import EMeasure
from .fmeasure import FMeasure, WeightedFMeasure, weighted_f_measure
from .mae import MAE
from .relaxed import RelaxedBoundaryFMeasure, boundary, relaxed_boundary_f
from .sample import (
    BETA2,
    EPS,
    N_THRESHOLDS,
    THRESHOLDS,
    Sample,
    Truth,
    binarize_gt,
    prepare,
    to_uint8,
)
from .smeasure import SMeasure, s_measure
from .suite import METRIC_NAMES, MetricSuite

__all__ = [
    "BETA2",
    "EPS",
    "EMeasure",
    "FMeasure",
    "MAE",
    "METRIC_NAMES",
    "MetricSuite",
    "N_THRESHOLDS",
    "RelaxedBoundaryFMeasure",
    "SMeasure",
    "Sample",
    "THRESHOLDS",
    "Truth",
    "WeightedFMeasure",
    "binarize_gt",
    "boundary",
    "prepare",
    "relaxed_boundary_f",
    "s_measure",
    "to_uint8",
    "weighted_f_measure",
]

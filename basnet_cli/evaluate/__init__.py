"""``basnet evaluate``: score saliency maps against ground truth, streaming and in parallel.

Two modes: **maps** (:func:`evaluate_maps`: folders of saved maps, one per ``--pred``, against a
folder of ground-truth masks) and **model** (:func:`evaluate_model`: any ``--model`` of the
inference core run over a labelled dataset, its maps quantised as ``basnet predict`` writes
them, so both modes give the same numbers on the same maps).

Modules: :mod:`.options` (usage error, ``--curve``, mode selection, default report folder; no
NumPy), :mod:`.results` (:class:`EvaluationRun`, :class:`MethodResult`, conventions),
:mod:`.files` (listing, decoding, fitting maps, ``--shard``), :mod:`.maps`, :mod:`.model`,
:mod:`.merge` (:func:`merge_reports`: the reports of ``--shard K/N`` runs joined) and
:mod:`.speed` (metrics vs PySODMetrics, for ``make bench``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from basnet_cli.lazy import lazy_exports

# The public names and the module of each; imported on first use, so that the command line
# (which needs only .options) starts without NumPy.
_EXPORTS = {
    "options": ("CURVES", "Curve", "EvaluateUsageError", "Progress", "check_curve",
                "default_report_dir", "evaluation_mode"),
    "results": ("EvaluationRun", "MethodResult", "conventions"),
    "files": ("dataset_name", "fit_to", "list_files", "read_gray", "resolve_gt_dir"),
    "maps": ("evaluate_maps",),
    "model": ("evaluate_model",),
    "merge": ("MergedRun", "merge_reports"),
    "speed": ("benchmark",),
}
__all__ = [
    "CURVES", "Curve", "EvaluateUsageError", "EvaluationRun", "MergedRun", "MethodResult",
    "Progress", "merge_reports",
    "benchmark", "check_curve", "conventions", "dataset_name", "default_report_dir",
    "evaluate_maps", "evaluate_model", "evaluation_mode", "fit_to", "list_files", "read_gray",
    "resolve_gt_dir",
]

if TYPE_CHECKING:
    from basnet_cli.evaluate.files import (
        dataset_name,
        fit_to,
        list_files,
        read_gray,
        resolve_gt_dir,
    )
    from basnet_cli.evaluate.maps import evaluate_maps
    from basnet_cli.evaluate.merge import MergedRun, merge_reports
    from basnet_cli.evaluate.model import evaluate_model
    from basnet_cli.evaluate.options import (
        CURVES,
        Curve,
        EvaluateUsageError,
        Progress,
        check_curve,
        default_report_dir,
        evaluation_mode,
    )
    from basnet_cli.evaluate.results import EvaluationRun, MethodResult, conventions
    from basnet_cli.evaluate.speed import benchmark


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

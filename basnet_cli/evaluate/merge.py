"""Merging the reports of ``basnet evaluate --shard K/N`` runs (one per machine or array task)
into the report of the whole set.

Each shard's ``metrics.json`` keeps, per method, its image count, means and full-precision
curves: the sums behind them are added (:meth:`~basnet_cli.metrics.MetricSuite.add_results`),
so the merged numbers equal one run over every image to rounding. ``per_image.csv`` rows are
joined; missing/extra/unreadable files are joined (shards are disjoint by construction).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from basnet_cli import metrics as M
from basnet_cli.evaluate.options import EvaluateUsageError
from basnet_cli.evaluate.results import REPORT_FORMAT, EvaluationRun, MethodResult, conventions

_INT_COLUMNS = ("width", "height")


@dataclass
class _Shard:
    folder: Path
    data: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]]  # method -> per-image rows

    def method(self, name: str) -> dict[str, Any] | None:
        return next((m for m in self.data["methods"] if m["name"] == name), None)


def _read_rows(path: Path) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {"method": raw["method"], "name": raw["name"]}
            for key, value in raw.items():
                if key in ("method", "name") or value in (None, ""):
                    continue
                row[key] = int(value) if key in _INT_COLUMNS else float(value)
            rows.setdefault(row["method"], []).append(row)
    return rows


def _load(folder: Path) -> _Shard:
    where = f"--merge {folder}"
    if not folder.is_dir():
        raise EvaluateUsageError(f"{where}: not a folder")
    try:
        data = json.loads((folder / "metrics.json").read_text())
        rows = _read_rows(folder / "per_image.csv")
    except FileNotFoundError as exc:
        raise EvaluateUsageError(f"{where}: no {Path(exc.filename).name} (not a report "
                                 "folder of basnet evaluate)") from None
    except (ValueError, KeyError, OSError) as exc:
        raise EvaluateUsageError(f"{where}: unreadable report ({exc})") from None
    if data.get("report_format") != REPORT_FORMAT:
        raise EvaluateUsageError(f"{where}: made by an older basnet-cli (no full-precision "
                                 "curves); evaluate that shard again")
    if not data.get("shard"):
        raise EvaluateUsageError(f"{where}: not a --shard K/N report (a whole-set report has "
                                 "nothing to merge with)")
    return _Shard(folder, data, rows)


def _same(shards: Sequence[_Shard], key: str, what: str) -> Any:
    values = {json.dumps(s.data.get(key), sort_keys=True) for s in shards}
    if len(values) > 1:
        seen = ", ".join(f"{s.folder}: {s.data.get(key)!r}" for s in shards)
        raise EvaluateUsageError(f"--merge: the reports differ in {what} ({seen})")
    return shards[0].data.get(key)


def _merge_method(name: str, shards: Sequence[_Shard], curve: str) -> MethodResult:
    suite = M.MetricSuite(curve=curve)
    res: MethodResult | None = None
    seconds = 0.0
    seen: dict[str, Path] = {}
    for shard in shards:
        m = shard.method(name)
        if m is None:
            continue
        if res is None:
            res = MethodResult(name=name, source=m["source"])
        rows = shard.rows.get(name, [])
        if len(rows) != m["images"]:
            raise EvaluateUsageError(f"--merge {shard.folder}: per_image.csv has {len(rows)} "
                                     f"rows of {name}, metrics.json counts {m['images']}")
        for row in rows:
            if row["name"] in seen:
                raise EvaluateUsageError(
                    f"--merge: {name}: image {row['name']} is in {seen[row['name']]} and "
                    f"{shard.folder} (overlapping shards)")
            seen[row["name"]] = shard.folder
        if m["images"]:
            suite.add_results({"count": m["images"], "metrics": m["metrics"],
                               "curves": m["curves"]})
        res.per_image += rows
        res.missing += m["missing_files"]
        res.extra += m["extra_files"]
        res.failed += [(f["name"], f["reason"]) for f in m["failed_files"]]
        res.resized += m["resized"]
        seconds += m["seconds"]
    assert res is not None, name
    res.finish(suite, seconds)
    res.per_image.sort(key=lambda row: row["name"])
    for items in (res.missing, res.extra, res.failed):
        items.sort()
    return res


@dataclass
class MergedRun:
    """A merged run and the shards (K of N) that no report covered."""

    run: EvaluationRun
    absent_shards: list[int]


def merge_reports(folders: Sequence[str | Path]) -> MergedRun:
    """Join the report folders of ``basnet evaluate --shard K/N`` runs (see the module doc).

    Raises :class:`EvaluateUsageError` for a folder that is not such a report, reports of
    different runs (mode, dataset, size, curve, N or conventions), a shard given twice
    or an image in two reports.
    """
    if not folders:
        raise EvaluateUsageError("--merge: give the report folders of the shards")
    shards = [_load(Path(f)) for f in folders]
    mode = _same(shards, "mode", "mode (model / maps)")
    dataset = _same(shards, "dataset", "dataset")
    curve = _same(shards, "curve", "--curve")
    # the model's description names its file, whose path may differ between machines
    models = dict.fromkeys(str(s.data["model"]) for s in shards if s.data.get("model"))
    model = "; ".join(models) or None
    size = _same(shards, "size", "--size")
    if _same(shards, "conventions", "conventions") != conventions(curve):
        raise EvaluateUsageError("--merge: these reports were made with other metric "
                                 "conventions than this basnet-cli's; evaluate again")
    n = {s.data["shard"][1] for s in shards}
    if len(n) > 1:
        raise EvaluateUsageError(f"--merge: the reports split the set differently (N = "
                                 f"{', '.join(map(str, sorted(n)))})")
    total = n.pop()
    given: dict[int, Path] = {}
    for s in shards:
        k = s.data["shard"][0]
        if k in given:
            raise EvaluateUsageError(f"--merge: shard {k}/{total} is given twice ({given[k]} "
                                     f"and {s.folder})")
        given[k] = s.folder
    names: list[str] = []
    for s in shards:
        names += [m["name"] for m in s.data["methods"] if m["name"] not in names]
    methods = [_merge_method(name, shards, curve) for name in names]
    gt_dirs = sorted({s.data["gt"] for s in shards})
    run = EvaluationRun(mode=mode, dataset=dataset, gt_dir=", ".join(gt_dirs), curve=curve,
                        methods=methods, model=model, size=size,
                        gt_count=sum(s.data["gt_files"] for s in shards),
                        seconds=sum(s.data["seconds"] for s in shards),
                        merged_from=[str(s.folder) for s in shards])
    return MergedRun(run, [k for k in range(total) if k not in given])

"""Reports of ``basnet evaluate``: metrics.json, metrics.md, per_image.csv and PNG plots.

The plots are drawn with Pillow's ImageDraw (axes, grid, ticks, labels, legend), so no plotting
library is needed.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli import __version__
from basnet_cli.evaluate.results import REPORT_FORMAT, EvaluationRun, MethodResult

# (key, column title, higher is better)
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("max_f", "maxF", True),
    ("mean_f", "meanF", True),
    ("adaptive_f", "adpF", True),
    ("weighted_f", "wF", True),
    ("s_measure", "S", True),
    ("max_e", "maxE", True),
    ("mean_e", "meanE", True),
    ("adaptive_e", "adpE", True),
    ("relaxed_f", "relaxF", True),
    ("mae", "MAE", False),
)
PER_IMAGE_COLUMNS = ("method", "name", "width", "height", "mae", "max_f", "adaptive_f",
                     "s_measure", "max_e", "adaptive_e", "weighted_f", "relaxed_f")
LIST_LIMIT = 200  # names of missing/extra/failed files in --json's summary

PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (23, 190, 207), (188, 189, 34), (127, 127, 127))


# ---------------------------------------------------------------------------------------------
# JSON / Markdown / CSV


def _num(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, np.integer):
        return int(x)
    return x


def method_json(m: MethodResult, curves: bool = True) -> dict[str, Any]:
    """One method as JSON-ready data: with ``curves`` (the report file) its curves and every
    missing/extra/failed name; without (``--json``'s summary) at most ``LIST_LIMIT`` names."""
    limit = None if curves else LIST_LIMIT
    out: dict[str, Any] = {
        "name": m.name,
        "source": m.source,
        "images": m.count,
        "metrics": {k: _num(v) for k, v in m.metrics.items()},
        "missing": len(m.missing),
        "extra": len(m.extra),
        "failed": len(m.failed),
        "resized": m.resized,
        "seconds": round(m.seconds, 3),
        "maps_per_second": _num(round(m.maps_per_second, 2)) if m.count else None,
        "missing_files": m.missing[:limit],
        "extra_files": m.extra[:limit],
        "failed_files": [{"name": n, "reason": r} for n, r in m.failed[:limit]],
    }
    if curves and m.curves:
        # full precision: merge_reports adds shards' curves up to the numbers of one run
        out["curves"] = {k: [_num(float(v)) for v in np.asarray(arr)]
                         for k, arr in m.curves.items()}
    return out


def run_json(run: EvaluationRun, curves: bool = True) -> dict[str, Any]:
    """Everything about a run as JSON-ready data (``curves=False`` for a compact summary)."""
    return {
        "tool": f"basnet-cli {__version__}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": run.mode,
        "dataset": run.dataset,
        "gt": run.gt_dir,
        "gt_files": run.gt_count,
        "model": run.model,
        "size": run.size,
        "curve": run.curve,
        "shard": list(run.shard) if run.shard else None,
        "merged_from": run.merged_from,
        "report_format": REPORT_FORMAT,
        "conventions": run.conventions(),
        "seconds": round(run.seconds, 3),
        "methods": [method_json(m, curves) for m in run.methods],
    }


def markdown_table(run: EvaluationRun, digits: int = 3) -> str:
    """A Markdown table (one row per method, best value per column in bold when several)."""
    methods = [m for m in run.methods if m.count]
    head = "| Method | Images | " + " | ".join(t for _, t, _ in COLUMNS) + " |"
    sep = "|---|---:|" + "|".join("---:" for _ in COLUMNS) + "|"
    best: dict[str, float] = {}
    if len(methods) > 1:
        for key, _, higher in COLUMNS:
            vals = [m.metrics.get(key, float("nan")) for m in methods]
            vals = [v for v in vals if not math.isnan(v)]
            if vals:
                best[key] = max(vals) if higher else min(vals)
    rows = [head, sep]
    for m in methods:
        cells = []
        for key, _, _ in COLUMNS:
            v = m.metrics.get(key, float("nan"))
            text = "-" if math.isnan(v) else f"{v:.{digits}f}"
            if key in best and not math.isnan(v) and round(v, digits) == round(best[key], digits):
                text = f"**{text}**"
            cells.append(text)
        rows.append(f"| {m.name} | {m.count} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def method_notes(mode: str, m: MethodResult, names: int = 0) -> list[str]:
    """What to say about one method besides its metrics: unmatched files (the first ``names``
    of each kind listed by name), unreadable files, maps resized to the GT size."""
    if mode == "maps":
        missing_text, extra_text = "masks without a map", "maps without a mask"
    else:
        missing_text, extra_text = "images without a mask", "masks without an image"

    def listed(items: Sequence[str]) -> str:
        if not names:
            return ""
        return " (" + ", ".join(items[:names]) + (", ..." if len(items) > names else "") + ")"

    bits = []
    if m.missing:
        bits.append(f"{len(m.missing)} {missing_text}{listed(m.missing)}")
    if m.extra:
        bits.append(f"{len(m.extra)} {extra_text}{listed(m.extra)}")
    if m.failed:
        bits.append(f"{len(m.failed)} unreadable")
    if m.resized:
        bits.append(f"{m.resized} maps resized to the GT size")
    return bits


def markdown_report(run: EvaluationRun) -> str:
    lines = [f"# {run.dataset}: saliency metrics", ""]
    if run.mode == "model":
        lines.append(f"Model: `{run.model}`, input {run.size}x{run.size}; "
                     f"GT: `{run.gt_dir}`.")
    else:
        lines.append(f"Maps scored against `{run.gt_dir}` ({run.gt_count} masks).")
    if run.shard:
        lines.append(f"Shard {run.shard[0]}/{run.shard[1]} only (`--shard`).")
    if run.merged_from:
        lines.append(f"Merged from {len(run.merged_from)} reports: "
                     + ", ".join(f"`{p}`" for p in run.merged_from) + ".")
    lines += ["", markdown_table(run)]
    notes = []
    for m in run.methods:
        bits = method_notes(run.mode, m)
        if bits:
            notes.append(f"- {m.name}: " + ", ".join(bits))
    if notes:
        lines += ["Notes:", *notes, ""]
    curve = ("per-image curves averaged over images (PySODMetrics)" if run.curve == "image"
             else "precision and recall averaged over images, then F (classic toolboxes)")
    lines += [
        "Conventions: F-measure beta^2 = 0.3 over 256 thresholds, " + curve + "; adaptive "
        "threshold min(2 x mean, 1); wF beta^2 = 1; S-measure alpha 0.5; relaxed boundary F "
        "with rho = 3 px (BASNet); maps min-max normalised per image, GT binarised at > 128. "
        "MAE: lower is better; everything else: higher is better.",
        "",
    ]
    return "\n".join(lines)


def _sort_key(row: dict[str, Any]) -> tuple[float, float, str]:
    f = row.get("max_f", float("nan"))
    mae = row.get("mae", float("nan"))
    return (f if not math.isnan(f) else -1.0, -(mae if not math.isnan(mae) else 0.0),
            str(row.get("name", "")))


def write_per_image_csv(run: EvaluationRun, path: Path) -> None:
    """One row per (method, image), worst first within each method (lowest max F, then
    highest MAE), so failure cases are at the top."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=PER_IMAGE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for m in run.methods:
            for row in sorted(m.per_image, key=_sort_key):
                writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v)
                                 for k, v in row.items()})


# ---------------------------------------------------------------------------------------------
# Plots (Pillow)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def _text_size(draw: Any, text: str, font: Any) -> tuple[int, int]:
    box = draw.textbbox((0, 0), text, font=font)
    return box[2] - box[0], box[3] - box[1]


def line_plot(series: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, *,
              title: str, xlabel: str, ylabel: str,
              xlim: tuple[float, float] = (0.0, 1.0), ylim: tuple[float, float] = (0.0, 1.0),
              xticks: Sequence[float] | None = None, yticks: Sequence[float] | None = None,
              size: tuple[int, int] = (800, 600), legend_loc: str = "lower left") -> Path:
    """Draw ``(label, x, y)`` curves on one set of axes and save a PNG (Pillow only)."""
    from PIL import Image, ImageDraw

    width, height = size
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    f_small, f_label, f_title = _font(13), _font(15), _font(18)
    left, right, top, bottom = 80, 30, 50, 70
    x0, y0, x1, y1 = left, top, width - right, height - bottom  # plot box

    pad = 8  # the data range sits inside the frame, so curves at 0 or 1 stay visible

    def px(x: np.ndarray) -> np.ndarray:
        frac = (np.asarray(x, dtype=np.float64) - xlim[0]) / (xlim[1] - xlim[0])
        return x0 + pad + frac * (x1 - x0 - 2 * pad)

    def py(y: np.ndarray) -> np.ndarray:
        frac = (np.asarray(y, dtype=np.float64) - ylim[0]) / (ylim[1] - ylim[0])
        return y1 - pad - frac * (y1 - y0 - 2 * pad)

    xticks = list(xticks) if xticks is not None else list(np.linspace(*xlim, 6))
    yticks = list(yticks) if yticks is not None else list(np.linspace(*ylim, 6))
    grid = (228, 228, 228)
    for t in xticks:
        xp = float(px(t))
        draw.line([(xp, y0), (xp, y1)], fill=grid)
        draw.line([(xp, y1), (xp, y1 + 5)], fill=(0, 0, 0))
        label = f"{t:g}"
        tw, _ = _text_size(draw, label, f_small)
        draw.text((xp - tw / 2, y1 + 8), label, fill=(0, 0, 0), font=f_small)
    for t in yticks:
        yp = float(py(t))
        draw.line([(x0, yp), (x1, yp)], fill=grid)
        draw.line([(x0 - 5, yp), (x0, yp)], fill=(0, 0, 0))
        label = f"{t:g}"
        tw, th = _text_size(draw, label, f_small)
        draw.text((x0 - 9 - tw, yp - th / 2 - 3), label, fill=(0, 0, 0), font=f_small)
    draw.rectangle([x0, y0, x1, y1], outline=(0, 0, 0), width=1)
    tw, _ = _text_size(draw, title, f_title)
    draw.text(((x0 + x1) / 2 - tw / 2, 14), title, fill=(0, 0, 0), font=f_title)
    tw, _ = _text_size(draw, xlabel, f_label)
    draw.text(((x0 + x1) / 2 - tw / 2, height - 34), xlabel, fill=(0, 0, 0), font=f_label)
    tw, th = _text_size(draw, ylabel, f_label)
    ylab = Image.new("RGBA", (tw + 4, th + 8), (255, 255, 255, 0))
    ImageDraw.Draw(ylab).text((2, 0), ylabel, fill=(0, 0, 0, 255), font=f_label)
    ylab = ylab.rotate(90, expand=True)
    img.paste(ylab, (12, int((y0 + y1) / 2 - ylab.size[1] / 2)), ylab)

    # curves, clipped to the box
    plot = Image.new("RGBA", size, (255, 255, 255, 0))
    pdraw = ImageDraw.Draw(plot)
    for k, (_, xs, ys) in enumerate(series):
        xs = np.asarray(xs, dtype=np.float64)
        ys = np.asarray(ys, dtype=np.float64)
        ok = np.isfinite(xs) & np.isfinite(ys)
        pts = list(zip(px(xs[ok]).tolist(), py(ys[ok]).tolist()))
        color = PALETTE[k % len(PALETTE)] + (255,)
        if len(pts) > 1:
            pdraw.line(pts, fill=color, width=3, joint="curve")
        elif pts:
            pdraw.ellipse([pts[0][0] - 3, pts[0][1] - 3, pts[0][0] + 3, pts[0][1] + 3],
                          fill=color)
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle([x0 + 1, y0 + 1, x1 - 1, y1 - 1], fill=255)
    clipped = Image.new("RGBA", size, (255, 255, 255, 0))
    clipped.paste(plot, (0, 0), mask)
    img.paste(clipped, (0, 0), clipped)

    # legend
    if series:
        draw = ImageDraw.Draw(img)
        entries = [(label, PALETTE[k % len(PALETTE)]) for k, (label, _, _) in enumerate(series)]
        line_h = 20
        text_w = max(_text_size(draw, label, f_small)[0] for label, _ in entries)
        box_w, box_h = text_w + 50, line_h * len(entries) + 10
        bx = x0 + 12 if "left" in legend_loc else x1 - 12 - box_w
        by = y1 - 12 - box_h if "lower" in legend_loc else y0 + 12
        draw.rectangle([bx, by, bx + box_w, by + box_h], fill=(255, 255, 255),
                       outline=(150, 150, 150))
        for k, (label, color) in enumerate(entries):
            ly = by + 5 + k * line_h + line_h / 2
            draw.line([(bx + 8, ly), (bx + 34, ly)], fill=color, width=3)
            _, th = _text_size(draw, label, f_small)
            draw.text((bx + 40, ly - th / 2 - 3), label, fill=(0, 0, 0), font=f_small)
    path = Path(path)
    img.save(path, format="PNG")
    return path


def plot_pr(run: EvaluationRun, path: str | Path) -> Path:
    series = [(f"{m.name} (maxF {m.metrics['max_f']:.3f})", m.curves["recall"],
               m.curves["precision"]) for m in run.methods if m.count]
    ticks = [round(0.1 * i, 1) for i in range(11)]
    return line_plot(series, path, title=f"Precision-recall: {run.dataset}", xlabel="Recall",
                     ylabel="Precision", xticks=ticks, yticks=ticks, legend_loc="lower left")


def plot_f_threshold(run: EvaluationRun, path: str | Path) -> Path:
    series = [(f"{m.name} (maxF {m.metrics['max_f']:.3f})", m.curves["thresholds"] * 255,
               m.curves["f"]) for m in run.methods if m.count]
    return line_plot(series, path, title=f"F-measure vs threshold: {run.dataset}",
                     xlabel="Threshold (0-255)", ylabel="F-measure (beta^2 = 0.3)",
                     xlim=(0, 255), xticks=[0, 32, 64, 96, 128, 160, 192, 224, 255],
                     yticks=[round(0.1 * i, 1) for i in range(11)], legend_loc="lower left")


# ---------------------------------------------------------------------------------------------


def write_reports(run: EvaluationRun, out_dir: str | Path) -> dict[str, Path]:
    """Write every report file into ``out_dir`` (created); returns ``{kind: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "metrics.json",
        "markdown": out / "metrics.md",
        "per_image": out / "per_image.csv",
        "pr_curve": out / "pr_curve.png",
        "f_threshold": out / "f_threshold.png",
    }
    tmp = paths["json"].with_name(".metrics.json.tmp")
    tmp.write_text(json.dumps(run_json(run), indent=2) + "\n")
    os.replace(tmp, paths["json"])
    paths["markdown"].write_text(markdown_report(run))
    write_per_image_csv(run, paths["per_image"])
    if any(m.count for m in run.methods):
        plot_pr(run, paths["pr_curve"])
        plot_f_threshold(run, paths["f_threshold"])
    else:
        del paths["pr_curve"], paths["f_threshold"]
    return paths

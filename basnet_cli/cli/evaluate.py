"""`basnet evaluate`: score a model on a labelled dataset, or saved maps against ground truth."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from basnet_cli.cli.app import (
    EXIT_FAILURES,
    EXIT_OK,
    EXIT_USAGE,
    app,
    console,
    err_console,
    error_exit,
    fail,
    interrupted,
    safe,
)
from basnet_cli.cli.choices import metavar, one_of
from basnet_cli.errors import UsageError
from basnet_cli.evaluate.options import Curve, default_report_dir, evaluation_mode
from basnet_cli.model.config import DEFAULT_PRESET, PUBLIC_PRESETS, size_help

_PRESETS = ", ".join(PUBLIC_PRESETS)
_SIZES = size_help()

_HELP = """Salient-object metrics: MAE, F-measure (max/mean/adaptive), weighted F, S-measure,
E-measure (max/mean/adaptive) and BASNet's relaxed boundary F-measure.

Model mode: basnet evaluate --data DUTS-TE [--model basnet-lite] [--save-maps DIR]

Maps mode:  basnet evaluate --pred maps/methodA --pred maps/methodB --gt DUTS-TE

Sharded:    basnet evaluate --data DUTS-TE --shard 0/4 --report r0   (one per task, K = 0..3)
            basnet evaluate --merge r0 --merge r1 --merge r2 --merge r3 --report all

Maps pair with masks by relative file stem; maps of another size are resized to the GT size;
masks without a map and maps without a mask are reported. Conventions are PySODMetrics'
(beta^2 = 0.3, 256 thresholds, per-image curves averaged; --curve dataset for the classic
dataset-level precision/recall). Reports (--report DIR): metrics.json, metrics.md,
per_image.csv (worst images first), pr_curve.png and f_threshold.png.

Exit codes: 0 success, 1 some files could not be read (or nothing could be evaluated, or
--merge lacks some shard's report), 2 usage error (bad options, no pairs, unknown model,
reports that do not belong together).
"""


class _RichProgress:
    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]evaluate"), BarColumn(), MofNCompleteColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TimeElapsedColumn(),
            console=err_console, transient=True,
        )
        self._task: Any = None

    @property
    def console(self) -> Any:
        return self._progress.console

    def start(self, total: int) -> None:
        self._task = self._progress.add_task("evaluate", total=total)
        self._progress.start()

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def stop(self) -> None:
        self._progress.stop()


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _print_summary(run: Any, report_paths: dict[str, Path] | None) -> None:
    from rich.table import Table

    from basnet_cli.report import COLUMNS, method_notes

    title = f"{run.dataset}: {run.mode} mode"
    if run.mode == "model":
        title += f" ({run.model}, {run.size}x{run.size})"
    # metrics as rows, methods as columns: fits a terminal for any usual number of methods
    # names and paths come from the user's files: never read them as Rich markup
    table = Table(title=safe(title), title_justify="left", header_style="bold")
    table.add_column("metric", no_wrap=True)
    for m in run.methods:
        table.add_column(safe(m.name), justify="right", no_wrap=True)
    for key, label, higher in COLUMNS:
        arrow = "" if higher else " (lower is better)"
        table.add_row(label + arrow, *(_fmt(m.metrics.get(key, float("nan")))
                                       for m in run.methods))
    table.add_row("images", *(str(m.count) for m in run.methods), end_section=False)
    console.print(table)
    for m in run.methods:
        bits = method_notes(run.mode, m, names=5)
        if bits:
            console.print(f"[yellow]{safe(m.name)}:[/] " + safe("; ".join(bits)),
                          highlight=False)
    speed = "; ".join(f"{m.name} {m.maps_per_second:.1f} maps/s" for m in run.methods if m.count)
    curve = "per-image curves" if run.curve == "image" else "dataset-level P/R"
    if run.merged_from:
        timing = f"merged from {len(run.merged_from)} reports ({run.seconds:.1f}s of scoring)"
    else:
        timing = f"{run.seconds:.1f}s ({speed})"
    console.print(safe(f"F: beta^2 0.3, {curve}; {timing}"), highlight=False)
    if report_paths:
        folder = next(iter(report_paths.values())).parent
        names = ", ".join(p.name for p in report_paths.values())
        console.print(safe(f"report: {folder}/ ({names})"), highlight=False)


@app.command("evaluate", help=_HELP)
def evaluate_command(
    data: Annotated[str | None, typer.Option(
        "--data", "-d", help="Model mode: a labelled dataset (DUTS <name>-Image/<name>-Mask "
                             "or images/ + masks/).", show_default=False)] = None,
    images: Annotated[str | None, typer.Option(
        "--images", help="Model mode with explicit folders: the photos (with --masks).",
        show_default=False)] = None,
    masks: Annotated[str | None, typer.Option(
        "--masks", help="Model mode with explicit folders: the masks (with --images).",
        show_default=False)] = None,
    model: Annotated[str, typer.Option(
        "--model", "-m", help="Model mode: a preset with bundled weights ("
                              + _PRESETS + "), a .weights.h5 or .keras file, or an exported "
                              ".tflite / .onnx file or SavedModel folder.")
    ] = DEFAULT_PRESET,
    size: Annotated[int | None, typer.Option(
        "--size", "-s", help="Model mode: network input side (multiple of 32); maps are "
                             "resized back to each mask's size. Default: the model's own ("
                             + _SIZES + ").", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1,
                                            help="Model mode: images per model call.")] = 4,
    tta: Annotated[bool, typer.Option(
        "--tta/--no-tta", help="Model mode: score what predict --tta writes, each photo and "
        "its mirror image averaged in logit space (about twice the model time). Default: one "
        "pass.")] = False,
    save_maps: Annotated[str | None, typer.Option(
        "--save-maps", help="Model mode: also write each 8-bit map (<stem>.png, mask size) "
                            "here; maps mode on them gives the same numbers.",
        show_default=False)] = None,
    pred: Annotated[list[str] | None, typer.Option(
        "--pred", "-p", help="Maps mode: a folder of saliency maps; repeat for a comparison "
                             "table.", show_default=False)] = None,
    gt: Annotated[str | None, typer.Option(
        "--gt", "-g", help="Maps mode: the ground-truth masks (a folder, or a dataset root).",
        show_default=False)] = None,
    name: Annotated[list[str] | None, typer.Option(
        "--name", "-n", help="Maps mode: a display name per --pred, in order (default: the "
                             "folder names).", show_default=False)] = None,
    curve: Annotated[Curve, typer.Option(
        "--curve", parser=one_of(Curve, "--curve"), metavar=metavar(Curve),
        help="image: per-image P/R/F curves averaged over images (PySODMetrics); "
             "dataset: P and R averaged over images first, then F (classic "
             "MATLAB toolboxes, Model Garden).")] = Curve.image,
    report: Annotated[str | None, typer.Option(
        "--report", "-r", help="Report folder (default: beside a --model file as "
                               "eval-<dataset>/, else ./eval-<dataset>[-<preset>]).",
        show_default=False)] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Write no report files.")
    ] = False,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-j", min=1,
        help="Scoring processes for --pred maps (decode + metrics), threads with --model "
             "(default: the CPUs this process may use, up to 8).",
        show_default=False)] = None,
    shard: Annotated[str | None, typer.Option(
        "--shard", metavar="K/N", help="Score only shard K of N (K from 0 to N-1, by a stable "
        "hash of each mask's relative name): N machines or array tasks each evaluate one, then "
        "--merge joins their reports.", show_default=False)] = None,
    merge: Annotated[list[str] | None, typer.Option(
        "--merge", help="Join the report folders of --shard K/N runs (repeat once per shard) "
                        "into one report, equal to a single run over all images.",
        show_default=False)] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the numbers as JSON on stdout (no table).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    from basnet_cli.evaluate import evaluate_maps, evaluate_model, merge_reports
    from basnet_cli.inputs import parse_shard

    try:
        mode = evaluation_mode(pred=pred, gt=gt, data=data, images=images, masks=masks,
                               merge=merge)
        shard_kn = parse_shard(shard)
        if mode == "merge" and shard_kn is not None:
            raise UsageError("--shard selects what a run scores; --merge joins finished runs")
        if tta and mode != "model":
            raise UsageError("--tta runs a model twice per photo: it belongs to model mode "
                             "(--data or --images/--masks); for maps, write them with "
                             "basnet predict --tta and score those")
    except UsageError as exc:
        raise error_exit(exc) from None

    show_progress = not quiet and err_console.is_terminal
    progress = _RichProgress() if show_progress else None
    line_console = progress.console if progress is not None else err_console

    def on_error(method: str, stem: str, reason: str) -> None:
        line_console.print(f"[red]unreadable:[/] {safe(method)}: {safe(reason)}",
                           highlight=False, soft_wrap=True)

    absent_shards: list[int] = []
    try:
        if mode == "merge":
            merged = merge_reports(merge or [])
            run, absent_shards = merged.run, merged.absent_shards
        elif mode == "maps":
            run = evaluate_maps(pred or [], gt or "", names=name or None, curve=curve.value,
                                workers=workers, progress=progress, on_error=on_error,
                                shard=shard_kn)
        else:
            run = evaluate_model(data, images=images, masks=masks, model=model, size=size,
                                 tta=tta, batch_size=batch_size, save_maps=save_maps,
                                 curve=curve.value,
                                 workers=workers, progress=progress, on_error=on_error,
                                 shard=shard_kn)
    except UsageError as exc:
        raise error_exit(exc) from None
    except KeyboardInterrupt as exc:
        raise interrupted(exc) from None

    report_paths = None
    if not no_report and run.evaluated:
        if report:
            out_dir = Path(report)
        elif mode == "merge":
            out_dir = default_report_dir("maps", run.dataset, model)  # ./eval-<dataset>
        else:
            out_dir = default_report_dir(run.mode, run.dataset, model)
            if shard_kn is not None:  # shards sharing a folder must not overwrite each other
                out_dir = out_dir.with_name(f"{out_dir.name}-shard{shard_kn[0]}of{shard_kn[1]}")
        from basnet_cli.report import write_reports

        try:
            report_paths = write_reports(run, out_dir)
        except OSError as exc:
            raise fail(safe(f"cannot write the report to {out_dir}: {exc}"), EXIT_USAGE) from None

    if json_out:
        from basnet_cli.report import run_json

        data_out = run_json(run, curves=False)
        data_out["report"] = ({k: str(v) for k, v in report_paths.items()}
                              if report_paths else None)
        typer.echo(json.dumps(data_out, indent=2))
    else:
        _print_summary(run, report_paths)

    if absent_shards:
        total = len(absent_shards) + len(run.merged_from)
        err_console.print(f"[yellow]incomplete:[/] no report of shard "
                          f"{', '.join(map(str, absent_shards))} of {total}: the numbers cover "
                          "only the shards given", highlight=False)
    if not run.evaluated:
        raise fail("nothing could be evaluated: every map or mask failed to load", EXIT_FAILURES)
    raise typer.Exit(EXIT_FAILURES if run.failures or absent_shards else EXIT_OK)

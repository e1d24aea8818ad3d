"""`basnet export`: Keras, SavedModel, TFLite/LiteRT, ONNX and TF.js exports, each checked."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from basnet_cli.cli.app import EXIT_FAILURES, app, console, err_console, error_exit, fail, safe
from basnet_cli.errors import BasnetError
from basnet_cli.export.formats import (
    ExportFormat,
    ExportUsageError,
    Quantization,
    parse_format,
    parse_quantize,
)
from basnet_cli.model.config import DEFAULT_PRESET, PUBLIC_PRESETS, size_help

if TYPE_CHECKING:
    from basnet_cli.export import ExportResult

_PRESETS = ", ".join(PUBLIC_PRESETS)
_SIZES = size_help()

_HELP = "\n\n".join([
    "Export a trained BASNet for servers, phones and browsers, and prove the export equal.",
    "Example: basnet export --model basnet-lite --format tflite --quantize int8 "
    "--calibration photos/ --size 320",
    "Every export is inference-only and self-contained: RGB 0..255 in, normalisation inside, "
    "the refined map out as a probability in [0, 1] (sigmoid included), named mask. "
    "keras: float32 [N, H, W, 3], all dynamic (H, W multiples of 32). "
    "savedmodel: serving_default, float32 [N, S, S, 3], batch dynamic, S = --size. "
    "tflite: [1, S, S, 3] float32 (uint8 with --quantize int8). "
    "onnx: float32 [N, H, W, 3], all dynamic (H, W multiples of 32). "
    "tfjs: graph model (model.json + shards), float32 [1, S, S, 3].",
    "--quantize: none (float32); float16 (half-size weights: tflite, onnx, tfjs); "
    "int8-dynamic (8-bit weights: tflite dynamic range, tfjs); int8 (8-bit weights and "
    "activations calibrated on --calibration DIR, a few hundred representative images: tflite "
    "full integer with uint8 input, onnx QDQ with float32 input).",
    "After writing, the export is loaded with its own runtime (TensorFlow, LiteRT, ONNX "
    "Runtime, Node.js + @tensorflow/tfjs), run on a few images (--check-images; default: the "
    "first ECSSD images in ../shared when present, else synthetic ones) and compared with the "
    "Keras model. The max and mean absolute differences must stay within the documented "
    "tolerance of the format and quantisation.",
    "Run exported .tflite, .onnx and SavedModel folders with basnet predict --model FILE.",
    "Exit codes: 0 exported and checked, 1 conversion failed or the check exceeded its "
    "tolerance (the file is kept for inspection) or its runtime is missing, 2 usage error.",
])

E = TypeVar("E", bound=Enum)


def _one_of(parse: Callable[[object], E]) -> Callable[[object], E]:
    """A Typer parser from the core's ``parse``: any case; a bad value is one ``error:`` line
    and exit 2, like every other bad option of this command."""
    def convert(value: object) -> E:
        try:
            return parse(value)
        except ExportUsageError as exc:
            raise error_exit(exc) from None

    return convert


def _choices(kind: type[Enum]) -> str:
    """The help's metavar: ``[a|b|c]``."""
    return "[" + "|".join(str(m.value) for m in kind) + "]"


@app.command("export", help=_HELP)
def export_command(
    model: Annotated[str, typer.Option(
        "--model", "-m", help="A preset with bundled weights ("
                              + _PRESETS + "), a .weights.h5 file or a .keras file.")
    ] = DEFAULT_PRESET,
    format: Annotated[ExportFormat, typer.Option(
        "--format", "-f", parser=_one_of(parse_format), metavar=_choices(ExportFormat),
        help="keras, savedmodel, tflite, onnx or tfjs.", show_default=False)
    ] = ...,  # type: ignore[assignment]
    quantize: Annotated[Quantization, typer.Option(
        "--quantize", parser=_one_of(parse_quantize), metavar=_choices(Quantization),
        help="none, float16, int8-dynamic or int8 (see above for what each format supports).")
    ] = Quantization.none,
    size: Annotated[int | None, typer.Option(
        "--size", "-s", help="Input side in pixels (multiple of 32): fixed in savedmodel, "
                             "tflite and tfjs; the check size for keras and onnx. Default: the "
                             "model's own (" + _SIZES + ").", show_default=False)] = None,
    out: Annotated[str | None, typer.Option(
        "--out", "-o", help="File (.keras, .tflite, .onnx) or folder (savedmodel, tfjs) to "
                            "write. Default: <model>[-<size>][-<quantize>].<ext> here.",
        show_default=False)] = None,
    preset: Annotated[str | None, typer.Option(
        "--preset", help="Architecture of a .weights.h5 --model whose file name does not start "
                         "with a preset name.", show_default=False)] = None,
    calibration: Annotated[str | None, typer.Option(
        "--calibration", help="Folder (or glob) of representative images for --quantize int8.",
        show_default=False)] = None,
    calibration_limit: Annotated[int, typer.Option(
        "--calibration-limit", min=1, help="Use at most this many calibration images "
                                           "(evenly spread over the sorted list).")] = 200,
    check_images: Annotated[list[str] | None, typer.Option(
        "--check-images", help="Images (files, folders, globs) to check the export on; "
                               "repeatable.", show_default=False)] = None,
    check_count: Annotated[int, typer.Option(
        "--check-count", min=1, help="How many images the check runs.")] = 4,
    check: Annotated[bool, typer.Option(
        "--check/--no-check", help="Reload and compare the export with the Keras model.")
    ] = True,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing --out.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the result as JSON on stdout.")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Show TensorFlow's and the converters' logs.")] = False,
) -> None:
    from basnet_cli.export import ExportOptions, run_export

    opts = ExportOptions(
        model=model, format=format, quantize=quantize, size=size, out=out,
        preset=preset, calibration=calibration, calibration_limit=calibration_limit,
        check=check, check_images=tuple(check_images or ()), check_count=check_count,
        overwrite=overwrite, verbose=verbose)

    def log(message: str) -> None:
        err_console.print(safe(message), highlight=False)

    try:
        result = run_export(opts, log=log)
    except BasnetError as exc:  # usage errors exit 2, a conversion that failed exits 1
        raise error_exit(exc) from None

    if json_out:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_result(result)
    problem = result.failure()
    if problem is not None:  # not checked, or beyond its tolerance: the file is kept
        raise fail(safe(problem), EXIT_FAILURES)
    raise typer.Exit(0)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def _print_result(r: ExportResult) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("wrote", safe(f"{r.path} ({r.format}, quantize {r.quantize})"))
    table.add_row("model", safe(r.model))
    table.add_row("size", _mib(r.bytes))
    table.add_row("input", safe(r.io))
    table.add_row("export time", f"{r.export_s:.1f} s (peak memory {r.peak_rss_bytes / 2**30:.2f} "
                                 f"GiB)")
    c = r.check
    if c is not None:
        status = "[green]pass[/]" if c.passed else "[red]FAIL[/]"
        table.add_row("check", safe(f"{c.images} images ({c.image_source}) on {c.runtime}"))
        limit_max = (f"max {c.tolerance.max_abs:g}" if c.tolerance.max_abs < 1
                     else "max not limited")
        table.add_row("difference", f"max {c.max_abs:.2e}, mean {c.mean_abs:.2e} (tolerance "
                                    f"{limit_max}, mean {c.tolerance.mean_abs:g}) {status}")
        table.add_row("time/image", f"{c.time_per_image_s * 1000:.1f} ms (Keras "
                                    f"{c.keras_time_per_image_s * 1000:.1f} ms)")
    elif r.check_error is None:
        table.add_row("check", "skipped (--no-check)")
    console.print(table)

"""`basnet predict`: folders of photos -> masks at the photos' own resolution."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from basnet_cli.cli.app import app, console, err_console, error_exit, interrupted, safe
from basnet_cli.cli.choices import metavar, one_of
from basnet_cli.errors import UsageError
from basnet_cli.inference import Device, Precision, Runtime
from basnet_cli.model.config import DEFAULT_PRESET, PUBLIC_PRESETS, size_help

_PRESETS = ", ".join(PUBLIC_PRESETS)
_SIZES = size_help()

_HELP = """Predict salient-object masks for files, folders and globs of photos.

Example: basnet predict ./photos --out ./masks

Outputs mirror the input sub-folders under --out, one PNG per input (<stem>.png; overlays
<stem>.jpg) at the photo's original width and height; with several --kind values each kind
gets its own sub-folder (--out/mask/..., --out/cutout/...). Two inputs with one stem
(a.jpg, a.png) keep their extension (a.jpg.png, a.png.png). Existing outputs are skipped, so
an interrupted run just restarts; every file is written under a temporary name and renamed.

Photos are shown to the model as viewers show them: EXIF orientation applied; grayscale,
palette, CMYK and 16-bit converted to 8-bit RGB; transparency composited on white.

Exit codes: 0 all inputs succeeded (or were skipped), 1 some inputs failed (one line each on
stderr, the run goes on), 2 usage error (no inputs, unknown model, unwritable --out).
"""


class _RichProgress:
    """start/advance/stop adapter around a Rich progress bar with images/s and ETA."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class _Speed(ProgressColumn):
            def render(self, task: Any) -> Text:
                speed = task.finished_speed or task.speed
                return Text(f"{speed:.1f} img/s" if speed else "- img/s", style="cyan")

        self._progress = Progress(
            TextColumn("[bold]predict"), BarColumn(), MofNCompleteColumn(), _Speed(),
            TextColumn("eta"), TimeRemainingColumn(), TimeElapsedColumn(),
            console=err_console, transient=False,
        )
        self._task: Any = None

    @property
    def console(self) -> Any:
        return self._progress.console

    def start(self, total: int) -> None:
        self._task = self._progress.add_task("predict", total=total)
        self._progress.start()

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def stop(self) -> None:
        self._progress.stop()


@app.command("predict", help=_HELP)
def predict_command(
    inputs: Annotated[list[str], typer.Argument(
        help="Image files, folders (searched recursively) and globs ('photos/*.jpg', quote it "
             "so the shell does not expand it). Folders and globs take .jpg .jpeg .png .bmp "
             ".webp .tif .tiff .gif files, hidden names skipped; a file named directly is "
             "always tried.", show_default=False)],
    out: Annotated[str, typer.Option(
        "--out", "-o", help="Output folder (created if missing). Must not be inside an input "
                            "folder unless --allow-inside-input.", show_default=False)],
    model: Annotated[str, typer.Option(
        "--model", "-m", help="A preset with bundled weights ("
                              + _PRESETS + "), a .weights.h5 or .keras file, or an exported "
                              ".tflite / .onnx file or SavedModel folder.")
    ] = DEFAULT_PRESET,
    preset: Annotated[str | None, typer.Option(
        "--preset", help="Architecture of a .weights.h5 --model whose file name does not start "
                         "with a preset name (otherwise each preset is tried).",
        show_default=False)] = None,
    kind: Annotated[list[str], typer.Option(
        "--kind", "-k", help="What to write, repeatable or comma-separated: mask (8-bit soft "
                             "map), binary (0/255 at --threshold), cutout (RGBA PNG, the mask "
                             "as alpha), overlay (the photo with the mask tinted red, for "
                             "eyeballing).")] = ["mask"],  # noqa: B006 - Typer needs a list
    normalize: Annotated[bool, typer.Option(
        "--normalize/--raw", help="--normalize: the official per-image min-max stretch "
        "(basnet_test.py) before x255. Default --raw writes probability x 255: a photo with "
        "no salient object stays dark instead of having its faintest response stretched to "
        "full white, values mean the same across images, and --threshold is a probability."
    )] = False,
    threshold: Annotated[float, typer.Option(
        "--threshold", "-t", min=0.0, max=1.0,
        help="Cut-off for --kind binary (after --normalize when given).")] = 0.5,
    size: Annotated[int | None, typer.Option(
        "--size", "-s", help="Network input side in pixels, a multiple of 32. Each photo is "
                             "resized to size x size, and the map back to the photo's size. "
                             "Default: the model's own (" + _SIZES + ").",
        show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1,
                                            help="Images per model call.")] = 8,
    recursive: Annotated[bool, typer.Option(
        "--recursive/--no-recursive", help="Search folders (and '**' in globs) recursively.")
    ] = True,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Rewrite outputs that exist (default: skip them, so a re-run "
                            "resumes).")] = False,
    allow_inside_input: Annotated[bool, typer.Option(
        "--allow-inside-input", help="Allow --out inside an input folder (the output folder "
                                     "is then excluded from the inputs; an output never "
                                     "replaces its own input).")] = False,
    shard: Annotated[str | None, typer.Option(
        "--shard", metavar="K/N", help="Process only shard K of N (K from 0 to N-1), chosen by "
        "a stable hash of each file's path relative to its input folder: N machines or "
        "array-job tasks split the work with no coordination, the same way on every re-run.",
        show_default=False)] = None,
    max_pixels: Annotated[int, typer.Option(
        "--max-pixels", min=0, help="Refuse images with more pixels than this (decompression-"
        "bomb guard; Pillow's default limit). 0: no limit.")] = 89_478_485,
    precision: Annotated[Precision, typer.Option(
        "--precision", parser=one_of(Precision, "--precision"), metavar=metavar(Precision),
        help="auto, float32, bfloat16 or float16. auto: bfloat16 on CPUs with "
        "AMX/AVX512-BF16, mixed float16 on GPUs, float32 otherwise.")] = Precision.auto,
    runtime: Annotated[Runtime, typer.Option(
        "--runtime", parser=one_of(Runtime, "--runtime"), metavar=metavar(Runtime),
        help="What runs a Keras model on the CPU: keras (at --precision), onnx (ONNX Runtime "
             "on the model's ONNX translation, float32; needs onnxruntime) or auto: the faster "
             "of the two on this machine, measured once per model, --size and --batch-size "
             "(runs of 64+ images; cached in ~/.cache/basnet-cli) and printed in the summary. "
             "Exported models always use their own runtime.")] = Runtime.auto,
    tta: Annotated[bool, typer.Option(
        "--tta/--no-tta", help="--tta: also run each photo's mirror image and average the two "
        "maps in logit space: better masks on all ten metrics of the DUTS-TR hold-out for the "
        "default model, at about twice the model time (any --model, exported ones too). "
        "Default: one pass.")] = False,
    device: Annotated[Device, typer.Option(
        "--device", parser=one_of(Device, "--device"), metavar=metavar(Device),
        help="auto (a GPU when TensorFlow sees one; several GPUs are used together), cpu or "
             "gpu.")] = Device.auto,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-j", min=1, help="Decode and encode threads (default: the CPUs this "
                                       "process may use).", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar and no summary (failed files are still listed "
                              "on stderr).")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print a JSON summary on stdout instead of the text one (with each "
                       "failure's path and reason).")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Show TensorFlow's log messages.")] = False,
) -> None:
    from basnet_cli.inputs import parse_shard
    from basnet_cli.outputs import parse_kinds
    from basnet_cli.predict import PredictOptions, run

    try:
        opts = PredictOptions(
            inputs=inputs, out=out, model=model, preset=preset, kinds=parse_kinds(kind),
            size=size, batch_size=batch_size, threshold=threshold, normalize=normalize,
            recursive=recursive, overwrite=overwrite, allow_inside_input=allow_inside_input,
            shard=parse_shard(shard), max_pixels=max_pixels, precision=precision.value,
            device=device.value, runtime=runtime.value, tta=tta, workers=workers,
            verbose=verbose,
        )
        show_progress = not quiet and err_console.is_terminal
        progress = _RichProgress() if show_progress else None
        line_console = progress.console if progress is not None else err_console

        def on_failure(failure: Any) -> None:
            line_console.print(f"[red]failed:[/] {safe(failure.line())}", highlight=False,
                               soft_wrap=True)

        summary = run(opts, on_failure=on_failure, progress=progress)
    except UsageError as exc:
        raise error_exit(exc) from None
    except KeyboardInterrupt as exc:
        raise interrupted(exc, "interrupted; finished files are kept, re-run to resume") from None

    if json_out:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    elif not quiet:
        speed = f", {summary.images_per_s:.1f} images/s" if summary.processed else ""
        style = "red" if summary.failed else "green"
        console.print(
            f"[{style}]{summary.processed} processed[/], {summary.skipped} skipped, "
            f"{summary.failed} failed in {summary.elapsed_s:.1f}s{speed} -> {safe(summary.out)}"
            + (f" (shard {summary.shard}, {summary.in_shard} of {summary.found} inputs)"
               if summary.shard else ""),
            highlight=False,
        )
        if summary.runtime:
            console.print(safe(f"model: {summary.model}; runtime: {summary.runtime}"),
                          highlight=False, style="dim")
    raise typer.Exit(summary.exit_code)

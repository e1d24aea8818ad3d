"""`basnet benchmark`: images/s of inference, end-to-end predict and training; peak RSS."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from basnet_cli.cli.app import (
    EXIT_FAILURES,
    app,
    console,
    err_console,
    error_exit,
    interrupted,
    safe,
)
from basnet_cli.cli.choices import metavar, one_of
from basnet_cli.errors import UsageError
from basnet_cli.inference import Device, Precision
from basnet_cli.model.config import DEFAULT_PRESET

_HELP = """Measure speed and memory on this machine: images/s and peak RSS.

Example: basnet benchmark --model basnet --size 320 --batch-size 4 --precision float32

Phases (each: --warmup calls, then --repeats timed runs; the median is reported):
inference (the model alone on a random batch, through the same traced function as predict),
predict (the real `basnet predict` path: decode, resize, infer, resize back, encode, write PNG
masks into a temporary folder; photos from --images, else synthetic 400x300 JPEGs) and train
(one Adam step of the 8-output model with the hybrid loss). Peak RSS is the process's, after
each phase. A preset without trained weights runs from a random initialisation: speed and
memory do not depend on the weights.

For the side-by-side table against the peers (keras-io network, PySODMetrics) run `make bench`.
"""


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value and abs(value) < 10 ** -digits:
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def _print(result: dict[str, Any]) -> None:
    from rich.table import Table

    m, s = result["model"], result["settings"]
    dev = result["device"]
    fw = result["framework"]
    versions = ", ".join(f"{k} {v}" for k, v in fw.items() if k != "backend")
    console.print(safe(f"device: {dev['device']} ({dev['name']}); Keras backend "
                         f"{fw['backend']} ({versions})"), highlight=False)
    params = f", {m['params'] / 1e6:.2f}M params" if m.get("params") else ""
    console.print(safe(f"model: {m['name']} ({m['precision']}{params}); weights: "
                         f"{m['weights']}"), highlight=False)
    table = Table(title=f"images/s: median of {s['repeats']} repeats after {s['warmup']} "
                        f"warm-up", title_justify="left", header_style="bold")
    for col in ("phase", "size", "batch", "images/s", "s/image", "min-max", "RSS MiB"):
        table.add_column(col, justify="left" if col == "phase" else "right", no_wrap=True)
    for name, row in result["results"].items():
        table.add_row(name, str(row.get("size", "")), str(row.get("batch_size", "")),
                      _fmt(row["images_per_s"]), _fmt(row["s_per_image"], 3),
                      f"{_fmt(row['min'])}-{_fmt(row['max'])}", _fmt(row["peak_rss_mib"], 0))
    console.print(table)
    console.print("inference: the model alone; predict: decode, infer, encode, write (the "
                  "basnet predict path); train: one optimiser step. RSS: the process's peak "
                  "after the phase.", highlight=False, style="dim")
    console.print(f"peak RSS {result['peak_rss_mib']:.0f} MiB; {result['elapsed_s']:.1f}s in all",
                  highlight=False)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {safe(note)}", highlight=False)


@app.command("benchmark", help=_HELP)
def benchmark_command(
    model: Annotated[str, typer.Option(
        "--model", "-m", help="A preset (bundled weights, else random init), a .weights.h5 or "
                              ".keras file, or an exported model predict can load.")
    ] = DEFAULT_PRESET,
    preset: Annotated[str | None, typer.Option(
        "--preset", help="Architecture of a .weights.h5 --model whose name does not say it.",
        show_default=False)] = None,
    size: Annotated[int, typer.Option("--size", "-s", help="Input side in pixels (multiple "
                                                            "of 32).")] = 320,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1,
                                            help="Images per model call.")] = 8,
    precision: Annotated[Precision, typer.Option(
        "--precision", parser=one_of(Precision, "--precision"), metavar=metavar(Precision),
        help="auto, float32, bfloat16 or float16 (auto as in predict).")] = Precision.auto,
    device: Annotated[Device, typer.Option(
        "--device", parser=one_of(Device, "--device"), metavar=metavar(Device),
        help="auto, cpu or gpu.")] = Device.auto,
    images: Annotated[str | None, typer.Option(
        "--images", help="Folder of photos for the predict phase (default: synthetic "
                         "400x300 JPEGs).", show_default=False)] = None,
    predict_images: Annotated[int | None, typer.Option(
        "--predict-images", min=0, help="Photos per predict run (default: steps x batch "
                                        "size; 0: every file in --images).",
        show_default=False)] = None,
    steps: Annotated[int, typer.Option("--steps", "-n", min=1,
                                       help="Timed batches (or training steps) per repeat.")
    ] = 5,
    warmup: Annotated[int, typer.Option("--warmup", min=0,
                                        help="Untimed calls first (tracing, allocation).")
    ] = 1,
    repeats: Annotated[int, typer.Option("--repeats", "-r", min=1,
                                         help="Timed repeats; the median is reported.")] = 3,
    min_seconds: Annotated[float, typer.Option(
        "--min-seconds", min=0.0, help="Each timed inference/train repeat runs at least this "
                                       "long (more batches than --steps if needed).")] = 0.0,
    train_size: Annotated[int | None, typer.Option(
        "--train-size", help="Training crop side (default: --size).", show_default=False)
    ] = None,
    train_batch_size: Annotated[int | None, typer.Option(
        "--train-batch-size", min=1, help="Training batch (default: --batch-size).",
        show_default=False)] = None,
    inference: Annotated[bool, typer.Option("--inference/--no-inference",
                                            help="Time the model alone.")] = True,
    predict: Annotated[bool, typer.Option("--predict/--no-predict",
                                          help="Time end-to-end predict.")] = True,
    train: Annotated[bool, typer.Option("--train/--no-train",
                                        help="Time a training step.")] = True,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-j", min=1, help="Predict's decode/encode threads (default: the CPUs "
                                       "this process may use).", show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON on "
                                                         "stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on "
                                                             "stderr.")] = False,
) -> None:
    from basnet_cli.benchmark import BenchmarkOptions, run_benchmark

    phases = [p for p, on in (("inference", inference), ("predict", predict), ("train", train))
              if on]
    opts = BenchmarkOptions(model=model, preset=preset, size=size, batch_size=batch_size,
                            precision=precision.value, device=device.value, images=images,
                            predict_images=predict_images, steps=steps, warmup=warmup,
                            repeats=repeats, min_seconds=min_seconds, train_size=train_size,
                            train_batch_size=train_batch_size, phases=phases, workers=workers)

    def log(line: str) -> None:
        if not quiet:
            err_console.print(f"[dim]{line}[/]", highlight=False)

    try:
        result = run_benchmark(opts, log=log).to_dict()
    except UsageError as exc:  # bad options, also --size of a fixed-size export
        raise error_exit(exc) from None
    except KeyboardInterrupt as exc:
        raise interrupted(exc) from None
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print(result)
    if result["skipped_inputs"]:  # measured, but some photos could not be read
        raise typer.Exit(EXIT_FAILURES)

"""`basnet convert`: official PyTorch checkpoint (.pth) -> Keras weights (.weights.h5)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from basnet_cli.cli.app import EXIT_USAGE, app, console, fail, safe

_HELP = "\n\n".join([
    "Convert the official BASNet PyTorch checkpoint into Keras weights.",
    "Example: basnet convert basnet.pth --out basnet.weights.h5",
    "CHECKPOINT is the state_dict of xuebinqin/BASNet (basnet.pth); a dict holding it under "
    "'state_dict' or 'model', and DataParallel 'module.' prefixes, are accepted. Every tensor "
    "must map onto the chosen preset (default: basnet, the paper's 87.1M-parameter design); "
    "unexpected or missing keys and shape mismatches are listed and nothing is written.",
    "Use the result with --model basnet.weights.h5 (a file named basnet.weights.h5 or "
    "basnet_*.weights.h5 is recognised as the basnet preset).",
    "Needs PyTorch: pip install 'basnet-cli\\[torch]' (or pip install torch==2.13.0, the CPU "
    "build).",
    "Exit codes: 0 converted, 2 usage error (missing file, PyTorch not installed, checkpoint "
    "does not fit the preset, bad --out).",
])

_NO_TORCH = (
    "`basnet convert` needs PyTorch to read .pth files: pip install 'basnet-cli[torch]' "
    "(or pip install torch==2.13.0 for the CPU build)."
)


@app.command("convert", help=_HELP)
def convert_command(
    checkpoint: Annotated[Path, typer.Argument(
        help="Official PyTorch checkpoint (.pth), e.g. basnet.pth.", show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Keras weights file to write; must end with .weights.h5.",
        show_default=False)],
    preset: Annotated[str, typer.Option(
        "--preset", "-p", help="Architecture the checkpoint is for.")] = "basnet",
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Show TensorFlow's logs.")] = False,
) -> None:
    """Convert the official BASNet PyTorch checkpoint into Keras weights."""
    from basnet_cli.model.config import PRESETS

    if preset not in PRESETS:
        raise fail(safe(f"unknown preset {preset!r}; known presets: {', '.join(PRESETS)}"))
    if not checkpoint.is_file():
        raise fail(safe(f"checkpoint {str(checkpoint)!r} not found"))
    if not out.name.endswith(".weights.h5"):
        raise fail(safe(f"--out must end with .weights.h5 (a Keras weights file), "
                          f"got {out.name!r}"))
    if out.exists() and out.is_dir():
        raise fail(safe(f"--out {str(out)!r} is a folder"))
    try:
        import torch  # noqa: F401  (optional dependency)
    except ImportError:
        raise fail(safe(_NO_TORCH), EXIT_USAGE) from None

    from basnet_cli.runtime import import_keras

    import_keras(verbose)
    from basnet_cli.model.convert import ConversionError, convert_checkpoint

    try:
        result = convert_checkpoint(checkpoint, out, preset)
    except ConversionError as exc:
        raise fail(safe(f"{checkpoint}: {exc}")) from None
    except OSError as exc:
        raise fail(safe(f"cannot write {out}: {exc}")) from None
    console.print(safe(
        f"converted {result.tensors} tensors ({result.parameters:,} parameters, preset "
        f"{result.preset}) -> {result.out}"), highlight=False)
    console.print(safe(f"use it with: basnet predict PHOTOS --model {result.out}"),
                  highlight=False)

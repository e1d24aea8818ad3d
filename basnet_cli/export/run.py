"""``basnet export`` without the command line: its options, output naming, the writer of each
format, the self-check, and the result."""

from __future__ import annotations

import os
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli.export.check import CheckResult, check_export
from basnet_cli.export.formats import (
    EXTENSIONS,
    FIXED_SIZE_FORMATS,
    FOLDER_FORMATS,
    FORMATS,
    QUANTIZATIONS,
    SUPPORTED,
    ExportError,
    ExportFormat,
    ExportUsageError,
    Quantization,
    describe_io,
)
from basnet_cli.export.images import calibration_images, check_images
from basnet_cli.export.keras_savedmodel import write_keras, write_savedmodel
from basnet_cli.export.onnx_translator import write_onnx
from basnet_cli.export.tfjs import write_tfjs_graph_model
from basnet_cli.export.tflite import tflite_bytes

# ---------------------------------------------------------------------------------------------
# Options and results.


@dataclass
class ExportOptions:
    """Everything ``basnet export`` takes (see ``basnet export --help``).  ``format`` and
    ``quantize`` are plain strings; :class:`ExportFormat` / :class:`Quantization` members given
    here are stored as their values."""

    model: str
    format: str | ExportFormat
    quantize: str | Quantization = "none"
    size: int | None = None  # None: the model's default (model.io.default_size)
    out: str | Path | None = None
    preset: str | None = None
    calibration: str | Path | None = None
    calibration_limit: int = 200
    check: bool = True
    check_images: Sequence[str] = ()
    check_count: int = 4
    overwrite: bool = False
    verbose: bool = False

    def __post_init__(self) -> None:
        for name in ("format", "quantize"):  # enum members: plain values
            value = getattr(self, name)
            if isinstance(value, Enum):
                setattr(self, name, value.value)

    def validate(self) -> None:
        """Check the options (an :class:`ExportUsageError` names the first bad one); no
        ``--size`` means the model's own input size."""
        if self.format not in FORMATS:
            raise ExportUsageError(f"--format must be one of {', '.join(FORMATS)}, "
                                   f"got {self.format!r}")
        if self.quantize not in QUANTIZATIONS:
            raise ExportUsageError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, "
                                   f"got {self.quantize!r}")
        if self.quantize not in SUPPORTED[self.format]:
            raise ExportUsageError(
                f"--format {self.format} supports --quantize "
                f"{', '.join(SUPPORTED[self.format])} (not {self.quantize})")
        if self.size is None:
            from basnet_cli.model.io import default_size

            self.size = default_size(self.model, self.preset)
        if self.size < 32 or self.size % 32:
            raise ExportUsageError(f"--size must be a positive multiple of 32, got {self.size}")
        if self.quantize == "int8":
            if self.calibration is None:
                raise ExportUsageError(
                    "--quantize int8 needs --calibration DIR: a few hundred representative "
                    "images to calibrate the activation ranges")
            if not Path(self.calibration).exists():
                raise ExportUsageError(f"--calibration {self.calibration}: not found")
        elif self.calibration is not None:
            raise ExportUsageError("--calibration is only used with --quantize int8")
        if self.calibration_limit < 1:
            raise ExportUsageError("--calibration-limit must be at least 1")
        if self.check_count < 1:
            raise ExportUsageError("--check-count must be at least 1")


@dataclass
class ExportResult:
    """What ``basnet export`` wrote, and its check."""

    format: str
    quantize: str
    path: str
    model: str
    size: int
    bytes: int
    io: str
    export_s: float
    peak_rss_bytes: int = 0
    check: CheckResult | None = None
    check_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.check_error is None and (self.check is None or self.check.passed)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.check is not None:
            data["check"]["passed"] = self.check.passed
        data["ok"] = self.ok
        return data

    def failure(self) -> str | None:
        """Why the export is not ``ok`` (not checked, or beyond its tolerance), or None."""
        if self.check_error is not None:
            return f"{self.path} was written but not checked: {self.check_error}"
        if self.check is not None and not self.check.passed:
            tol = self.check.tolerance
            return (f"{self.path} differs from the Keras model beyond the {self.format}/"
                    f"{self.quantize} tolerance (max {self.check.max_abs:.2e} > "
                    f"{tol.max_abs:g} or mean {self.check.mean_abs:.2e} > {tol.mean_abs:g}); "
                    f"the file is kept for inspection")
        return None


# ---------------------------------------------------------------------------------------------
# Output naming and placement.


def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def path_bytes(path: str | Path) -> int:
    """Size of a file, or of every file under a folder."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def model_stem(spec: str) -> str:
    """``basnet-lite`` for a preset or ``basnet-lite.weights.h5``; the file stem otherwise."""
    name = Path(spec).name
    for suffix in (".weights.h5", ".keras", ".h5"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def default_out(opts: ExportOptions) -> Path:
    """``<model>[-<size>][-<quantize>]<ext>`` in the current folder (size only where fixed)."""
    stem = model_stem(opts.model)
    if opts.format in FIXED_SIZE_FORMATS:
        stem += f"-{opts.size}"
    if opts.quantize != "none":
        stem += f"-{opts.quantize}"
    return Path(stem + EXTENSIONS[opts.format])


def _check_out(opts: ExportOptions) -> Path:
    out = Path(opts.out) if opts.out is not None else default_out(opts)
    if opts.format == "keras" and not out.name.endswith(".keras"):
        raise ExportUsageError(f"--out for --format keras must end with .keras, got {out.name}")
    if opts.format in ("tflite", "onnx") and out.suffix != EXTENSIONS[opts.format]:
        raise ExportUsageError(f"--out for --format {opts.format} must end with "
                               f"{EXTENSIONS[opts.format]}, got {out.name}")
    if out.exists() or out.is_symlink():
        if not opts.overwrite:
            raise ExportUsageError(f"{out} exists (pass --overwrite to replace it)")
        if out.is_symlink():
            raise ExportUsageError(f"{out} is a symlink; refusing to replace it")
        is_folder_format = opts.format in FOLDER_FORMATS
        if out.is_dir() != is_folder_format:
            kind = "a folder" if out.is_dir() else "a file"
            raise ExportUsageError(f"{out} is {kind}; refusing to replace it with a "
                                   f"{opts.format} export")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ExportUsageError(f"{parent} is not a folder")
    return out


def _install(tmp: Path, out: Path) -> None:
    """Move a finished export from its temporary name into place (replacing an old one)."""
    if out.exists():
        if out.is_dir():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
            return
    os.replace(tmp, out)


def _tmp_path(out: Path) -> Path:
    # A hidden sibling that keeps the real suffix (Keras insists on ".keras").
    return out.with_name(f".tmp-{os.getpid()}-{out.name}")


# ---------------------------------------------------------------------------------------------
# The export.


def _write(opts: ExportOptions, model: Any, path: Path, calibration: np.ndarray | None) -> None:
    """Write ``model`` as ``opts.format`` / ``opts.quantize`` to ``path``."""
    if opts.format == "keras":
        write_keras(model, path)
    elif opts.format == "savedmodel":
        write_savedmodel(model, path, opts.size)
    elif opts.format == "tflite":
        path.write_bytes(tflite_bytes(model, opts.size, opts.quantize, calibration,
                                      opts.verbose))
    elif opts.format == "onnx":
        write_onnx(model, path, opts.quantize, calibration, opts.verbose)
    else:
        write_tfjs_graph_model(model, path, opts.size, opts.quantize)


def load_model(opts: ExportOptions) -> tuple[Any, str]:
    """The float32 inference model for ``opts.model``; returns ``(model, description)``."""
    from basnet_cli.model.io import ModelSpecError, load_inference_model, loading, resolve
    from basnet_cli.runtime import import_keras

    try:
        source = resolve(opts.model, preset=opts.preset)
    except (ModelSpecError, ValueError) as exc:
        raise ExportUsageError(str(exc)) from None
    import_keras(opts.verbose)
    with loading(opts.model, "float32", ExportUsageError):
        model = load_inference_model(source)
    return model, source.describe()


def run_export(opts: ExportOptions, log: Callable[[str], None] | None = None, *,
               model: Any = None) -> ExportResult:
    """Export ``opts.model`` to ``opts.format`` and check the result.

    ``model``: the already loaded float32 inference model of ``opts.model`` (several exports of
    one model in a process load it once); loaded from ``opts.model`` when None.

    Raises :class:`ExportUsageError` (exit 2) for bad options and :class:`ExportError` (exit 1)
    when the conversion fails; a check that exceeds its tolerance is reported in the result.
    """
    opts.validate()
    out = _check_out(opts)
    if opts.format == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ExportUsageError("--format onnx needs the onnx package: "
                                   "pip install 'basnet-cli[export]'") from None
        if opts.quantize == "int8":
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                raise ExportUsageError("--format onnx --quantize int8 needs onnxruntime: "
                                       "pip install 'basnet-cli[export]'") from None
    images, source = (check_images(opts) if opts.check else (np.zeros((0,)), ""))
    calibration = calibration_images(opts) if opts.quantize == "int8" else None
    if calibration is not None and log:
        log(f"calibrating on {len(calibration)} images from {opts.calibration}")

    if model is None:
        model, description = load_model(opts)
    else:
        description = f"{opts.model} (given model)"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(out)
    t0 = time.perf_counter()
    try:
        _write(opts, model, tmp, calibration)
        _install(tmp, out)
    except (ExportError, ExportUsageError):
        raise
    except Exception as exc:  # noqa: BLE001 - converters raise anything
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise ExportError(f"{opts.format} conversion failed: {type(exc).__name__}: "
                          f"{first}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink()
    export_s = time.perf_counter() - t0
    io = describe_io(opts.format, opts.quantize, opts.size)
    result = ExportResult(format=opts.format, quantize=opts.quantize, path=str(out),
                          model=description, size=opts.size, bytes=path_bytes(out), io=io,
                          export_s=export_s)
    if opts.check:
        try:
            result.check = check_export(opts.format, opts.quantize, out, model, images, source,
                                        log=log)
        except ExportError as exc:
            result.check_error = str(exc)
    result.peak_rss_bytes = _peak_rss_bytes()
    return result

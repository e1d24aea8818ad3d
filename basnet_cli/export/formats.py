"""The export formats and quantisations: what each takes, its file name, its tolerance; the
export errors."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from basnet_cli.errors import RunFailure, UsageError


class ExportUsageError(UsageError):
    """Bad options (exit code 2)."""


class ExportError(RunFailure):
    """The conversion or its check could not be done (exit code 1)."""


class ExportFormat(str, Enum):
    """``--format``: what ``basnet export`` writes."""

    keras = "keras"
    savedmodel = "savedmodel"
    tflite = "tflite"
    onnx = "onnx"
    tfjs = "tfjs"


class Quantization(str, Enum):
    """``--quantize``: how the weights (and for int8, the activations) are stored."""

    none = "none"
    float16 = "float16"
    int8_dynamic = "int8-dynamic"
    int8 = "int8"


FORMATS = tuple(f.value for f in ExportFormat)
QUANTIZATIONS = tuple(q.value for q in Quantization)

_E = TypeVar("_E", ExportFormat, Quantization)


def _one_of(kind: type[_E], option: str, value: object) -> _E:
    """``value`` (any case) as a member of ``kind``; else :class:`ExportUsageError`."""
    if isinstance(value, kind):
        return value
    text = str(value).lower()
    try:
        return kind(text)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise ExportUsageError(f"{option} must be one of {choices}, got {text!r}") from None


def parse_format(value: object) -> ExportFormat:
    """``--format`` in any case, e.g. ``"TFLite"``; raises :class:`ExportUsageError`."""
    return _one_of(ExportFormat, "--format", value)


def parse_quantize(value: object) -> Quantization:
    """``--quantize`` in any case, e.g. ``"INT8"``; raises :class:`ExportUsageError`."""
    return _one_of(Quantization, "--quantize", value)


# Quantisations each format supports.
SUPPORTED: dict[str, tuple[str, ...]] = {
    "keras": ("none",),
    "savedmodel": ("none",),
    "tflite": ("none", "float16", "int8-dynamic", "int8"),
    "onnx": ("none", "float16", "int8"),
    "tfjs": ("none", "float16", "int8-dynamic"),
}

# What each quantisation means, per format (for --help and the README).
QUANTIZE_NOTES = {
    "none": "float32 weights and compute",
    "float16": "float16 weights (half the size), dequantised to float32 when loaded",
    "int8-dynamic": "int8 weights (a quarter of the size); TFLite: dynamic-range kernels, "
                    "activations quantised on the fly; TF.js: 8-bit affine weights dequantised "
                    "to float32 when loaded",
    "int8": "int8 weights and activations calibrated on --calibration images; TFLite: full "
            "integer (uint8 input, float32 output); ONNX: QDQ, per-channel weights, float32 "
            "input and output",
}

# Inputs and outputs of each format (S is --size).
FORMAT_IO = {
    "keras": "image float32 [N, H, W, 3] RGB 0..255; N, H, W dynamic (H, W multiples of 32) "
             "-> mask float32 [N, H, W, 1]",
    "savedmodel": "serving_default: image float32 [N, {S}, {S}, 3] RGB 0..255; N dynamic, "
                  "size fixed -> mask float32 [N, {S}, {S}, 1]",
    "tflite": "image float32 [1, {S}, {S}, 3] RGB 0..255 (uint8 with --quantize int8); fixed "
              "shape -> mask float32 [1, {S}, {S}, 1]",
    "onnx": "image float32 [N, H, W, 3] RGB 0..255; N, H, W dynamic (H, W multiples of 32) "
            "-> mask float32 [N, H, W, 1]",
    "tfjs": "graph model: image float32 [1, {S}, {S}, 3] RGB 0..255; fixed shape "
            "-> mask float32 [1, {S}, {S}, 1]",
}


def describe_io(fmt: str, quantize: str = "none", size: int | str = "S") -> str:
    """What the export of ``fmt``/``quantize`` at ``size`` takes and returns."""
    text = FORMAT_IO[fmt].format(S=size)
    if fmt == "tflite":
        if quantize == "int8":
            text = text.replace("image float32", "image uint8")
        text = text.replace(" (uint8 with --quantize int8)", "")
    return text


# File suffix (or folder name suffix) of each format's default output.
EXTENSIONS = {"keras": ".keras", "savedmodel": "_savedmodel", "tflite": ".tflite",
              "onnx": ".onnx", "tfjs": "_tfjs"}
# Formats written as a folder rather than a single file.
FOLDER_FORMATS = ("savedmodel", "tfjs")
# Formats whose input size is fixed at export time (so it is part of the default name).
FIXED_SIZE_FORMATS = ("savedmodel", "tflite", "tfjs")


@dataclass(frozen=True)
class Tolerance:
    """Largest accepted absolute difference to the Keras model (probabilities in [0, 1])."""

    max_abs: float
    mean_abs: float


# Tolerances per (format, quantisation), checked on every export.  Float32 runtimes differ from
# Keras only by summation order (measured <= 7e-6).  Quantisation moves the steep sigmoid edge of
# a trained map by a pixel here and there, so the max difference is large where the mean stays
# small.  Measured with the bundled basnet-lite (and an earlier checkpoint) at 320x320 on 8
# ECSSD images, max / mean: float16 0.026 / 7e-5; int8-dynamic 0.11 / 6e-4 (TF.js 8-bit weights
# 0.17 / 9e-4); full int8 0.66 / 3.5e-3 (ONNX 0.25 / 3.3e-3).  The mean is the accuracy guard
# (limits 5-15x above the measurements; a broken export, e.g. a wrong layout or a missing
# normalisation, is off by more than 0.1 on average); the max limit catches local damage and is
# not applied to full int8, where a single edge pixel may flip.  TFLite int8-dynamic quantises
# activations at run time, which moves the whole map of some photos: the ImageNet-encoder
# basnet-mobile at 224 gives 0.56 / 4.6e-3 on 16 ECSSD images (one photo 0.025 on average) while
# its DUTS-TR hold-out scores move by MAE +0.0001 and max F -0.0012 (model card), so its mean
# limit is 0.015 and its max limit is not applied either.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("keras", "none"): Tolerance(1e-5, 1e-6),
    ("savedmodel", "none"): Tolerance(1e-4, 1e-5),
    ("tflite", "none"): Tolerance(2e-3, 1e-4),
    ("tflite", "float16"): Tolerance(0.1, 1e-3),
    ("tflite", "int8-dynamic"): Tolerance(1.0, 0.015),
    ("tflite", "int8"): Tolerance(1.0, 0.03),
    ("onnx", "none"): Tolerance(2e-3, 1e-4),
    ("onnx", "float16"): Tolerance(0.1, 1e-3),
    ("onnx", "int8"): Tolerance(1.0, 0.03),
    ("tfjs", "none"): Tolerance(2e-3, 1e-4),
    ("tfjs", "float16"): Tolerance(0.1, 1e-3),
    ("tfjs", "int8-dynamic"): Tolerance(0.5, 5e-3),
}

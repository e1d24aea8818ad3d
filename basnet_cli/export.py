"""``basnet export``: a trained BASNet as Keras, SavedModel, TFLite/LiteRT, ONNX or TF.js.

Every export is inference-only and self-contained: it takes RGB 0..255, normalises inside (the
network's own ``rescale`` and ``imagenet_norm`` layers) and returns the refined map as a
probability in [0, 1] (sigmoid included).  What each format takes (see :data:`FORMAT_IO`):

=========== ======================================== =============================================
format      input                                    fixed / dynamic
=========== ======================================== =============================================
keras       ``image`` float32 [N, H, W, 3]           N, H, W dynamic (H, W multiples of 32)
savedmodel  ``image`` float32 [N, S, S, 3]           N dynamic; S = ``--size`` fixed
tflite      ``image`` float32 [1, S, S, 3]           all fixed; uint8 with ``--quantize int8``
onnx        ``image`` float32 [N, H, W, 3]           N, H, W dynamic (H, W multiples of 32), also
                                                     with ``--quantize int8`` (QDQ inside)
tfjs        ``image`` float32 [1, S, S, 3]           all fixed (graph model)
=========== ======================================== =============================================

The output is always ``mask`` float32 ``[N, H, W, 1]`` probabilities.

After writing, each export is loaded back with its own runtime (TensorFlow, LiteRT, ONNX
Runtime, Node.js with the npm ``@tensorflow/tfjs`` on its WebAssembly backend, no native
tfjs-node), run on a few images and compared with the Keras model; the export fails (exit 1)
when the max or mean absolute difference exceeds the tolerance of :data:`TOLERANCES` for its
format and quantisation.

ONNX is written by :func:`keras_to_onnx`, a direct layer-by-layer translation of the network
(no tf2onnx): height and width stay dynamic, and memory stays near three copies of the weights
on top of the loaded model (the paper preset: 2.8 GiB peak for the whole ``basnet export``, check
included, where tf2onnx needed 19-23 GB).  TF.js graph models are written by
:func:`write_tfjs_graph_model` from a frozen, Grappler-optimised TensorFlow graph: the
``tensorflowjs`` pip package requires tensorflow-decision-forests, which pins TensorFlow 2.19,
so it cannot be installed next to TensorFlow 2.21.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli import __version__

FORMATS = ("keras", "savedmodel", "tflite", "onnx", "tfjs")
QUANTIZATIONS = ("none", "float16", "int8-dynamic", "int8")

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


EXTENSIONS = {"keras": ".keras", "savedmodel": "_savedmodel", "tflite": ".tflite",
              "onnx": ".onnx", "tfjs": "_tfjs"}

TFJS_NPM_VERSION = "4.22.0"
ONNX_OPSET = 17


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
# not applied to full int8, where a single edge pixel may flip.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("keras", "none"): Tolerance(1e-5, 1e-6),
    ("savedmodel", "none"): Tolerance(1e-4, 1e-5),
    ("tflite", "none"): Tolerance(2e-3, 1e-4),
    ("tflite", "float16"): Tolerance(0.1, 1e-3),
    ("tflite", "int8-dynamic"): Tolerance(0.5, 5e-3),
    ("tflite", "int8"): Tolerance(1.0, 0.03),
    ("onnx", "none"): Tolerance(2e-3, 1e-4),
    ("onnx", "float16"): Tolerance(0.1, 1e-3),
    ("onnx", "int8"): Tolerance(1.0, 0.03),
    ("tfjs", "none"): Tolerance(2e-3, 1e-4),
    ("tfjs", "float16"): Tolerance(0.1, 1e-3),
    ("tfjs", "int8-dynamic"): Tolerance(0.5, 5e-3),
}


class ExportUsageError(ValueError):
    """Bad options (exit code 2)."""


class ExportError(RuntimeError):
    """The conversion or its check could not be done (exit code 1)."""


# ---------------------------------------------------------------------------------------------
# Options and results.


@dataclass
class ExportOptions:
    """Everything ``basnet export`` takes (see ``basnet export --help``)."""

    model: str
    format: str
    quantize: str = "none"
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

    def validate(self) -> None:
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
class CheckResult:
    """How the reloaded export compares with the Keras model."""

    runtime: str
    images: int
    image_source: str
    max_abs: float
    mean_abs: float
    tolerance: Tolerance
    time_per_image_s: float
    keras_time_per_image_s: float

    @property
    def passed(self) -> bool:
        return (self.max_abs <= self.tolerance.max_abs
                and self.mean_abs <= self.tolerance.mean_abs)


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


# ---------------------------------------------------------------------------------------------
# Helpers.


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
    if opts.format in ("savedmodel", "tflite", "tfjs"):
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
        is_folder_format = opts.format in ("savedmodel", "tfjs")
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
# Check images and calibration images.


def _shared_ecssd() -> Path:
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "ECSSD" / "images"


def synthetic_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` deterministic photo-like uint8 images: gradients, a few discs and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        img = c0 * (1 - yy[..., None]) + c1 * xx[..., None] * 0.5 + 30 * np.sin(
            6.28 * (xx + yy)[..., None] * rng.uniform(1, 4))
        for _ in range(rng.integers(1, 4)):
            cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.3)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            img[disc] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 6, img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def _image_paths(inputs: Sequence[str | Path]) -> list[Path]:
    from basnet_cli.predict import PredictUsageError, discover

    try:
        items, _ = discover([str(p) for p in inputs], recursive=True)
    except PredictUsageError as exc:
        raise ExportUsageError(str(exc)) from None
    return sorted((item.path for item in items), key=str)


def _load_images(paths: Sequence[Path], size: int, limit: int) -> tuple[np.ndarray, int]:
    """Decode up to ``limit`` of ``paths`` (evenly spread) at ``size``; returns (images, failed)."""
    from basnet_cli import images as imgs

    if len(paths) > limit:
        picks = np.linspace(0, len(paths) - 1, limit).round().astype(int)
        paths = [paths[i] for i in sorted(set(picks.tolist()))]
    arrays, failed = [], 0
    for path in paths:
        try:
            arr, _ = imgs.load_for_model(path, size)
        except Exception:  # noqa: BLE001 - a bad file is skipped, counted
            failed += 1
            continue
        arrays.append(arr)
    if not arrays:
        return np.zeros((0, size, size, 3), np.uint8), failed
    return np.stack(arrays), failed


def check_images(opts: ExportOptions) -> tuple[np.ndarray, str]:
    """The images the check runs on and where they come from.

    ``--check-images`` when given; else the first ECSSD images in ``../shared`` when present;
    else deterministic synthetic images.
    """
    if opts.check_images:
        paths = _image_paths(opts.check_images)
        images, failed = _load_images(paths[: opts.check_count * 4], opts.size, opts.check_count)
        if not len(images):
            raise ExportUsageError("--check-images: no decodable image found")
        return images, "--check-images"
    ecssd = _shared_ecssd()
    if ecssd.is_dir():
        paths = sorted(ecssd.glob("*.jpg"))[: opts.check_count]
        images, _ = _load_images(paths, opts.size, opts.check_count)
        if len(images):
            return images, f"ECSSD, {ecssd}"
    return synthetic_images(opts.check_count, opts.size), "synthetic"


def calibration_images(opts: ExportOptions) -> np.ndarray:
    paths = _image_paths([str(opts.calibration)])
    images, _failed = _load_images(paths, opts.size, opts.calibration_limit)
    if not len(images):
        raise ExportUsageError(f"--calibration {opts.calibration}: no decodable image found")
    return images


# ---------------------------------------------------------------------------------------------
# Writers.


def _serving_function(model: Any, shape: Sequence[int | None]) -> Any:
    from basnet_cli.runtime import import_tf

    tf = import_tf()
    return tf.function(lambda image: model(image, training=False),
                       input_signature=[tf.TensorSpec(list(shape), tf.float32, name="image")])


def write_keras(model: Any, out: Path) -> None:
    """The inference model as a ``.keras`` file (float32, any batch, H/W multiples of 32)."""
    model.save(out)


def write_savedmodel(model: Any, out: Path, size: int) -> None:
    """A SavedModel for TF Serving: ``serving_default`` maps ``image`` to ``mask``."""
    from basnet_cli.runtime import import_keras, import_tf

    keras, tf = import_keras(), import_tf()
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda image: {"mask": model(image, training=False)},
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="image")],
    )
    archive.write_out(str(out), verbose=False)


def tflite_bytes(model: Any, size: int, quantize: str,
                 calibration: np.ndarray | None = None, verbose: bool = False) -> bytes:
    """Convert with the TFLite (LiteRT) converter; ``[1, size, size, 3]`` input."""
    from basnet_cli.backends import quiet_native_output
    from basnet_cli.runtime import import_tf

    tf = import_tf()
    fn = _serving_function(model, [1, size, size, 3]).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if calibration is None or not len(calibration):
            raise ExportUsageError("--quantize int8 needs calibration images")

        def representative() -> Any:
            for image in calibration:
                yield [image[None].astype(np.float32)]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
    import warnings

    with quiet_native_output(not verbose), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


# --- ONNX ------------------------------------------------------------------------------------


class _OnnxBuilder:
    """Collects ONNX nodes and initialisers while walking the Keras graph (NCHW inside)."""

    def __init__(self, float16_weights: bool) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.float16 = float16_weights
        self._names: set[str] = set()

    def name(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def const(self, base: str, value: np.ndarray, *, weight: bool = False) -> str:
        """An initializer; big float weights are stored as float16 (plus a Cast) on request."""
        name = self.name(base)
        value = np.asarray(value)
        if weight and self.float16 and value.dtype == np.float32 and value.size > 1:
            stored = self.name(name + "_fp16")
            self.initializers.append(self.numpy_helper.from_array(value.astype(np.float16),
                                                                  stored))
            self.nodes.append(self.helper.make_node("Cast", [stored], [name], to=1,
                                                    name=self.name(name + "_cast")))
        else:
            self.initializers.append(self.numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: Sequence[str], base: str, **attrs: Any) -> str:
        out = self.name(base)
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out


def _np(variable: Any) -> np.ndarray:
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable, np.float32)


def _emit_layer(b: _OnnxBuilder, layer: Any, args: tuple, kwargs: dict) -> str:
    """ONNX nodes for one Keras layer; tensors are names, layout NCHW."""
    kind = type(layer).__name__
    name = layer.name
    x = args[0]
    fmt = getattr(layer, "data_format", "channels_last")
    if fmt not in (None, "channels_last"):
        raise ExportError(f"layer {name} ({kind}): data_format {fmt} is not supported")

    if kind == "Rescaling":
        scale = np.asarray(layer.scale, np.float32).reshape(-1)
        offset = np.asarray(layer.offset, np.float32).reshape(-1)
        y = b.node("Mul", [x, b.const(f"{name}_scale", scale.reshape(-1, 1, 1)
                                      if scale.size > 1 else scale.reshape(()))], name)
        if np.any(offset != 0):
            y = b.node("Add", [y, b.const(f"{name}_offset", offset.reshape(-1, 1, 1)
                                          if offset.size > 1 else offset.reshape(()))],
                       f"{name}_add")
        return y
    if kind == "Normalization":
        if getattr(layer, "invert", False):
            raise ExportError(f"layer {name}: inverted Normalization is not supported")
        from basnet_cli.runtime import import_keras

        eps = import_keras().backend.epsilon()
        mean = _np(layer.mean).reshape(-1)
        std = np.maximum(np.sqrt(_np(layer.variance).reshape(-1)), eps)
        scale = (1.0 / std).astype(np.float32).reshape(-1, 1, 1)
        shift = (-mean / std).astype(np.float32).reshape(-1, 1, 1)
        y = b.node("Mul", [x, b.const(f"{name}_scale", scale)], name)
        return b.node("Add", [y, b.const(f"{name}_shift", shift)], f"{name}_add")
    if kind == "Conv2D":
        if layer.groups != 1:
            raise ExportError(f"layer {name}: grouped convolutions are not supported")
        kernel = _np(layer.kernel).transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        return _emit_conv(b, layer, x, kernel, groups=1)
    if kind == "DepthwiseConv2D":
        kh, kw, channels, mult = (int(d) for d in layer.kernel.shape)
        # (kh, kw, C, mult) -> (C * mult, 1, kh, kw), one group per input channel.
        kernel = _np(layer.kernel).transpose(2, 3, 0, 1).reshape(channels * mult, 1, kh, kw)
        return _emit_conv(b, layer, x, kernel, groups=channels)
    if kind == "BatchNormalization":
        if layer.axis not in (-1, 3, [-1], [3]):
            raise ExportError(f"layer {name}: BatchNormalization axis {layer.axis} unsupported")
        n = int(_np(layer.moving_mean).shape[0])
        gamma = _np(layer.gamma) if layer.scale else np.ones(n, np.float32)
        beta = _np(layer.beta) if layer.center else np.zeros(n, np.float32)
        return b.node("BatchNormalization", [
            x, b.const(f"{name}_gamma", gamma, weight=True),
            b.const(f"{name}_beta", beta, weight=True),
            b.const(f"{name}_mean", _np(layer.moving_mean), weight=True),
            b.const(f"{name}_var", _np(layer.moving_variance), weight=True),
        ], name, epsilon=float(layer.epsilon))
    if kind == "ReLU":
        if layer.negative_slope or layer.threshold:
            raise ExportError(f"layer {name}: only a plain or capped ReLU is supported")
        if layer.max_value is not None:  # ReLU6 and the like
            return b.node("Clip", [x, b.const(f"{name}_min", np.array(0.0, np.float32)),
                                   b.const(f"{name}_max", np.array(float(layer.max_value),
                                                                    np.float32))], name)
        return b.node("Relu", [x], name)
    if kind == "Activation":
        return _emit_activation(b, getattr(layer.activation, "__name__", "?"), x, name)
    if kind == "Add":
        y = x[0]
        for i, other in enumerate(x[1:]):
            y = b.node("Add", [y, other], name if i == len(x) - 2 else f"{name}_{i}")
        return y
    if kind == "Concatenate":
        if layer.axis not in (-1, 3):
            raise ExportError(f"layer {name}: concatenation on axis {layer.axis} unsupported")
        return b.node("Concat", list(x), name, axis=1)
    if kind == "MaxPooling2D":
        attrs = {"kernel_shape": list(layer.pool_size), "strides": list(layer.strides)}
        if layer.padding == "same":
            attrs["auto_pad"] = "SAME_UPPER"  # TF "same": padding at the end, never counted
        return b.node("MaxPool", [x], name, **attrs)
    if kind == "ZeroPadding2D":
        (top, bottom), (left, right) = layer.padding
        pads = np.array([0, 0, top, left, 0, 0, bottom, right], np.int64)
        return b.node("Pad", [x, b.const(f"{name}_pads", pads)], name, mode="constant")
    if kind == "UpSampling2D":
        sh, sw = layer.size
        scales = b.const(f"{name}_scales", np.array([1, 1, sh, sw], np.float32))
        if layer.interpolation == "bilinear":  # tf.image.resize: half-pixel centres
            return b.node("Resize", [x, "", scales], name, mode="linear",
                          coordinate_transformation_mode="half_pixel")
        if layer.interpolation == "nearest":
            return b.node("Resize", [x, "", scales], name, mode="nearest",
                          coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        raise ExportError(f"layer {name}: {layer.interpolation} upsampling unsupported")
    if kind == "InputLayer":
        return x
    raise ExportError(f"layer {name} ({kind}) has no ONNX translation")


def _emit_conv(b: _OnnxBuilder, layer: Any, x: str, kernel: np.ndarray, groups: int) -> str:
    """One ONNX Conv (+ its activation) for a Keras Conv2D / DepthwiseConv2D; ``kernel`` is
    already in ONNX's (out, in / groups, kh, kw) layout."""
    name = layer.name
    inputs = [x, b.const(f"{name}_W", kernel, weight=True)]
    if layer.use_bias:
        inputs.append(b.const(f"{name}_B", _np(layer.bias), weight=True))
    kh, kw = kernel.shape[2:]
    attrs: dict[str, Any] = {"kernel_shape": [kh, kw], "strides": list(layer.strides),
                             "dilations": list(layer.dilation_rate),
                             **_same_padding(layer, kh, kw)}
    if groups != 1:
        attrs["group"] = groups
    y = b.node("Conv", inputs, name, **attrs)
    activation = getattr(layer.activation, "__name__", "linear")
    if activation != "linear":
        y = _emit_activation(b, activation, y, f"{name}_{activation}")
    return y


def _same_padding(layer: Any, kh: int, kw: int) -> dict[str, Any]:
    """ONNX padding attributes of a Keras convolution (TF "same": extra padding at the end)."""
    if layer.padding != "same":
        return {}
    if tuple(layer.strides) == (1, 1):
        dh, dw = layer.dilation_rate
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return {"pads": [th // 2, tw // 2, th - th // 2, tw - tw // 2]}
    return {"auto_pad": "SAME_UPPER"}


def _emit_activation(b: _OnnxBuilder, activation: str, x: str, name: str) -> str:
    ops = {"sigmoid": "Sigmoid", "relu": "Relu", "tanh": "Tanh", "linear": "Identity"}
    if activation not in ops:
        raise ExportError(f"{name}: activation {activation} has no ONNX translation")
    return b.node(ops[activation], [x], name)


def keras_to_onnx(model: Any, *, float16_weights: bool = False, opset: int = ONNX_OPSET,
                  check: bool = True) -> Any:
    """Translate a Keras functional BASNet into an ONNX ``ModelProto``, layer by layer.

    Input ``image`` float32 NHWC [N, H, W, 3] (N, H, W dynamic), one Transpose to NCHW, the
    layers, one Transpose back: output ``mask`` float32 [N, H, W, C].  Only the layers BASNet is
    built from are translated; anything else raises :class:`ExportError`.  ``check``: run the
    ONNX checker on the result (it serialises one more copy of the weights).
    """
    import onnx
    from onnx import TensorProto, helper

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError("ONNX export needs a single-input, single-output model")
    b = _OnnxBuilder(float16_weights)
    b._names.update({"image", "mask"})
    nchw = b.node("Transpose", ["image"], "to_nchw", perm=[0, 3, 1, 2])

    def call(layer: Any, *args: Any, **kwargs: Any) -> str:
        return _emit_layer(b, layer, args, kwargs)

    out = model._run_through_graph([nchw], call_fn=call)
    if isinstance(out, (list, tuple)):
        out = out[0]
    b.nodes.append(helper.make_node("Transpose", [out], ["mask"], perm=[0, 2, 3, 1],
                                    name="to_nhwc"))
    channels = int(model.outputs[0].shape[-1])
    graph = helper.make_graph(
        b.nodes, model.name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                       ["batch", "height", "width", 3])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT,
                                       ["batch", "height", "width", channels])],
        initializer=b.initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="basnet-cli", producer_version=__version__)
    proto.ir_version = min(proto.ir_version, 9)  # readable by older runtimes too
    helper.set_model_props(proto, {
        "input": describe_io("onnx"),
        "normalisation": "inside the model (x/255, ImageNet mean/std)",
    })
    if check:
        onnx.checker.check_model(proto)
    return proto


def write_onnx(model: Any, out: Path, quantize: str, calibration: np.ndarray | None = None,
               verbose: bool = False) -> None:
    """Write the ONNX translation to ``out`` and run the ONNX checker on the file.

    Peak memory is about three copies of the weights on top of the loaded model (the numpy
    arrays, the protobuf, its serialisation): 2.8 GiB in all for the paper preset.
    ``quantize="int8"``: static QDQ quantisation with ONNX Runtime, calibrated on
    ``calibration`` (see :func:`quantize_onnx_int8`).
    """
    import onnx

    proto = keras_to_onnx(model, float16_weights=quantize == "float16", check=False)
    if quantize == "int8":
        if calibration is None or not len(calibration):
            raise ExportUsageError("--quantize int8 needs calibration images")
        with tempfile.TemporaryDirectory(prefix="basnet-onnx-") as tmp:
            fp32 = Path(tmp) / "float32.onnx"
            onnx.save_model(proto, str(fp32))
            del proto
            quantize_onnx_int8(fp32, out, calibration, verbose=verbose)
    else:
        onnx.save_model(proto, str(out))
        del proto
    onnx.checker.check_model(str(out))


def quantize_onnx_int8(fp32: Path, out: Path, calibration: np.ndarray, *, chunk: int = 8,
                       verbose: bool = False) -> None:
    """Static int8 quantisation with ONNX Runtime: QDQ format, per-channel int8 weights, uint8
    activations from min/max calibration, ``chunk`` images at a time (ONNX Runtime keeps every
    intermediate tensor of a chunk in memory).  The input normalisation stays in float.

    ONNX Runtime's dynamic quantisation is not offered: it turns convolutions into
    ConvInteger, measured 7x slower than float32 here.
    """
    import logging

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    chunk = max(1, min(chunk, len(calibration)))
    images = calibration[: len(calibration) // chunk * chunk]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.set_range(0, len(images))

        def __len__(self) -> int:
            return len(images)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(images[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {"image": x[None].astype(np.float32)}

    root = logging.getLogger()
    level = root.level
    if not verbose:
        root.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="basnet-onnx-q-") as tmp:
            pre = Path(tmp) / "pre.onnx"
            # Symbolic shape inference cannot follow the dynamic Resize sizes; ONNX's own
            # shape inference and ORT's graph optimisations (BatchNorm folded into Conv) run.
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            graph = onnx.load(str(pre), load_external_data=False).graph
            keep_float = []  # the layout transpose and the normalisation, before the first Conv
            for node in graph.node:
                if node.op_type == "Conv":
                    break
                keep_float.append(node.name)
            del graph
            quantize_static(
                str(pre), str(out), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=keep_float, extra_options={"CalibStridedMinMax": chunk})
    finally:
        root.setLevel(level)


# --- TF.js -----------------------------------------------------------------------------------

_TFJS_CLEARED_FIELDS = (
    "tensor_content", "half_val", "float_val", "double_val", "int_val", "string_val",
    "scomplex_val", "int64_val", "bool_val", "resource_handle_val", "variant_val",
    "uint32_val", "uint64_val")
_TFJS_SHARD_BYTES = 4 * 1024 * 1024


def _frozen_graph(model: Any, size: int) -> tuple[Any, str, str, Any]:
    """Frozen, Grappler-optimised GraphDef of the model at ``[1, size, size, 3]``.

    Returns ``(graph_def, input_name, output_name, signature_def)``.
    """
    from basnet_cli.runtime import import_tf

    tf = import_tf()
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    from tensorflow.python.grappler import cluster as gcluster
    from tensorflow.python.grappler import tf_optimizer

    fn = _serving_function(model, [1, size, size, 3]).get_concrete_function()
    frozen = convert_variables_to_constants_v2(fn)
    graph = frozen.graph
    input_name = frozen.inputs[0].name
    output_name = frozen.outputs[0].name
    signature = meta_graph_pb2.SignatureDef()
    for key, tensor, target in (("image", frozen.inputs[0], signature.inputs),
                                ("mask", frozen.outputs[0], signature.outputs)):
        target[key].name = tensor.name
        target[key].dtype = tensor.dtype.as_datatype_enum
        target[key].tensor_shape.CopyFrom(tensor.shape.as_proto())
    graph_def = graph.as_graph_def()
    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph_def, graph=graph)
    meta.signature_def["serving_default"].CopyFrom(signature)
    meta.collection_def["train_op"].node_list.value.append(output_name.split(":")[0])
    config = config_pb2.ConfigProto()
    config.graph_options.rewrite_options.optimizers[:] = [
        "pruning", "constfold", "arithmetic", "dependency", "pruning", "constfold",
        "arithmetic", "dependency"]
    optimized = tf_optimizer.OptimizeGraph(config, meta, cluster=gcluster.Cluster())
    return optimized, input_name, output_name, signature


def _affine_uint8(data: np.ndarray) -> tuple[np.ndarray, float, float]:
    """TF.js's 8-bit affine weight quantisation (range nudged so 0 is exact)."""
    lo, hi = float(min(data.min(), 0.0)), float(max(data.max(), 0.0))
    if hi == lo:
        return np.zeros(data.shape, np.uint8), 1.0, lo
    scale = (hi - lo) / 255.0
    zero = round(-lo / scale)
    lo = -zero * scale
    q = np.clip(np.round((data - lo) / scale), 0, 255).astype(np.uint8)
    return q, scale, lo


def write_tfjs_graph_model(model: Any, out: Path, size: int, quantize: str) -> None:
    """A TF.js graph model folder (``model.json`` + 4 MiB ``group1-shard*.bin`` files).

    The same layout as ``tensorflowjs_converter --input_format tf_saved_model``: a frozen
    GraphDef as JSON, every ``Const`` node's value moved to the weight shards.  ``float16``
    stores float weights as float16; ``int8-dynamic`` stores conv kernels as 8-bit affine
    (uint8, min and scale per tensor); TF.js dequantises both to float32 when loading.
    """
    from google.protobuf.json_format import MessageToDict

    from basnet_cli.runtime import import_tf

    tf = import_tf()
    graph_def, _input_name, _output_name, signature = _frozen_graph(model, size)
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for node in graph_def.node:
        if node.op != "Const":
            continue
        value = tf.make_ndarray(node.attr["value"].tensor)
        entry: dict[str, Any] = {"name": node.name, "shape": list(value.shape)}
        if value.dtype == np.float32:
            entry["dtype"] = "float32"
            if quantize == "float16":
                value = value.astype(np.float16)
                entry["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
            elif quantize == "int8-dynamic" and value.ndim >= 2 and value.size >= 64:
                value, scale, lo = _affine_uint8(value)
                entry["quantization"] = {"dtype": "uint8", "scale": scale, "min": lo,
                                         "original_dtype": "float32"}
        elif value.dtype in (np.int32, np.int64):
            entry["dtype"] = "int32"
            value = value.astype(np.int32)
        elif value.dtype == np.bool_:
            entry["dtype"] = "bool"
        else:
            raise ExportError(f"TF.js: constant {node.name} has unsupported dtype {value.dtype}")
        entries.append(entry)
        blobs.append(np.ascontiguousarray(value).tobytes())
        for name in _TFJS_CLEARED_FIELDS:
            node.attr["value"].tensor.ClearField(name)

    out.mkdir(parents=True)
    data = b"".join(blobs)
    shards = max(1, -(-len(data) // _TFJS_SHARD_BYTES))
    paths = []
    for i in range(shards):
        path = f"group1-shard{i + 1}of{shards}.bin"
        (out / path).write_bytes(data[i * _TFJS_SHARD_BYTES:(i + 1) * _TFJS_SHARD_BYTES])
        paths.append(path)
    model_json = {
        "format": "graph-model",
        "generatedBy": tf.__version__,
        "convertedBy": f"basnet-cli {__version__}",
        "signature": MessageToDict(signature),
        "modelTopology": MessageToDict(graph_def),
        "weightsManifest": [{"paths": paths, "weights": entries}],
        "userDefinedMetadata": {"basnet": {"input": describe_io("tfjs", quantize, size),
                                           "quantize": quantize}},
    }
    (out / "model.json").write_text(json.dumps(model_json))


# ---------------------------------------------------------------------------------------------
# TF.js runtime: Node.js with the pure-JS @tensorflow/tfjs package (no native tfjs-node).

_TFJS_RUNNER = r"""
// basnet-cli: run a TF.js graph model on raw float32 NHWC images (no tfjs-node).
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

async function main() {
  const [modelDir, inPath, outPath, n, h, w] = process.argv.slice(2);
  const N = parseInt(n), H = parseInt(h), W = parseInt(w);
  // WebAssembly backend (portable .wasm shipped in the npm package, no native code) when
  // installed: ~50x faster than the plain-JS 'cpu' backend on convolutions.
  let backend = process.env.BASNET_TFJS_BACKEND || 'wasm';
  if (backend === 'wasm') {
    try { require('@tensorflow/tfjs-backend-wasm'); } catch (e) { backend = 'cpu'; }
  }
  if (!(await tf.setBackend(backend))) await tf.setBackend('cpu');
  await tf.ready();
  const modelJson = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'), 'utf8'));
  const specs = [], buffers = [];
  for (const group of modelJson.weightsManifest) {
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(modelDir, p)));
    specs.push(...group.weights);
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const t0 = Date.now();
  const model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: modelJson.modelTopology, weightSpecs: specs, weightData: weightData,
    format: modelJson.format, generatedBy: modelJson.generatedBy,
    convertedBy: modelJson.convertedBy, signature: modelJson.signature,
    userDefinedMetadata: modelJson.userDefinedMetadata}));
  const loadMs = Date.now() - t0;
  const raw = fs.readFileSync(inPath);
  const input = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const per = H * W * 3;
  const out = new Float32Array(N * H * W);
  const run = (i) => tf.tidy(() => model.predict(
      tf.tensor4d(input.subarray(i * per, (i + 1) * per), [1, H, W, 3], 'float32')));
  (await run(0)).dispose();  // warm-up
  const times = [];
  for (let i = 0; i < N; i++) {
    const s = process.hrtime.bigint();
    const y = run(i);
    const data = await y.data();
    times.push(Number(process.hrtime.bigint() - s) / 1e9);
    out.set(data, i * H * W);
    y.dispose();
  }
  fs.writeFileSync(outPath, Buffer.from(out.buffer));
  console.log(JSON.stringify({backend: tf.getBackend(), version: tf.version.tfjs,
                              load_ms: loadMs, times: times}));
}
main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
"""


def tfjs_runtime_dir() -> Path:
    """Where ``@tensorflow/tfjs`` is installed for the check (``$BASNET_TFJS_DIR`` or
    ``~/.cache/basnet-cli/tfjs``; never inside the project)."""
    env = os.environ.get("BASNET_TFJS_DIR")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "basnet-cli" / "tfjs"


def tfjs_runtime_status() -> tuple[bool, str]:
    """``(ready, reason)``: Node.js present and ``@tensorflow/tfjs`` installed."""
    if shutil.which("node") is None:
        return False, "Node.js (node) is not on PATH"
    package = tfjs_runtime_dir() / "node_modules" / "@tensorflow" / "tfjs" / "package.json"
    if not package.is_file():
        return False, f"@tensorflow/tfjs is not installed in {tfjs_runtime_dir()}"
    return True, "ready"


def ensure_tfjs_runtime(log: Callable[[str], None] | None = None) -> Path:
    """Install the pure-JS ``@tensorflow/tfjs`` with npm into :func:`tfjs_runtime_dir` once."""
    ready, reason = tfjs_runtime_status()
    if ready:
        return tfjs_runtime_dir()
    if shutil.which("node") is None:
        raise ExportError(f"cannot check the TF.js export: {reason} (install Node.js >= 18, "
                          f"or pass --no-check)")
    npm = shutil.which("npm")
    if npm is None:
        raise ExportError("cannot check the TF.js export: npm is not on PATH (or pass "
                          "--no-check)")
    target = tfjs_runtime_dir()
    target.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"installing @tensorflow/tfjs@{TFJS_NPM_VERSION} and its WebAssembly backend "
            f"(one time) into {target}")
    proc = subprocess.run(
        [npm, "install", "--prefix", str(target), "--no-audit", "--no-fund",
         "--loglevel=error", f"@tensorflow/tfjs@{TFJS_NPM_VERSION}",
         f"@tensorflow/tfjs-backend-wasm@{TFJS_NPM_VERSION}"],
        capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0 or not tfjs_runtime_status()[0]:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ExportError("npm could not install @tensorflow/tfjs: " + " | ".join(tail))
    return target


def run_tfjs(model_dir: Path, images: np.ndarray, *, timeout: float = 1800,
             log: Callable[[str], None] | None = None) -> tuple[np.ndarray, float, str]:
    """Run a TF.js graph model in Node.js.  Returns ``(probabilities, s/image, runtime)``."""
    runtime = ensure_tfjs_runtime(log)
    n, h, w, _ = images.shape
    with tempfile.TemporaryDirectory(prefix="basnet-tfjs-") as tmp:
        script = Path(tmp) / "run.js"
        script.write_text(_TFJS_RUNNER)
        inp, outp = Path(tmp) / "in.f32", Path(tmp) / "out.f32"
        np.ascontiguousarray(images, dtype=np.float32).tofile(inp)
        env = dict(os.environ, NODE_PATH=str(runtime / "node_modules"))
        proc = subprocess.run(["node", str(script), str(model_dir), str(inp), str(outp),
                               str(n), str(h), str(w)], capture_output=True, text=True,
                              env=env, timeout=timeout, check=False)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-4:]
            raise ExportError("TF.js (Node.js) could not run the model: " + " | ".join(tail))
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        probs = np.fromfile(outp, dtype=np.float32).reshape(n, h, w, 1)
    per_image = float(np.mean(info["times"]))
    runtime_name = f"@tensorflow/tfjs {info['version']} ({info['backend']} backend, Node.js)"
    return probs, per_image, runtime_name


# ---------------------------------------------------------------------------------------------
# The check: reload with the format's own runtime and compare with Keras.


def _time_per_image(predictor: Callable[[np.ndarray], np.ndarray], images: np.ndarray
                    ) -> tuple[np.ndarray, float]:
    """Run image by image after one warm-up call; returns (outputs, mean seconds per image)."""
    predictor(images[:1])
    outs, total = [], 0.0
    for i in range(len(images)):
        t0 = time.perf_counter()
        outs.append(np.asarray(predictor(images[i:i + 1]), np.float32))
        total += time.perf_counter() - t0
    return np.concatenate(outs, axis=0), total / len(images)


_KERAS_PREDICTORS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _keras_predictor(model: Any) -> Any:
    """One traced :class:`~basnet_cli.predict.KerasPredictor` per model (reused by checks)."""
    from basnet_cli.predict import KerasPredictor

    predictor = _KERAS_PREDICTORS.get(model)
    if predictor is None:
        predictor = _KERAS_PREDICTORS[model] = KerasPredictor(model)
    return predictor


def check_export(fmt: str, quantize: str, path: Path, model: Any, images: np.ndarray,
                 source: str, log: Callable[[str], None] | None = None) -> CheckResult:
    """Load ``path`` with its runtime, run it on ``images`` and compare with ``model``."""
    x = images.astype(np.float32)
    keras_predictor = _keras_predictor(model)
    reference, keras_time = _time_per_image(keras_predictor, x)
    if fmt == "keras":
        from basnet_cli.runtime import import_keras

        keras = import_keras()
        reloaded = keras.saving.load_model(path, compile=False, safe_mode=True)
        from basnet_cli.predict import KerasPredictor

        got, seconds = _time_per_image(KerasPredictor(reloaded), x)
        runtime = f"keras {keras.__version__}"
    elif fmt == "tfjs":
        got, seconds, runtime = run_tfjs(path, x, log=log)
    else:
        from basnet_cli.backends import BackendError, open_exported

        try:
            predictor = open_exported(path)
        except BackendError as exc:
            raise ExportError(str(exc)) from None
        got, seconds = _time_per_image(predictor, x)
        runtime = predictor.runtime
        if fmt == "onnx":
            # The ONNX graph is size-agnostic: check a second size as well.
            h = x.shape[1] // 2 // 32 * 32 or x.shape[1] + 32
            other = synthetic_images(1, h, seed=1).astype(np.float32)
            reference = np.concatenate([reference.reshape(-1),
                                        keras_predictor(other).reshape(-1)])
            got = np.concatenate([got.reshape(-1), predictor(other).reshape(-1)])
    diff = np.abs(np.asarray(got, np.float64).reshape(-1)
                  - np.asarray(reference, np.float64).reshape(-1))
    return CheckResult(runtime=runtime, images=len(images), image_source=source,
                       max_abs=float(diff.max()), mean_abs=float(diff.mean()),
                       tolerance=TOLERANCES[(fmt, quantize)], time_per_image_s=seconds,
                       keras_time_per_image_s=keras_time)


# ---------------------------------------------------------------------------------------------
# The command.


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
        if opts.format == "keras":
            write_keras(model, tmp)
        elif opts.format == "savedmodel":
            write_savedmodel(model, tmp, opts.size)
        elif opts.format == "tflite":
            tmp.write_bytes(tflite_bytes(model, opts.size, opts.quantize, calibration,
                                         opts.verbose))
        elif opts.format == "onnx":
            write_onnx(model, tmp, opts.quantize, calibration, opts.verbose)
        else:
            write_tfjs_graph_model(model, tmp, opts.size, opts.quantize)
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

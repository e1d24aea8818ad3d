"""Runtimes for exported models: TFLite/LiteRT, ONNX Runtime and TensorFlow SavedModel folders.

Each is a :class:`~basnet_cli.inference.Predictor`: a callable mapping a float32 RGB 0..255 NHWC
batch to ``(B, H, W, 1)`` float32 probabilities, so ``--model exported.tflite`` runs through the
same pipelines as a Keras model, and ``basnet export`` checks every file it writes with the very
code that will serve it.

Nothing heavy is imported at module import time: ``ai_edge_litert``, ``onnxruntime`` and
TensorFlow are imported when a model is opened.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli.inference.device import available_cpus, quiet_native_output

# What an exported file needs to run, for error messages.
INSTALL_HINT = {
    "tflite": "pip install ai-edge-litert (or use TensorFlow's tf.lite)",
    "onnx": "pip install onnxruntime",
}


class BackendError(RuntimeError):
    """An exported model cannot be opened or run (missing runtime, wrong input size, ...)."""


def _fixed_size_error(path: Path, hw: tuple[int, int], got: tuple[int, int]) -> BackendError:
    return BackendError(
        f"{path} takes {hw[0]}x{hw[1]} images (fixed when it was exported) but got "
        f"{got[0]}x{got[1]}; run predict with --size {hw[0]}")


# ---------------------------------------------------------------------------------------------
# TFLite / LiteRT.


def tflite_interpreter_class() -> tuple[Any, str]:
    """``(Interpreter class, runtime name)``: LiteRT (``ai_edge_litert``) when installed, else
    TensorFlow's ``tf.lite.Interpreter`` with its deprecation warning silenced."""
    try:
        with quiet_native_output():
            from ai_edge_litert.interpreter import Interpreter
        try:
            from importlib.metadata import version

            return Interpreter, f"ai_edge_litert {version('ai-edge-litert')}"
        except Exception:  # noqa: BLE001 - the version is only for display
            return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from basnet_cli.runtime import import_tf

        tf = import_tf()
    except ImportError:
        raise BackendError(f"no TFLite runtime: {INSTALL_HINT['tflite']}") from None

    def interpreter(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=UserWarning)
            return tf.lite.Interpreter(*args, **kwargs)

    return interpreter, "tf.lite"


class TFLitePredictor:
    """A ``.tflite`` file on the LiteRT interpreter (XNNPACK on CPU).

    The export is ``[1, S, S, 3]`` (fixed batch and size, as mobile delegates want): a batch is
    run image by image.  Integer inputs/outputs (full-int8 models take uint8) are quantised and
    dequantised here with the tensor's own scale and zero point.
    """

    def __init__(self, path: str | Path, *, num_threads: int | None = None) -> None:
        self.path = Path(path)
        cls, self.runtime = tflite_interpreter_class()
        try:
            with quiet_native_output():
                self._interp = cls(model_path=str(self.path),
                                   num_threads=num_threads or available_cpus())
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"{self.path}: not a loadable TFLite model ({exc})") from None
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        shape = [int(d) for d in self._in["shape"]]
        self.input_shape = tuple(shape)
        self.input_dtype = np.dtype(self._in["dtype"]).name
        self.description = f"{self.path} (tflite, {self.input_dtype} input, {self.runtime})"

    @property
    def size(self) -> tuple[int, int]:
        return self.input_shape[1], self.input_shape[2]

    def _quantize_input(self, x: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self._in["dtype"])
        if dtype.kind == "f":
            return x.astype(dtype, copy=False)
        scale, zero = self._in["quantization"]
        q = np.round(x / scale + zero) if scale else np.round(x)
        info = np.iinfo(dtype)
        return np.clip(q, info.min, info.max).astype(dtype)

    def _dequantize_output(self, y: np.ndarray) -> np.ndarray:
        if np.dtype(y.dtype).kind == "f":
            return y.astype(np.float32, copy=False)
        scale, zero = self._out["quantization"]
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)

    def __call__(self, images: Any) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if tuple(x.shape[1:3]) != self.size:
            raise _fixed_size_error(self.path, self.size, tuple(x.shape[1:3]))
        outs = []
        for i in range(x.shape[0]):
            self._interp.set_tensor(self._in["index"], self._quantize_input(x[i:i + 1]))
            self._interp.invoke()
            outs.append(self._dequantize_output(self._interp.get_tensor(self._out["index"])))
        return np.concatenate(outs, axis=0)


# ---------------------------------------------------------------------------------------------
# ONNX Runtime.


class OnnxPredictor:
    """A ``.onnx`` file on ONNX Runtime (CPU, or CUDA when that provider is available).

    basnet-cli's ONNX export has a dynamic batch, height and width (height and width multiples
    of 32); ``image`` is float32 NHWC RGB 0..255, ``mask`` float32 NHWC probabilities.
    """

    def __init__(self, path: str | Path, *, providers: list[str] | None = None) -> None:
        self.path = Path(path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError(f"{self.path}: ONNX Runtime is not installed "
                               f"({INSTALL_HINT['onnx']})") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if p in available]
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise BackendError(f"{self.path}: not a loadable ONNX model ({first})") from None
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        self.input_dtype = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}.get(
            inp.type, inp.type)
        self.runtime = f"onnxruntime {ort.__version__}"
        self.description = f"{self.path} (onnx, {self._session.get_providers()[0]})"

    def __call__(self, images: Any) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        fixed = self.input_shape[1:3]
        if all(isinstance(d, int) for d in fixed) and tuple(x.shape[1:3]) != fixed:
            raise _fixed_size_error(self.path, fixed, tuple(x.shape[1:3]))  # type: ignore[arg-type]
        if self.input_dtype == "uint8":
            x = np.clip(np.round(x), 0, 255).astype(np.uint8)
        out = self._session.run(None, {self._input_name: x})[0]
        return np.asarray(out, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# TensorFlow SavedModel.


class SavedModelPredictor:
    """A SavedModel folder (``serving_default``: ``image`` float32 [None, S, S, 3] -> ``mask``)."""

    def __init__(self, path: str | Path) -> None:
        from basnet_cli.runtime import import_tf

        self.path = Path(path)
        tf = import_tf()
        self._tf = tf
        try:
            loaded = tf.saved_model.load(str(self.path))
        except Exception as exc:  # noqa: BLE001 - TF raises many kinds
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise BackendError(f"{self.path}: not a loadable SavedModel ({first})") from None
        self._loaded = loaded  # keep the variables alive
        signatures = getattr(loaded, "signatures", {})
        if "serving_default" not in signatures:
            raise BackendError(f"{self.path}: the SavedModel has no serving_default signature")
        self._fn = signatures["serving_default"]
        _, kwargs = self._fn.structured_input_signature
        if len(kwargs) != 1:
            raise BackendError(f"{self.path}: expected one input, found {sorted(kwargs)}")
        self._input_name, spec = next(iter(kwargs.items()))
        self.input_shape = tuple(spec.shape.as_list())
        self.input_dtype = spec.dtype.name
        self.runtime = f"tensorflow {tf.__version__}"
        self.description = f"{self.path} (savedmodel)"

    def __call__(self, images: Any) -> np.ndarray:
        tf = self._tf
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        fixed = self.input_shape[1:3]
        if all(isinstance(d, int) for d in fixed) and tuple(x.shape[1:3]) != tuple(fixed):
            raise _fixed_size_error(self.path, tuple(fixed), tuple(x.shape[1:3]))
        out = self._fn(**{self._input_name: tf.constant(x, dtype=self.input_dtype)})
        value = out["mask"] if "mask" in out else next(iter(out.values()))
        return np.asarray(value, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Which backend serves which ``--model`` value.


def exported_kind(spec: str | Path) -> str | None:
    """``"tflite"``, ``"onnx"``, ``"savedmodel"``, ``"tfjs"`` or None (not an exported model)."""
    path = Path(spec)
    name = path.name.lower()
    if name.endswith(".tflite") and path.is_file():
        return "tflite"
    if name.endswith(".onnx") and path.is_file():
        return "onnx"
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "savedmodel"
    if path.is_dir() and (path / "model.json").is_file():
        return "tfjs"
    return None


def open_exported(spec: str | Path) -> TFLitePredictor | OnnxPredictor | SavedModelPredictor:
    """Open an exported model with its own runtime (raises :class:`BackendError`)."""
    kind = exported_kind(spec)
    if kind == "tflite":
        return TFLitePredictor(spec)
    if kind == "onnx":
        return OnnxPredictor(spec)
    if kind == "savedmodel":
        return SavedModelPredictor(spec)
    if kind == "tfjs":
        raise BackendError(f"{spec} is a TF.js model: it runs in browsers and Node.js "
                           f"(tf.loadGraphModel), not in Python; export --format tflite, onnx "
                           f"or savedmodel for basnet predict")
    raise BackendError(f"{spec}: not a .tflite file, .onnx file or SavedModel folder")

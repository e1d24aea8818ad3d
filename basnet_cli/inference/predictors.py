"""Predictors (a batch of float32 RGB 0..255 NHWC -> ``(B, H, W, 1)`` float32 probabilities),
loading ``--model`` as one, and running one over a stream of images in batches.

``--model`` is a preset with bundled weights, a ``.weights.h5`` / ``.keras`` file (served by
:class:`KerasPredictor`) or an exported ``.tflite`` / ``.onnx`` file or SavedModel folder (served
by its own runtime, :mod:`basnet_cli.inference.exported`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from basnet_cli.inference.device import (
    InferenceUsageError,
    concrete_precision,
    configure_device,
    import_tf_quiet,
)
from basnet_cli.inference.exported import BackendError, exported_kind, open_exported

if TYPE_CHECKING:
    from basnet_cli.inference.runtimes import RuntimeChoice

K = TypeVar("K")


class Predictor(Protocol):
    """Anything that maps an RGB batch to probabilities; ``description`` names it in summaries."""

    description: str

    def __call__(self, images: Any) -> np.ndarray: ...


class KerasPredictor:
    """A Keras inference model behind a traced ``tf.function`` (one trace per image size).

    With a ``tf.distribute`` strategy of several replicas (several GPUs), each batch is split
    across the replicas with ``experimental_distribute_values_from_function``.
    """

    def __init__(self, model: Any, *, strategy: Any = None, description: str = "",
                 device: str | None = None) -> None:
        tf = import_tf_quiet()
        self._tf = tf
        self.model = model
        self.strategy = strategy
        self.device = device  # e.g. "/CPU:0" to pin the calls; None: TensorFlow's placement
        self.description = description or getattr(model, "name", "keras model")
        self._fns: dict[tuple[int, int], Any] = {}

    def _fn(self, x: Any) -> Any:
        # One trace per image size with a free batch dimension (the network's bilinear
        # upsampling needs static spatial sizes), so a short last batch does not retrace.
        key = (int(x.shape[1]), int(x.shape[2]))
        fn = self._fns.get(key)
        if fn is None:
            tf, model = self._tf, self.model
            fn = tf.function(lambda t: model(t, training=False), input_signature=[
                tf.TensorSpec([None, key[0], key[1], 3], tf.float32)])
            self._fns[key] = fn
        if self.device is not None:
            with self._tf.device(self.device):
                return fn(x)
        return fn(x)

    def __call__(self, images: Any) -> np.ndarray:
        tf = self._tf
        x = tf.convert_to_tensor(images, dtype=tf.float32)
        strategy = self.strategy
        if strategy is None or strategy.num_replicas_in_sync == 1:
            if strategy is None:
                out = self._fn(x)
            else:
                with strategy.scope():
                    out = self._fn(x)
            return np.asarray(out, dtype=np.float32)
        n = strategy.num_replicas_in_sync
        batch = int(x.shape[0])
        if batch < n:  # every replica needs at least one image (BatchNorm fails on empty ones)
            x = tf.concat([x, tf.repeat(x[-1:], n - batch, axis=0)], axis=0)
        bounds = np.linspace(0, int(x.shape[0]), n + 1).astype(int)
        chunks = [x[bounds[i]:bounds[i + 1]] for i in range(n)]
        values = strategy.experimental_distribute_values_from_function(
            lambda ctx: chunks[ctx.replica_id_in_sync_group])
        result = strategy.run(self._fn, args=(values,))
        parts = strategy.experimental_local_results(result)
        out = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=0)
        return out[:batch]


class CompiledPredictor:
    """A Keras model under another Keras backend (JAX, PyTorch): its own compiled
    ``predict_on_batch``."""

    def __init__(self, model: Any, description: str = "") -> None:
        self.model = model
        self.description = description or getattr(model, "name", "keras model")

    def __call__(self, images: Any) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(images), dtype=np.float32)


def keras_predictor(model: Any, *, description: str = "", device: str | None = None
                    ) -> KerasPredictor | CompiledPredictor:
    """The predictor for a Keras model under the active Keras backend."""
    from basnet_cli.runtime import import_keras

    if import_keras().backend.backend() == "tensorflow":
        return KerasPredictor(model, description=description, device=device)
    return CompiledPredictor(model, description)  # pragma: no cover - other backends


class ExportedPredictor:
    """An exported model's predictor whose runtime errors (a wrong ``--size`` for a fixed-size
    export) are usage errors (exit 2)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.description: str = inner.description

    @property
    def input_size(self) -> tuple[int, int] | None:
        """``(height, width)`` fixed at export time, or None when the model takes any size."""
        hw = tuple(self.inner.input_shape[1:3])
        return hw if all(isinstance(d, int) for d in hw) else None  # type: ignore[return-value]

    def __call__(self, images: Any) -> np.ndarray:
        try:
            return self.inner(images)
        except BackendError as exc:
            raise InferenceUsageError(str(exc)) from None


def fixed_input_size(predictor: Any) -> int | None:
    """The side a square fixed-size export takes (a ``.tflite`` file, a SavedModel), else None."""
    hw = getattr(predictor, "input_size", None)
    return hw[0] if hw is not None and hw[0] == hw[1] else None


def load_exported(spec: str) -> ExportedPredictor | None:
    """``--model spec`` as an exported model (``.tflite``, ``.onnx``, SavedModel folder) on its
    runtime; None when ``spec`` is not an exported model.  Raises
    :class:`InferenceUsageError` when it is one that cannot be opened (missing runtime, TF.js,
    a broken file)."""
    if exported_kind(spec) is None:
        return None
    try:
        return ExportedPredictor(open_exported(spec))
    except BackendError as exc:
        raise InferenceUsageError(str(exc)) from None


def check_model_spec(spec: str, preset: str | None = None) -> None:
    """Fail early (before any work) on a ``--model`` value that names nothing loadable."""
    from basnet_cli.model.io import ModelSpecError, resolve

    if exported_kind(spec) is not None:
        return
    try:
        resolve(spec, preset=preset)
    except (ModelSpecError, ValueError) as exc:
        raise InferenceUsageError(str(exc)) from None


def load_predictor(spec: str, *, precision: str = "auto", device: str = "auto",
                   verbose: bool = False, preset: str | None = None, runtime: str = "keras",
                   size: int | None = None, batch_size: int = 8, measure: bool = False,
                   choice: list[RuntimeChoice] | None = None) -> tuple[Predictor, str, str]:
    """Build the predictor for ``--model spec``.  Returns ``(predictor, precision, device)``:
    the concrete precision (``"exported"`` for exported models, ``"float32"`` on ONNX Runtime)
    and the device description.

    ``runtime`` (Keras models on the CPU): ``keras``, ``onnx`` (ONNX Runtime on the model's
    ONNX translation, float32) or ``auto`` (see :mod:`.runtimes`: a cached measurement, else
    one at ``size`` x ``batch_size`` when ``measure``, else Keras).  The choice made is
    appended to ``choice`` when given.

    Raises :class:`InferenceUsageError` for anything that cannot be loaded or run here.
    """
    from basnet_cli.inference import runtimes as R
    from basnet_cli.model.io import ModelSpecError, load_inference_model, loading, resolve
    from basnet_cli.runtime import import_keras

    if runtime not in R.RUNTIMES:
        raise InferenceUsageError(f"--runtime must be one of {', '.join(R.RUNTIMES)}")
    device_desc = configure_device(device, verbose)
    exported = load_exported(spec)
    if exported is not None:
        if choice is not None:
            choice.append(R.RuntimeChoice(getattr(exported.inner, "runtime", "exported"),
                                          "", "the file's own runtime"))
        return exported, "exported", device_desc
    try:
        source = resolve(spec, preset=preset)
    except (ModelSpecError, ValueError) as exc:
        raise InferenceUsageError(str(exc)) from None
    import_keras(verbose)
    concrete = concrete_precision(precision, device_desc)
    if runtime == "onnx" and device_desc != "cpu":
        raise InferenceUsageError("--runtime onnx runs on the CPU: add --device cpu")
    if runtime == "onnx" and precision not in ("auto", "float32"):
        raise InferenceUsageError(f"--runtime onnx runs float32, not --precision {precision}")
    tf = import_tf_quiet(verbose)
    strategy = None
    if device_desc != "cpu" and len(tf.config.list_logical_devices("GPU")) > 1:
        strategy = tf.distribute.MirroredStrategy()
    pin = "/CPU:0" if device_desc == "cpu" else None

    def build(policy: str) -> Any:
        with loading(spec, policy, InferenceUsageError):
            if strategy is not None:
                with strategy.scope():
                    return load_inference_model(source)
            if pin is not None:
                with tf.device(pin):
                    return load_inference_model(source)
            return load_inference_model(source)

    def keras_pred(model: Any) -> Predictor:
        return KerasPredictor(model, strategy=strategy, description=source.describe(),
                              device=pin)

    def decided(pred: Predictor, label: str, made: R.RuntimeChoice
                ) -> tuple[Predictor, str, str]:
        if choice is not None:
            choice.append(made)
        return pred, label, device_desc

    if runtime == "onnx":
        return decided(R.onnx_predictor(build("float32"), source.describe()), "float32",
                       R.RuntimeChoice("onnxruntime", "float32", "asked"))
    if runtime == "keras":
        return decided(keras_pred(build(concrete)), concrete,
                       R.RuntimeChoice("keras", concrete, "asked"))
    # auto
    why_not = ("a GPU runs Keras" if device_desc != "cpu" else R.onnx_available())
    key = R.cache_key(source.path, source.describe(), size or 0, batch_size)
    known = None if why_not else R.cached(key)
    if why_not or known == "keras" or (known is None and not measure):
        how = why_not or ("cached" if known else "too few images to measure")
        return decided(keras_pred(build(concrete)), concrete,
                       R.RuntimeChoice("keras", concrete, how))
    if known == "onnx":
        return decided(R.onnx_predictor(build("float32"), source.describe()), "float32",
                       R.RuntimeChoice("onnxruntime", "float32", "cached"))
    keras_model = build(concrete)
    onnx_model = keras_model if concrete == "float32" else build("float32")
    candidates = {f"keras {concrete}": keras_pred(keras_model),
                  "onnxruntime float32": R.onnx_predictor(onnx_model, source.describe())}
    del onnx_model
    rates = R.measure(candidates, size or 320, batch_size)
    best = max(rates, key=lambda name: rates[name])
    R.remember(key, "onnx" if best.startswith("onnx") else "keras", rates)
    name, label = best.split()
    return decided(candidates[best], label, R.RuntimeChoice(name, label, "measured", rates))


# ---------------------------------------------------------------------------------------------
# Batching.


def probabilities(output: Any) -> np.ndarray:
    """A predictor's output as float32 ``(B, H, W)`` in [0, 1] (a trailing channel of 1
    dropped, values clipped)."""
    out = np.asarray(output, dtype=np.float32)
    if out.ndim == 4:
        out = out[..., 0]
    return np.clip(out, 0.0, 1.0)


def predict_batches(predictor: Callable[[np.ndarray], Any],
                    items: Iterable[tuple[K, np.ndarray]], batch_size: int
                    ) -> Iterator[tuple[K, np.ndarray]]:
    """Run ``predictor`` over ``(key, image)`` pairs, ``batch_size`` images per call.

    Images are ``(S, S, 3)`` RGB 0..255 of one size (any dtype; sent as float32); yields
    ``(key, probabilities (S, S))`` in input order.  ``items`` is consumed lazily, one batch at
    a time, so a stream of any length keeps one batch in memory.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    keys: list[K] = []
    images: list[np.ndarray] = []

    def flush() -> Iterator[tuple[K, np.ndarray]]:
        batch = np.stack(images).astype(np.float32, copy=False)
        yield from zip(list(keys), probabilities(predictor(batch)))
        keys.clear()
        images.clear()

    for key, image in items:
        keys.append(key)
        images.append(image)
        if len(images) == batch_size:
            yield from flush()
    if images:
        yield from flush()

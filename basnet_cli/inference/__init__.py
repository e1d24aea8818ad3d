"""The inference core every command shares: ``--model`` as a predictor, precision and device
set-up, and batching.

A predictor maps a float32 RGB 0..255 NHWC batch to ``(B, H, W, 1)`` float32 probabilities.

Modules: :mod:`.device` (:class:`InferenceUsageError`, the ``--precision`` / ``--device``
choices, TensorFlow's device set-up, the concrete precision for a device), :mod:`.exported`
(the runtimes of exported models: TFLite/LiteRT, ONNX Runtime, SavedModel) and
:mod:`.runtimes` (``--runtime``: Keras or ONNX Runtime, the faster measured and cached) and
:mod:`.predictors` (the :class:`Predictor` protocol, :class:`KerasPredictor`,
:func:`load_predictor` for any ``--model``, :func:`predict_batches`) and :mod:`.tta`
(``--tta``: the photo and its mirror image averaged).  Nothing here imports TensorFlow at
module import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from basnet_cli.lazy import lazy_exports

# The public names and the module of each; imported on first use, so that the command line
# (which needs only the option enums of .device) starts without NumPy.
_EXPORTS = {
    "device": ("DEVICES", "RUNTIMES", "Device", "InferenceUsageError", "Precision", "Runtime",
               "available_cpus",
               "concrete_precision", "configure_device", "import_tf_quiet",
               "quiet_native_output"),
    "exported": ("INSTALL_HINT", "BackendError", "OnnxPredictor", "SavedModelPredictor",
                 "TFLitePredictor", "exported_kind", "open_exported", "tflite_interpreter_class"),
    "runtimes": ("RuntimeChoice",),
    "tta": ("FlipAverage", "with_tta"),
    "predictors": ("CompiledPredictor", "ExportedPredictor", "KerasPredictor", "Predictor",
                   "check_model_spec", "fixed_input_size", "keras_predictor", "load_exported",
                   "load_predictor", "predict_batches", "probabilities"),
}
__all__ = [
    "DEVICES", "INSTALL_HINT", "RUNTIMES", "BackendError", "CompiledPredictor", "Device",
    "Runtime", "RuntimeChoice", "ExportedPredictor", "FlipAverage", "InferenceUsageError",
    "KerasPredictor", "OnnxPredictor", "Precision",
    "Predictor", "SavedModelPredictor", "TFLitePredictor", "available_cpus", "check_model_spec",
    "concrete_precision", "configure_device", "exported_kind", "fixed_input_size",
    "import_tf_quiet", "keras_predictor", "load_exported", "load_predictor", "open_exported",
    "predict_batches", "probabilities", "quiet_native_output", "tflite_interpreter_class",
    "with_tta",
]

if TYPE_CHECKING:
    from basnet_cli.inference.device import (
        DEVICES,
        RUNTIMES,
        Device,
        InferenceUsageError,
        Precision,
        Runtime,
        available_cpus,
        concrete_precision,
        configure_device,
        import_tf_quiet,
        quiet_native_output,
    )
    from basnet_cli.inference.exported import (
        INSTALL_HINT,
        BackendError,
        OnnxPredictor,
        SavedModelPredictor,
        TFLitePredictor,
        exported_kind,
        open_exported,
        tflite_interpreter_class,
    )
    from basnet_cli.inference.predictors import (
        CompiledPredictor,
        ExportedPredictor,
        KerasPredictor,
        Predictor,
        check_model_spec,
        fixed_input_size,
        keras_predictor,
        load_exported,
        load_predictor,
        predict_batches,
        probabilities,
    )
    from basnet_cli.inference.runtimes import RuntimeChoice
    from basnet_cli.inference.tta import FlipAverage, with_tta


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

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

Modules: :mod:`.formats` (formats, quantisations, tolerances, errors), :mod:`.run` (options,
output naming, :func:`run_export`), :mod:`.check` (the self-check), :mod:`.images` (check and
calibration images) and one writer per format: :mod:`.keras_savedmodel`, :mod:`.tflite`,
:mod:`.onnx_translator` (:func:`keras_to_onnx`: :mod:`basnet_cli.model.onnx`'s layer-by-layer
translation, no tf2onnx; int8 QDQ)
and :mod:`.tfjs` (:func:`write_tfjs_graph_model` and the Node.js runner of its check).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from basnet_cli.lazy import lazy_exports

# The public names and the module of each; imported on first use, so that the command line
# (which needs only the option enums of .formats) starts without NumPy.
_EXPORTS = {
    "check": ("CheckResult", "check_export"),
    "formats": ("EXTENSIONS", "FORMAT_IO", "FORMATS", "QUANTIZATIONS", "QUANTIZE_NOTES",
                "SUPPORTED", "TOLERANCES", "ExportError", "ExportFormat", "ExportUsageError",
                "Quantization", "Tolerance", "describe_io", "parse_format", "parse_quantize"),
    "images": ("calibration_images", "check_images", "synthetic_images"),
    "keras_savedmodel": ("write_keras", "write_savedmodel"),
    "onnx_translator": ("ONNX_OPSET", "keras_to_onnx", "quantize_onnx_int8", "write_onnx"),
    "run": ("ExportOptions", "ExportResult", "default_out", "load_model", "model_stem",
            "path_bytes", "run_export"),
    "tfjs": ("TFJS_NPM_VERSION", "ensure_tfjs_runtime", "run_tfjs", "tfjs_runtime_dir",
             "tfjs_runtime_status", "write_tfjs_graph_model"),
    "tflite": ("tflite_bytes",),
}
__all__ = [
    "CheckResult", "EXTENSIONS", "ExportError", "ExportFormat", "ExportOptions", "ExportResult",
    "ExportUsageError", "FORMATS", "FORMAT_IO", "ONNX_OPSET", "QUANTIZATIONS", "QUANTIZE_NOTES",
    "Quantization", "SUPPORTED", "TFJS_NPM_VERSION", "TOLERANCES", "Tolerance",
    "calibration_images", "check_export", "check_images", "default_out", "describe_io",
    "ensure_tfjs_runtime", "keras_to_onnx", "load_model", "model_stem", "parse_format",
    "parse_quantize", "path_bytes", "quantize_onnx_int8", "run_export", "run_tfjs",
    "synthetic_images", "tfjs_runtime_dir", "tfjs_runtime_status", "tflite_bytes", "write_keras",
    "write_onnx", "write_savedmodel", "write_tfjs_graph_model",
]

if TYPE_CHECKING:
    from basnet_cli.export.check import CheckResult, check_export
    from basnet_cli.export.formats import (
        EXTENSIONS,
        FORMAT_IO,
        FORMATS,
        QUANTIZATIONS,
        QUANTIZE_NOTES,
        SUPPORTED,
        TOLERANCES,
        ExportError,
        ExportFormat,
        ExportUsageError,
        Quantization,
        Tolerance,
        describe_io,
        parse_format,
        parse_quantize,
    )
    from basnet_cli.export.images import calibration_images, check_images, synthetic_images
    from basnet_cli.export.keras_savedmodel import write_keras, write_savedmodel
    from basnet_cli.export.onnx_translator import (
        ONNX_OPSET,
        keras_to_onnx,
        quantize_onnx_int8,
        write_onnx,
    )
    from basnet_cli.export.run import (
        ExportOptions,
        ExportResult,
        default_out,
        load_model,
        model_stem,
        path_bytes,
        run_export,
    )
    from basnet_cli.export.tfjs import (
        TFJS_NPM_VERSION,
        ensure_tfjs_runtime,
        run_tfjs,
        tfjs_runtime_dir,
        tfjs_runtime_status,
        write_tfjs_graph_model,
    )
    from basnet_cli.export.tflite import tflite_bytes


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

"""TFLite (LiteRT) export, with float16, dynamic-range int8 and full-integer quantisation."""

from __future__ import annotations

from typing import Any

import numpy as np

from basnet_cli.export.formats import ExportUsageError
from basnet_cli.export.keras_savedmodel import serving_function


def tflite_bytes(model: Any, size: int, quantize: str,
                 calibration: np.ndarray | None = None, verbose: bool = False) -> bytes:
    """Convert with the TFLite (LiteRT) converter; ``[1, size, size, 3]`` input."""
    from basnet_cli.inference import quiet_native_output
    from basnet_cli.runtime import import_tf

    tf = import_tf()
    fn = serving_function(model, [1, size, size, 3]).get_concrete_function()
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

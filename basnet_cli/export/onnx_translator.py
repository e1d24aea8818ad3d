"""ONNX export: the model's ONNX translation (:mod:`basnet_cli.model.onnx`) written to a file,
float16 weights on request, and static int8 (QDQ) quantisation with ONNX Runtime."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli.export.formats import ExportError, ExportUsageError, describe_io
from basnet_cli.model.onnx import ONNX_OPSET, OnnxTranslationError
from basnet_cli.model.onnx import keras_to_onnx as _translate

__all__ = ["ONNX_OPSET", "keras_to_onnx", "quantize_onnx_int8", "write_onnx"]


def keras_to_onnx(model: Any, *, float16_weights: bool = False, opset: int = ONNX_OPSET,
                  check: bool = True) -> Any:
    """:func:`basnet_cli.model.onnx.keras_to_onnx` with the export's input description, its
    refusals raised as :class:`ExportError`."""
    try:
        return _translate(model, float16_weights=float16_weights, opset=opset, check=check,
                          input_doc=describe_io("onnx"))
    except OnnxTranslationError as exc:
        raise ExportError(str(exc)) from None


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

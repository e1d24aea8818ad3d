"""The network as ONNX: a direct layer-by-layer translation of the Keras graph (no tf2onnx),
float16 weights on request.  Used by ``basnet export --format onnx`` and by the inference core's
ONNX Runtime option.

Height and width stay dynamic, and memory stays near three copies of the weights on top of the
loaded model (the paper preset: 2.8 GiB peak for the whole ``basnet export``, check included,
where tf2onnx needed 19-23 GB).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from basnet_cli import __version__
from basnet_cli.errors import RunFailure

ONNX_OPSET = 17


class OnnxTranslationError(RunFailure):
    """A layer (or model shape) with no ONNX translation (exit code 1)."""


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
        raise OnnxTranslationError(f"layer {name} ({kind}): data_format {fmt} is not supported")

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
            raise OnnxTranslationError(f"layer {name}: inverted Normalization is not supported")
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
            raise OnnxTranslationError(f"layer {name}: grouped convolutions are not supported")
        kernel = _np(layer.kernel).transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        return _emit_conv(b, layer, x, kernel, groups=1)
    if kind == "DepthwiseConv2D":
        kh, kw, channels, mult = (int(d) for d in layer.kernel.shape)
        # (kh, kw, C, mult) -> (C * mult, 1, kh, kw), one group per input channel.
        kernel = _np(layer.kernel).transpose(2, 3, 0, 1).reshape(channels * mult, 1, kh, kw)
        return _emit_conv(b, layer, x, kernel, groups=channels)
    if kind == "BatchNormalization":
        if layer.axis not in (-1, 3, [-1], [3]):
            raise OnnxTranslationError(
                f"layer {name}: BatchNormalization axis {layer.axis} unsupported")
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
            raise OnnxTranslationError(f"layer {name}: only a plain or capped ReLU is supported")
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
            raise OnnxTranslationError(
                f"layer {name}: concatenation on axis {layer.axis} unsupported")
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
        raise OnnxTranslationError(f"layer {name}: {layer.interpolation} upsampling unsupported")
    if kind == "InputLayer":
        return x
    raise OnnxTranslationError(f"layer {name} ({kind}) has no ONNX translation")


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
        raise OnnxTranslationError(f"{name}: activation {activation} has no ONNX translation")
    return b.node(ops[activation], [x], name)


def keras_to_onnx(model: Any, *, float16_weights: bool = False, opset: int = ONNX_OPSET,
                  check: bool = True, input_doc: str = "") -> Any:
    """Translate a Keras functional BASNet into an ONNX ``ModelProto``, layer by layer.

    Input ``image`` float32 NHWC [N, H, W, 3] (N, H, W dynamic), one Transpose to NCHW, the
    layers, one Transpose back: output ``mask`` float32 [N, H, W, C].  Only the layers BASNet is
    built from are translated; anything else raises :class:`OnnxTranslationError`.  ``check``:
    run the ONNX checker on the result (it serialises one more copy of the weights).
    ``input_doc``: the ``input`` metadata property (what the model takes), when given.
    """
    import onnx
    from onnx import TensorProto, helper

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise OnnxTranslationError("ONNX export needs a single-input, single-output model")
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
    props = {"normalisation": "inside the model (x/255, ImageNet mean/std)"}
    if input_doc:
        props["input"] = input_doc
    helper.set_model_props(proto, props)
    if check:
        onnx.checker.check_model(proto)
    return proto

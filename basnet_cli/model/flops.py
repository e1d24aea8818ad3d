"""Count multiply-accumulates (MACs) of a built Keras model at a fixed input size."""

from __future__ import annotations


def count_macs(config, size: int) -> int:
    """MACs of one forward pass of ``config`` at ``size`` x ``size`` (convolutions only).

    Convolutions (depthwise ones too) dominate BASNet's cost; BN, ReLU, pooling and resizing
    are ignored.
    """
    from basnet_cli.runtime import import_keras

    keras = import_keras()
    from basnet_cli.model.basnet import build_basnet

    model = build_basnet(config, (size, size, 3))
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            _, oh, ow, cout = layer.output.shape
            total += int(oh) * int(ow) * kh * kw * int(cout)
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            _, oh, ow, cout = layer.output.shape
            total += int(oh) * int(ow) * kh * kw * int(cin) * int(cout)
    return total


def count_params(config) -> int:
    """Trainable parameters of ``config``."""
    from basnet_cli.runtime import import_keras

    import_keras()
    import numpy as np

    from basnet_cli.model.basnet import build_basnet

    model = build_basnet(config)
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))

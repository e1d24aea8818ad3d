"""Resolve what a user passes as ``--model``: a preset name, a weights file or a ``.keras`` file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from basnet_cli.model.config import DEFAULT_SIZE, PRESETS, BASNetConfig, get_preset


class ModelSpecError(ValueError):
    """The ``--model`` value names nothing we can load (a usage error, exit code 2)."""


# Where an installed wheel puts the bundled weights, under its installation prefix.
WHEEL_WEIGHTS = Path("share") / "basnet-cli" / "weights"


def weights_dirs() -> list[Path]:
    """Where bundled weights are looked for, in order: ``$BASNET_WEIGHTS_DIR`` (only it, when
    set), else the checkout's ``weights/`` (an editable install or a clone), then
    ``<prefix>/share/basnet-cli/weights`` of an installed wheel (``sys.prefix``, then the user
    base of ``pip install --user``)."""
    import site
    import sys

    env = os.environ.get("BASNET_WEIGHTS_DIR")
    if env:
        return [Path(env)]
    dirs = [Path(__file__).resolve().parents[2] / "weights", Path(sys.prefix) / WHEEL_WEIGHTS]
    user_base = getattr(site, "USER_BASE", None)
    if user_base:
        dirs.append(Path(user_base) / WHEEL_WEIGHTS)
    return dirs


def weights_dir() -> Path:
    """The first of :func:`weights_dirs` that holds weights (for messages: the first one)."""
    dirs = weights_dirs()
    for folder in dirs:
        if any(folder.glob("*.weights.h5")):
            return folder
    return dirs[0]


def bundled_weights(preset: str) -> Path | None:
    for folder in weights_dirs():
        path = folder / f"{preset}.weights.h5"
        if path.is_file():
            return path
    return None


@dataclass
class ModelSource:
    """Where a model comes from: a preset (+ optional weights) or a saved ``.keras`` file."""

    kind: str  # "preset" | "weights" | "keras"
    config: BASNetConfig | None
    path: Path | None

    def describe(self) -> str:
        if self.kind == "keras":
            return str(self.path)
        name = self.config.name if self.config else "?"
        return f"{name} ({self.path})" if self.path else f"{name} (random init)"


def _preset_from_filename(path: Path) -> BASNetConfig | None:
    name = path.name
    for preset in sorted(PRESETS, key=len, reverse=True):
        if name.startswith(preset + ".") or name.startswith(preset + "_"):
            return PRESETS[preset]
    return None


def _check_keras_archive(path: Path) -> None:
    """A ``.keras`` file is a zip archive with ``config.json``: say which part is wrong."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            raise ModelSpecError(f"--model {path}: not a .keras model (not a zip archive; "
                                 f"truncated, or a file of another format)")
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelSpecError(f"--model {path}: cannot read it ({exc})") from None
    if "config.json" not in names:
        raise ModelSpecError(f"--model {path}: a zip archive without config.json, not a "
                             f".keras model")


# Top-level groups of a Keras 3 weights file, and of a legacy Keras 2 HDF5 model/weights file.
_KERAS_H5_KEYS = {"layers", "vars", "model_weights"}


def _check_weights_file(path: Path) -> None:
    """Refuse an HDF5 file that holds no Keras weights before any model is built (trying each
    preset on a foreign file printed hundreds of Keras warnings)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
            legacy = "layer_names" in f.attrs
    except OSError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelSpecError(f"--model {path}: not a Keras weights file (not readable as "
                             f"HDF5: {first})") from None
    if not (keys & _KERAS_H5_KEYS or legacy):
        shown = ", ".join(sorted(keys)[:5]) or "none"
        raise ModelSpecError(f"--model {path}: an HDF5 file without Keras weights (top-level "
                             f"entries: {shown})")


def resolve(spec: str, *, preset: str | None = None, require_weights: bool = True) -> ModelSource:
    """Turn ``--model`` into a :class:`ModelSource` without building anything.

    ``spec`` is a preset name (bundled weights are used; with ``require_weights=False`` a missing
    weights file means random initialisation), a ``.weights.h5`` file (its preset comes from
    ``preset``, the file name, or is found by trying each preset) or a ``.keras`` file.
    """
    if spec in PRESETS:
        weights = bundled_weights(spec)
        if weights is None and require_weights:
            raise ModelSpecError(
                f"preset {spec!r} has no bundled weights in {weights_dir()}; train one "
                f"(`basnet train`), convert official weights (`basnet convert`) or pass a file"
            )
        return ModelSource("preset", PRESETS[spec], weights)
    path = Path(spec)
    if not path.exists():
        raise ModelSpecError(
            f"--model {spec!r} is neither a preset ({', '.join(PRESETS)}) nor an existing file"
        )
    if path.is_dir():
        raise ModelSpecError(f"--model {spec!r} is a folder, not a model file")
    if path.name.endswith(".keras"):
        _check_keras_archive(path)
        return ModelSource("keras", None, path)
    if path.name.endswith(".weights.h5") or path.suffix == ".h5":
        _check_weights_file(path)
        config = get_preset(preset) if preset else _preset_from_filename(path)
        return ModelSource("weights", config, path)
    raise ModelSpecError(f"--model {spec!r}: expected a preset, a .weights.h5 or a .keras file")


def default_size(spec: str, preset: str | None = None) -> int:
    """The input side ``--model spec`` runs at when ``--size`` is not given: its preset's
    ``input_size`` (from the name, ``preset`` or the file name), else ``DEFAULT_SIZE``."""
    config = PRESETS.get(preset or "") or PRESETS.get(spec)
    if config is None and spec.endswith(".h5"):
        config = _preset_from_filename(Path(spec))
    return config.input_size if config is not None else DEFAULT_SIZE


def load_training_model(source: ModelSource, input_shape: tuple = (None, None, 3)):
    """Build (or load) the 8-output training model for ``source``."""
    from basnet_cli.runtime import import_keras

    keras = import_keras()
    from basnet_cli.model.basnet import build_basnet

    if source.kind == "keras":
        import basnet_cli.losses  # noqa: F401  (registers HybridLoss for deserialisation)

        return keras.saving.load_model(source.path, compile=False, safe_mode=True)
    if source.config is not None:
        model = build_basnet(source.config, input_shape)
        if source.path is not None:
            model.load_weights(source.path)
        return model
    # Unknown preset for a weights file: try each preset until the shapes fit.
    import warnings

    errors = []
    for config in PRESETS.values():
        model = build_basnet(config, input_shape)
        try:
            with warnings.catch_warnings():  # a mismatch warns per layer: the error says it
                warnings.simplefilter("ignore")
                model.load_weights(source.path)
        except Exception as exc:  # noqa: BLE001 - shape mismatch means "not this preset"
            errors.append(f"{config.name}: {str(exc).splitlines()[0][:80]}")
            continue
        source.config = config
        return model
    raise ModelSpecError(
        f"{source.path} does not fit any preset ({'; '.join(errors)}); pass --preset"
    )


def load_inference_model(source: ModelSource):
    """The refined-map-only model for ``source``."""
    from basnet_cli.model.basnet import inference_model

    return inference_model(load_training_model(source))


@contextlib.contextmanager
def loading(spec: str, precision: str, error: type[Exception]) -> Iterator[None]:
    """Around the loading of ``--model spec`` (Keras already imported): Keras' global dtype
    policy is the one of ``precision`` (a concrete one) and is restored afterwards; failures
    become ``error``, a :class:`ModelSpecError` with its own message, an unreadable or foreign
    file (OSError, ValueError, TypeError) as ``--model SPEC: cannot load it (<first line>)``."""
    import keras

    from basnet_cli.runtime import POLICIES

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    try:
        yield
    except ModelSpecError as exc:
        raise error(str(exc)) from None
    except (OSError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise error(f"--model {spec}: cannot load it ({first})") from None
    finally:
        keras.mixed_precision.set_global_policy(previous)

"""The images an export is checked on, and the calibration images of ``--quantize int8``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from basnet_cli.export.formats import ExportUsageError

if TYPE_CHECKING:
    from basnet_cli.export.run import ExportOptions


def _shared_ecssd() -> Path:
    # ../shared next to the checkout: basnet_cli/export/images.py -> parents[3].
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "ECSSD" / "images"


def synthetic_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` deterministic photo-like uint8 images: gradients, a few discs and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        img = c0 * (1 - yy[..., None]) + c1 * xx[..., None] * 0.5 + 30 * np.sin(
            6.28 * (xx + yy)[..., None] * rng.uniform(1, 4))
        for _ in range(rng.integers(1, 4)):
            cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.3)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            img[disc] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 6, img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def _image_paths(inputs: Sequence[str | Path]) -> list[Path]:
    from basnet_cli.errors import UsageError
    from basnet_cli.inputs import discover

    try:
        items, _ = discover([str(p) for p in inputs], recursive=True)
    except UsageError as exc:
        raise ExportUsageError(str(exc)) from None
    return sorted((item.path for item in items), key=str)


def _load_images(paths: Sequence[Path], size: int, limit: int) -> tuple[np.ndarray, int]:
    """Decode up to ``limit`` of ``paths`` (evenly spread) at ``size``; returns (images, failed)."""
    from basnet_cli import images as imgs

    if len(paths) > limit:
        picks = np.linspace(0, len(paths) - 1, limit).round().astype(int)
        paths = [paths[i] for i in sorted(set(picks.tolist()))]
    arrays, failed = [], 0
    for path in paths:
        try:
            arr, _ = imgs.load_for_model(path, size)
        except Exception:  # noqa: BLE001 - a bad file is skipped, counted
            failed += 1
            continue
        arrays.append(arr)
    if not arrays:
        return np.zeros((0, size, size, 3), np.uint8), failed
    return np.stack(arrays), failed


def check_images(opts: ExportOptions) -> tuple[np.ndarray, str]:
    """The images the check runs on and where they come from.

    ``--check-images`` when given; else the first ECSSD images in ``../shared`` when present;
    else deterministic synthetic images.
    """
    if opts.check_images:
        paths = _image_paths(opts.check_images)
        images, failed = _load_images(paths[: opts.check_count * 4], opts.size, opts.check_count)
        if not len(images):
            raise ExportUsageError("--check-images: no decodable image found")
        return images, "--check-images"
    ecssd = _shared_ecssd()
    if ecssd.is_dir():
        paths = sorted(ecssd.glob("*.jpg"))[: opts.check_count]
        images, _ = _load_images(paths, opts.size, opts.check_count)
        if len(images):
            return images, f"ECSSD, {ecssd}"
    return synthetic_images(opts.check_count, opts.size), "synthetic"


def calibration_images(opts: ExportOptions) -> np.ndarray:
    """Up to ``--calibration-limit`` decodable images of ``--calibration`` at ``--size``."""
    paths = _image_paths([str(opts.calibration)])
    images, _failed = _load_images(paths, opts.size, opts.calibration_limit)
    if not len(images):
        raise ExportUsageError(f"--calibration {opts.calibration}: no decodable image found")
    return images

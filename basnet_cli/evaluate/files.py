"""Files of ``basnet evaluate``: listing maps and masks by relative stem, the dataset's name,
decoding with the project's decoder (:mod:`basnet_cli.images`), fitting a map to its mask, and
an order-keeping bounded pool map."""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli.evaluate.options import EvaluateUsageError
from basnet_cli.images import MAP_EXTS


def list_files(folder: Path, exts: tuple[str, ...] = MAP_EXTS) -> dict[str, Path]:
    """Map relative stem (sub-folders kept, extension dropped) -> path; hidden names skipped."""
    out: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in exts:
            out.setdefault(rel.with_suffix("").as_posix(), path)
    return out


def in_shard(files: dict[str, Path], shard: tuple[int, int] | None) -> dict[str, Path]:
    """The entries of ``files`` (relative stem -> path) in shard ``(K, N)``; all when None."""
    if shard is None:
        return files
    from basnet_cli.inputs import shard_index

    k, n = shard
    return {stem: path for stem, path in files.items() if shard_index(stem, n) == k}


def resolve_gt_dir(gt: str | Path) -> tuple[Path, str]:
    """``--gt``: a folder of masks, or a dataset root (DUTS or plain layout) -> its mask folder.

    Returns ``(mask folder, dataset name)``.
    """
    from basnet_cli.data import DatasetError, detect_layout

    root = Path(gt)
    if not root.is_dir():
        raise EvaluateUsageError(f"--gt {gt}: not a folder")
    try:
        _, mask_dir, layout = detect_layout(root)
    except DatasetError:
        return root, dataset_name(root)
    return mask_dir, dataset_name(root)


def dataset_name(path: Path) -> str:
    """A dataset's display name from its folder (``DUTS-TE/DUTS-TE-Mask`` -> ``DUTS-TE``)."""
    path = path.resolve()
    generic = {"masks", "mask", "gt", "GT", "labels", "annotations", "test", "val"}
    name = path.name
    if name in generic and path.parent.name:
        name = path.parent.name
    for suffix in ("-Mask", "-mask", "_Mask", "-GT"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name or "dataset"


def read_gray(path: str | Path) -> np.ndarray:
    """Decode a map or mask to uint8 ``(H, W)`` with the project's decoder
    (:func:`basnet_cli.images.load_gray`: colour -> luminance, 16-bit -> 8-bit, every pixel
    decoded or an error, NaN maps refused)."""
    from basnet_cli.images import load_gray_uint8

    return load_gray_uint8(path)


def fit_to(pred: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """Resize a uint8 or float map to ``shape`` (H, W) bilinearly; (map, whether resized)."""
    from PIL import Image

    if pred.shape[:2] == tuple(shape):
        return pred, False
    h, w = shape
    if pred.dtype == np.uint8:
        out = Image.fromarray(pred, "L").resize((w, h), Image.Resampling.BILINEAR)
        return np.asarray(out, dtype=np.uint8), True
    out = Image.fromarray(np.asarray(pred, dtype=np.float32), "F").resize(
        (w, h), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0), True


def default_workers() -> int:
    """Scoring workers: the CPUs this process may run on (its affinity mask), up to 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - no affinity masks (macOS, Windows)
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def ordered(pool: cf.Executor, fn: Callable[[Any], Any], items: Iterable[Any],
            window: int) -> Iterator[Any]:
    """``pool.map`` in input order with at most ``window`` tasks in flight (streaming)."""
    pending: deque[cf.Future] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def error_text(exc: BaseException) -> str:
    """The first line of ``exc`` (at most 400 characters), for one-line failure reports."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:400]

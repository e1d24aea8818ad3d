"""Input planning for the inference pipeline: files, folders and globs -> input items, and the
``--shard`` each item belongs to.

Pure Python (no TensorFlow): an item's shard is a stable hash of its path relative to its input
root, the same on every machine and re-run.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from basnet_cli.images import IMAGE_EXTS
from basnet_cli.inference.device import InferenceUsageError


@dataclass(frozen=True)
class InputItem:
    """One input file: ``path`` as found, ``rel`` its POSIX path relative to its input root."""

    __slots__ = ("path", "rel", "root")
    path: Path
    rel: str
    root: Path


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTS)


def _has_magic(text: str) -> bool:
    return glob.has_magic(text)


def _glob_base(pattern: str) -> Path:
    """The leading directories of ``pattern`` that contain no wildcard."""
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts:
        if _has_magic(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def _walk(root: Path, recursive: bool, exclude: Path | None) -> Iterator[Path]:
    """Image files under ``root`` in sorted order; hidden files/folders and ``exclude`` skipped."""
    if not recursive:
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError as exc:
            raise InferenceUsageError(f"cannot list {root}: {exc.strerror or exc}") from None
        for entry in entries:
            # not only regular files: a broken link or a FIFO named like a photo gets its own
            # failure line (the decoder never opens a FIFO)
            if (not entry.name.startswith(".") and _is_image_name(entry.name)
                    and not entry.is_dir()):
                yield Path(entry.path)
        return
    for dirpath, dirnames, filenames in os.walk(root):
        keep = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            if exclude is not None and Path(dirpath, d).resolve() == exclude:
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if not name.startswith(".") and _is_image_name(name):
                yield Path(dirpath, name)  # os.walk lists links to folders as folders


def discover(inputs: Iterable[str], *, recursive: bool = True, exclude: str | Path | None = None
             ) -> tuple[list[InputItem], list[Path]]:
    """Expand files, folders and globs into :class:`InputItem` s.

    - a file is taken whatever its extension (``rel``: its name, root: its folder);
    - a folder contributes its image files (by extension; hidden names skipped), recursively
      unless ``recursive=False``; ``rel`` is relative to the folder;
    - a glob (``*``, ``?``, ``[..]``; ``**`` with ``recursive``) contributes its matching image
      files; ``rel`` is relative to the glob's leading wildcard-free folder.

    The same file reached twice is kept once.  Returns ``(items, roots)``.  A path that is
    neither an existing file/folder nor a glob is a usage error.
    """
    exclude_path = Path(exclude).resolve() if exclude is not None else None
    items: list[InputItem] = []
    roots: list[Path] = []
    seen: set[str] = set()

    def add(path: Path, root: Path) -> None:
        key = os.path.realpath(path)
        if key in seen:
            return
        # Files under --out (inside an input folder) are earlier outputs, not inputs; when
        # --out is the input folder itself (or above it) nothing can be told apart.
        if (exclude_path is not None and Path(key).is_relative_to(exclude_path)
                and not root.resolve().is_relative_to(exclude_path)):
            return
        seen.add(key)
        items.append(InputItem(path, path.relative_to(root).as_posix(), root))

    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            roots.append(path)
            for f in _walk(path, recursive, exclude_path):
                add(f, path)
        elif path.is_file() or (os.path.lexists(path) and not _has_magic(raw)):
            # a FIFO, device or broken link named directly: an input that fails with a reason
            roots.append(path.parent)
            add(path, path.parent)
        elif _has_magic(raw):
            base = _glob_base(raw)
            roots.append(base)
            matches = sorted(glob.glob(raw, recursive=recursive))
            for m in matches:
                mp = Path(m)
                if mp.is_file() and _is_image_name(mp.name) and not mp.name.startswith("."):
                    try:
                        mp.relative_to(base)
                    except ValueError:  # pragma: no cover - glob results start with the base
                        continue
                    add(mp, base)
        else:
            raise InferenceUsageError(
                f"input {raw!r} does not exist (not a file, folder or glob)")
    return items, roots


def shard_index(rel: str, n: int) -> int:
    """The shard (0..n-1) of a relative path: a stable 64-bit BLAKE2b hash, modulo ``n``.

    Depends only on the path relative to its input root, so it is the same on every machine,
    mount point and re-run.
    """
    digest = hashlib.blake2b(rel.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def in_shard(items: Iterable[InputItem], shard: tuple[int, int] | None) -> list[InputItem]:
    """The items of shard ``(K, N)`` (all of them when ``shard`` is None)."""
    if shard is None:
        return list(items)
    k, n = shard
    return [it for it in items if shard_index(it.rel, n) == k]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> ``(K, N)`` with 0 <= K < N (0-based, like Kubernetes and array-job indices)."""
    if text is None or text == "":
        return None
    try:
        k_s, n_s = text.split("/")
        k, n = int(k_s), int(n_s)
    except ValueError:
        raise InferenceUsageError(f"--shard {text!r}: expected K/N, e.g. 0/4") from None
    if n < 1 or not 0 <= k < n:
        raise InferenceUsageError(f"--shard {text}: need N >= 1 and 0 <= K < N (K is 0-based)")
    return k, n

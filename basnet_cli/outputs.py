"""Output planning for the inference pipeline: which files each input gets under ``--out``
(sub-folders mirrored, never outside ``--out``), which of them are still to write (resume), and
the checks on ``--out`` itself.

Pure Python (no TensorFlow).
"""

from __future__ import annotations

import collections
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from basnet_cli.images import KIND_EXT, output_is_complete
from basnet_cli.inference.device import InferenceUsageError
from basnet_cli.inputs import InputItem

KINDS = ("mask", "binary", "cutout", "overlay")
# Kinds that need the full-resolution photo at write time (re-decoded by the writer).
PHOTO_KINDS = ("cutout", "overlay")


def parse_kinds(values: Iterable[str]) -> list[str]:
    """``--kind`` values, each repeatable or comma-separated, in any case -> kind names (checked
    by the caller against :data:`KINDS`)."""
    kinds: list[str] = []
    for value in values:
        kinds.extend(k.strip().lower() for k in value.split(",") if k.strip())
    return kinds


def check_kinds(kinds: Sequence[str]) -> None:
    """At least one kind, each of :data:`KINDS`, each once (else :class:`InferenceUsageError`)."""
    if not kinds:
        raise InferenceUsageError("--kind: give at least one of " + ", ".join(KINDS))
    for kind in kinds:
        if kind not in KINDS:
            raise InferenceUsageError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise InferenceUsageError("--kind: each kind at most once")


@dataclass
class Failure:
    """An input that failed, and why (one line for the user)."""

    path: str
    reason: str

    def line(self) -> str:
        return f"{self.path}: {self.reason}"


class UnsafePathError(ValueError):
    """An output path that would leave ``--out`` (``..``, absolute parts, symlinks)."""


def safe_output_path(out_root: Path, rel_parts: Sequence[str]) -> Path:
    """``out_root / rel_parts`` after checking that nothing can take it outside ``out_root``.

    ``out_root`` must be resolved.  Parts must be plain names (no ``..``, ``.``, empty or
    absolute parts, no separators); no existing component below ``out_root`` may be a symlink.
    """
    for part in rel_parts:
        if part in ("", ".", "..") or "/" in part or os.sep in part or (
            os.altsep and os.altsep in part
        ) or "\0" in part:
            raise UnsafePathError(f"unsafe path component {part!r}")
    target = out_root.joinpath(*rel_parts)
    if not os.path.normpath(target).startswith(str(out_root)):
        raise UnsafePathError(f"{target} is outside {out_root}")
    current = out_root
    for part in rel_parts:
        current = current / part
        if os.path.islink(current):
            raise UnsafePathError(f"{current} is a symlink")
    return target


@dataclass
class Job:
    """One input and the output files to write for it."""

    item: InputItem
    outputs: dict[str, Path]


def output_parts(rel: str, name: str, kind: str, multi_kind: bool) -> list[str]:
    """The path parts under ``--out`` of output ``name`` of the input at ``rel``: its
    sub-folders, under a folder named after ``kind`` when several kinds are written."""
    parts = list(Path(rel).parent.parts)
    if Path(rel).parent == Path("."):
        parts = []
    if multi_kind:
        parts = [kind, *parts]
    return [*parts, name]


def plan_jobs(items: Sequence[InputItem], out_root: Path, kinds: Sequence[str]
              ) -> tuple[list[Job], list[Failure]]:
    """Map inputs to output paths under ``out_root`` (resolved).

    One kind: ``<out>/<sub-folders>/<stem>.png``; several kinds:
    ``<out>/<kind>/<sub-folders>/<stem>.png`` (overlays: ``.jpg``).
    Inputs whose outputs would collide (``a.jpg`` and ``a.png`` in one folder) are named
    ``<name-with-extension>.png`` instead (``a.jpg.png``).  An output that would still collide,
    leave ``--out`` or overwrite its own input is reported as a failure.
    """
    multi = len(kinds) > 1
    stem_key: dict[str, list[int]] = collections.defaultdict(list)
    for i, it in enumerate(items):
        p = Path(it.rel)
        stem_key[(p.parent / p.stem).as_posix()].append(i)
    names: list[str] = [""] * len(items)
    for idxs in stem_key.values():
        for i in idxs:
            p = Path(items[i].rel)
            names[i] = p.stem if len(idxs) == 1 else p.name

    jobs: list[Job] = []
    failures: list[Failure] = []
    taken: dict[Path, str] = {}
    for it, name in zip(items, names):
        outputs: dict[str, Path] = {}
        try:
            src = os.path.realpath(it.path)
            for kind in kinds:
                target = safe_output_path(
                    out_root, output_parts(it.rel, name + KIND_EXT[kind], kind, multi))
                if os.path.realpath(target) == src:
                    raise UnsafePathError(f"output {target} would overwrite the input itself")
                if target in taken:
                    raise UnsafePathError(f"output {target} is already the output of "
                                          f"{taken[target]}")
                outputs[kind] = target
        except UnsafePathError as exc:
            failures.append(Failure(str(it.path), f"refused: {exc}"))
            continue
        for target in outputs.values():
            taken[target] = str(it.path)
        jobs.append(Job(it, outputs))
    return jobs, failures


def check_out_dir(out: str | Path, roots: Iterable[Path], allow_inside_input: bool) -> Path:
    """Create ``--out`` if needed, check it is writable and not inside an input folder.

    Returns the resolved output root; raises :class:`InferenceUsageError`.
    """
    out_path = Path(out)
    if out_path.exists() and not out_path.is_dir():
        raise InferenceUsageError(f"--out {out}: exists and is not a folder")
    resolved = out_path.resolve()
    if not allow_inside_input:
        for root in roots:
            r = root.resolve()
            if resolved == r or resolved.is_relative_to(r):
                raise InferenceUsageError(
                    f"--out {out} is inside the input folder {root}; pick another folder or "
                    f"pass --allow-inside-input"
                )
    try:
        resolved.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=resolved, prefix=".basnet-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InferenceUsageError(
            f"--out {out} is not writable ({exc.strerror or exc})") from None
    return resolved


def pending_outputs(job: Job, overwrite: bool) -> dict[str, Path]:
    """The outputs of ``job`` still to write (all of them with ``overwrite``)."""
    if overwrite:
        return dict(job.outputs)
    return {k: p for k, p in job.outputs.items() if not output_is_complete(p)}

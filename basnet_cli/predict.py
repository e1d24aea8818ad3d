"""``basnet predict``: stream files, folders and globs of photos to masks at original resolution.

One process, three steps:

1. **Plan** (pure Python, no TensorFlow): find inputs (:func:`basnet_cli.inputs.discover`), keep
   this machine's ``--shard``, map each input to its outputs under ``--out``
   (:func:`basnet_cli.outputs.plan_jobs`: sub-folders mirrored, never outside ``--out``), and
   drop the inputs whose outputs already exist (resume).
2. **Stream** (:func:`basnet_cli.stream.run_stream`): decode in parallel, predict in batches,
   write each file atomically; a file that fails is reported and the run goes on.
3. **Summarise** (:class:`PredictSummary`): counts, throughput, failures, exit code.

The model (:func:`basnet_cli.inference.load_predictor`: presets, Keras files, exported models)
is loaded on the first decoded batch, so a re-run left with only broken files never pays for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli import images as imgs
from basnet_cli.inference import (
    DEVICES,
    RUNTIMES,
    InferenceUsageError,
    Predictor,
    check_model_spec,
    configure_device,
    load_predictor,
    with_tta,
)
from basnet_cli.inputs import discover, in_shard
from basnet_cli.model.config import DEFAULT_PRESET
from basnet_cli.outputs import Failure, Job, check_kinds, check_out_dir, pending_outputs, plan_jobs
from basnet_cli.runtime import PRECISIONS
from basnet_cli.stream import run_stream

# The usage error of predict is the inference pipeline's (inputs, outputs, model, device).
PredictUsageError = InferenceUsageError


@dataclass
class PredictOptions:
    """Everything ``basnet predict`` takes (see ``basnet predict --help`` for the meanings)."""

    inputs: Sequence[str]
    out: str | Path
    model: str = DEFAULT_PRESET
    preset: str | None = None
    kinds: Sequence[str] = ("mask",)
    size: int | None = None  # None: the model's default (model.io.default_size)
    batch_size: int = 8
    threshold: float = 0.5
    normalize: bool = False
    recursive: bool = True
    overwrite: bool = False
    allow_inside_input: bool = False
    shard: tuple[int, int] | None = None
    max_pixels: int = imgs.DEFAULT_MAX_PIXELS
    precision: str = "auto"
    device: str = "auto"
    runtime: str = "auto"
    tta: bool = False  # the loaded model also sees each photo's mirror image (inference.tta)
    workers: int | None = None
    verbose: bool = False

    def validate(self) -> None:
        """Check every option and fill ``size`` in; raises :class:`PredictUsageError`."""
        if not self.inputs:
            raise PredictUsageError("no inputs given")
        check_kinds(list(self.kinds))
        if self.size is None:
            from basnet_cli.model.io import default_size

            self.size = default_size(self.model, self.preset)
        if self.size < 32 or self.size % 32:
            raise PredictUsageError(f"--size {self.size}: must be a positive multiple of 32")
        if self.batch_size < 1:
            raise PredictUsageError("--batch-size must be >= 1")
        if not 0.0 <= self.threshold <= 1.0:
            raise PredictUsageError("--threshold must be in [0, 1]")
        if self.max_pixels < 0:
            raise PredictUsageError("--max-pixels must be >= 0 (0: no limit)")
        if self.precision not in PRECISIONS:
            raise PredictUsageError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.device not in DEVICES:
            raise PredictUsageError(f"--device must be one of {', '.join(DEVICES)}")
        if self.runtime not in RUNTIMES:
            raise PredictUsageError(f"--runtime must be one of {', '.join(RUNTIMES)}")
        if self.workers is not None and self.workers < 1:
            raise PredictUsageError("--workers must be >= 1")
        if self.shard is not None:
            k, n = self.shard
            if n < 1 or not 0 <= k < n:
                raise PredictUsageError(f"--shard {k}/{n}: need N >= 1 and 0 <= K < N")


@dataclass
class PredictSummary:
    """What a run did; ``exit_code`` is 0 when nothing failed, 1 otherwise."""

    found: int = 0
    in_shard: int = 0
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    files_written: int = 0
    elapsed_s: float = 0.0
    load_s: float = 0.0
    model: str = ""
    precision: str = ""
    device: str = ""
    runtime: str = ""  # what ran the model and why (RuntimeChoice.text())
    tta: bool = False
    size: int = 0
    kinds: list[str] = field(default_factory=list)
    out: str = ""
    shard: str | None = None
    interrupted: bool = False
    failures: list[Failure] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        """Throughput over the run, less the model's loading and first trace (``load_s``)."""
        busy = self.elapsed_s - self.load_s
        return self.processed / busy if busy > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "processed": self.processed,
            "skipped": self.skipped,
            "failed": self.failed,
            "found": self.found,
            "in_shard": self.in_shard,
            "files_written": self.files_written,
            "elapsed_s": round(self.elapsed_s, 3),
            "load_s": round(self.load_s, 3),
            "images_per_s": round(self.images_per_s, 2),
            "model": self.model,
            "precision": self.precision,
            "device": self.device,
            "runtime": self.runtime,
            "tta": self.tta,
            "size": self.size,
            "kinds": list(self.kinds),
            "out": self.out,
            "shard": self.shard,
            "interrupted": self.interrupted,
            "exit_code": self.exit_code,
            "failures": [{"path": f.path, "reason": f.reason} for f in self.failures],
        }


def run(opts: PredictOptions, *, predictor: Predictor | None = None,
        on_failure: Callable[[Failure], None] | None = None,
        progress: Any = None, precision_label: str | None = None) -> PredictSummary:
    """Run ``basnet predict``.  Raises :class:`PredictUsageError` for usage errors.

    ``predictor``: use this instead of loading ``opts.model`` (tests, other backends); it is
    used as it is (``opts.tta`` wraps a loaded model only).
    ``on_failure``: called once per failed input, as it happens (the CLI prints one line).
    ``progress``: an object with ``start(total)``, ``advance(n)`` and ``stop()`` (the CLI's Rich
    bar), or None.
    """
    opts.validate()
    assert opts.size is not None  # filled in by validate()
    started = time.perf_counter()
    kinds = list(opts.kinds)
    summary = PredictSummary(size=opts.size, kinds=kinds,
                             shard=f"{opts.shard[0]}/{opts.shard[1]}" if opts.shard else None)
    failures_lock = threading.Lock()

    def fail(path: str, reason: str) -> None:
        f = Failure(path, reason)
        with failures_lock:
            summary.failures.append(f)
            summary.failed += 1
        if on_failure is not None:
            on_failure(f)

    if predictor is None:
        check_model_spec(opts.model, opts.preset)
    out_given = Path(opts.out)
    items, roots = discover(opts.inputs, recursive=opts.recursive, exclude=out_given.resolve())
    summary.found = len(items)
    if not items:
        raise PredictUsageError("no input images found in " + ", ".join(map(str, opts.inputs)))
    out_root = check_out_dir(opts.out, roots, opts.allow_inside_input)
    summary.out = str(out_given)
    items = in_shard(items, opts.shard)
    summary.in_shard = len(items)
    jobs, plan_failures = plan_jobs(items, out_root, kinds)
    for f in plan_failures:
        fail(f.path, f.reason)

    todo: list[tuple[Job, dict[str, Path]]] = []
    for job in jobs:
        outputs = pending_outputs(job, opts.overwrite)
        if outputs:
            todo.append((job, outputs))
        else:
            summary.skipped += 1

    summary.model = opts.model if predictor is None else predictor.description
    if not todo:
        summary.elapsed_s = time.perf_counter() - started
        return summary

    if predictor is None:
        # Devices must be chosen before tf.data starts the TensorFlow runtime.
        summary.device = configure_device(opts.device, opts.verbose)
    else:
        summary.precision, summary.device = precision_label or "given", opts.device
    model: list[Predictor] = [predictor] if predictor is not None else []

    def get_predictor() -> Predictor:
        if not model:
            t0 = time.perf_counter()
            from basnet_cli.inference.runtimes import MEASURE_MIN_IMAGES

            choice: list[Any] = []
            loaded, summary.precision, summary.device = load_predictor(
                opts.model, precision=opts.precision, device=opts.device, verbose=opts.verbose,
                preset=opts.preset, runtime=opts.runtime, size=opts.size,
                batch_size=opts.batch_size, measure=len(todo) >= MEASURE_MIN_IMAGES,
                choice=choice)
            summary.runtime = choice[0].text() if choice else ""
            loaded = with_tta(loaded, opts.tta)
            summary.tta = opts.tta
            # Trace once outside the timed stream (a first call costs seconds, not images).
            loaded(np.zeros((1, opts.size, opts.size, 3), np.float32))
            summary.model = loaded.description
            summary.load_s = time.perf_counter() - t0
            model.append(loaded)
        return model[0]

    try:
        done = run_stream(todo, get_predictor, kinds=kinds, size=opts.size,
                          batch_size=opts.batch_size, out_root=out_root, on_failure=fail,
                          normalize=opts.normalize, threshold=opts.threshold,
                          max_pixels=opts.max_pixels or None, workers=opts.workers,
                          progress=progress, done_before=summary.skipped)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        summary.elapsed_s = time.perf_counter() - started
    summary.processed, summary.files_written = done.processed, done.files_written
    summary.failures.sort(key=lambda f: f.path)
    return summary

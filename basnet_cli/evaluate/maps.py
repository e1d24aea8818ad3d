"""Maps mode of ``basnet evaluate``: folders of saved maps (one per ``--pred``, any method)
against a folder of ground-truth masks.

Files pair by relative stem (``a/0001.jpg`` <-> ``a/0001.png``); a map of another size is
resized to the GT size (bilinear); GT files without a map (missing) and maps without a GT
(extra) are reported, not fatal.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

from basnet_cli import metrics as M
from basnet_cli.evaluate.files import (
    default_workers,
    error_text,
    fit_to,
    in_shard,
    list_files,
    ordered,
    read_gray,
    resolve_gt_dir,
)
from basnet_cli.evaluate.options import EvaluateUsageError, Progress, check_curve
from basnet_cli.evaluate.results import EvaluationRun, MethodResult


def _unique_names(paths: Sequence[Path], names: Sequence[str] | None) -> list[str]:
    if names:
        if len(names) != len(paths):
            raise EvaluateUsageError(f"{len(names)} --name values for {len(paths)} --pred folders")
        out = list(names)
    else:
        out = []
        for p in paths:
            resolved = p.resolve()
            name = resolved.name or str(p)
            if name in out or name.lower() in ("mask", "masks", "maps", "pred", "preds"):
                name = f"{resolved.parent.name}/{resolved.name}"
            out.append(name)
    if len(set(out)) != len(out):
        raise EvaluateUsageError(f"method names are not unique: {', '.join(out)}; use --name")
    return out


class _Scoring:
    """What scoring one image needs: the mask and map files, and a metric suite per method
    (its ``compute`` only; the sums are kept by the caller's suites)."""

    def __init__(self, gt_files: dict[str, Path], pred_files: list[dict[str, Path]],
                 curve: str) -> None:
        self.gt_files = gt_files
        self.pred_files = pred_files
        self.suites = [M.MetricSuite(curve=curve) for _ in pred_files]

    def __call__(self, stem: str) -> tuple[str, tuple[int, int] | None, list[Any]]:
        """One image's values for each method: ("ok", values, resized), ("error", reason) or
        None where the method has no map of it."""
        out: list[Any] = [None] * len(self.pred_files)
        try:
            gt_arr = read_gray(self.gt_files[stem])
        except Exception as exc:  # noqa: BLE001 - reported per file
            reason = f"ground truth {self.gt_files[stem].name}: {error_text(exc)}"
            return stem, None, [("error", reason) if stem in f else None for f in self.pred_files]
        truth = M.Truth(gt_arr)  # shared by every method: mask-only work is done once
        for i, files in enumerate(self.pred_files):
            if stem not in files:
                continue
            try:
                pred, resized = fit_to(read_gray(files[stem]), gt_arr.shape)
                values = self.suites[i].compute(M.prepare(pred, truth))
            except Exception as exc:  # noqa: BLE001 - reported per file
                out[i] = ("error", f"{files[stem].name}: {error_text(exc)}")
                continue
            out[i] = ("ok", values, resized)
        return stem, gt_arr.shape, out


_WORKER: _Scoring | None = None  # set in each pool process by _start_worker


def _start_worker(gt_files: dict[str, Path], pred_files: list[dict[str, Path]],
                  curve: str) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _WORKER = _Scoring(gt_files, pred_files, curve)


def _score_in_worker(stems: list[str]) -> list[tuple[str, tuple[int, int] | None, list[Any]]]:
    assert _WORKER is not None, "pool process started without _start_worker"
    return [_WORKER(stem) for stem in stems]


# stems per task sent to a scoring process (fewer round trips through the pool's queues)
STEMS_PER_TASK = 8


# below this many images per process, starting processes costs more than it saves
MIN_IMAGES_PER_PROCESS = 16


def _start_method() -> mp.context.BaseContext:
    """fork where it is safe and instant (Linux, no TensorFlow/JAX/PyTorch threads in this
    process); else forkserver or spawn, which re-import the caller's main module (scripts need
    an ``if __name__ == "__main__":`` guard, as with any process pool)."""
    methods = mp.get_all_start_methods()
    threaded = any(name in sys.modules for name in ("tensorflow", "jax", "torch"))
    if sys.platform.startswith("linux") and "fork" in methods and not threaded:
        return mp.get_context("fork")
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


@contextlib.contextmanager
def _scorer(workers: int, images: int, gt_files: dict[str, Path],
            pred_files: list[dict[str, Path]], curve: str
            ) -> Iterator[tuple[cf.Executor, Callable[[list[str]], list[Any]], int]]:
    """An executor, the function it runs on a list of stems and the list length to give it:
    ``workers`` processes (images are independent and the metrics hold the GIL, so threads do
    not scale), or one thread when one worker is asked for or the run is too small to pay for
    processes."""
    processes = min(workers, images // MIN_IMAGES_PER_PROCESS)
    if processes < 2:
        scoring = _Scoring(gt_files, pred_files, curve)
        with cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="evaluate") as pool:
            yield pool, lambda stems: [scoring(stem) for stem in stems], 1
        return
    with cf.ProcessPoolExecutor(max_workers=processes, mp_context=_start_method(),
                                initializer=_start_worker,
                                initargs=(gt_files, pred_files, curve)) as pool:
        # start every process now, before the caller starts threads (a progress bar's): a fork
        # must not copy a lock another thread holds
        pool.submit(os.getpid).result()
        try:
            yield pool, _score_in_worker, STEMS_PER_TASK
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def evaluate_maps(pred_dirs: Sequence[str | Path], gt: str | Path, *,
                  names: Sequence[str] | None = None, curve: str = "image",
                  workers: int | None = None, progress: Progress | None = None,
                  on_error: Callable[[str, str, str], None] | None = None,
                  shard: tuple[int, int] | None = None) -> EvaluationRun:
    """Score each folder of ``pred_dirs`` against the masks in ``gt`` (see the module doc).

    ``shard=(K, N)``: only the stems of shard K of N (:func:`~basnet_cli.inputs.shard_index` of
    the relative stem), masks and maps alike; :func:`~basnet_cli.evaluate.merge_reports` joins
    the reports of all N.

    ``on_error(method, stem, reason)`` is called for each map or mask that cannot be decoded;
    such images are left out of that method's numbers and listed in ``failed``.
    Raises :class:`EvaluateUsageError` when no map pairs with a mask at all.
    """
    check_curve(curve)
    if not pred_dirs:
        raise EvaluateUsageError("give at least one --pred folder")
    t0 = time.perf_counter()
    gt_dir, dataset = resolve_gt_dir(gt)
    gt_files = in_shard(list_files(gt_dir), shard)
    if not gt_files:
        where = f" of shard {shard[0]}/{shard[1]}" if shard else ""
        raise EvaluateUsageError(f"--gt {gt}: no mask files{where} in {gt_dir}")
    dirs = [Path(p) for p in pred_dirs]
    for d in dirs:
        if not d.is_dir():
            raise EvaluateUsageError(f"--pred {d}: not a folder")
    method_names = _unique_names(dirs, names)
    pred_files = [in_shard(list_files(d), shard) for d in dirs]
    results = []
    for name, d, files in zip(method_names, dirs, pred_files):
        results.append(MethodResult(
            name=name, source=str(d),
            missing=sorted(set(gt_files) - set(files)),
            extra=sorted(set(files) - set(gt_files)),
        ))
    stems = [s for s in sorted(gt_files) if any(s in f for f in pred_files)]
    if not stems:
        raise EvaluateUsageError(
            f"no map in {', '.join(map(str, dirs))} has a mask with the same name in {gt_dir}")
    suites = [M.MetricSuite(curve=curve) for _ in dirs]
    n = max(1, workers or default_workers())
    t_method = time.perf_counter()
    with _scorer(n, len(stems), gt_files, pred_files, curve) as (pool, fn, per_task):
        if progress is not None:
            progress.start(len(stems))
        tasks = [stems[i:i + per_task] for i in range(0, len(stems), per_task)]
        try:
            for stem, shape, outs in chain.from_iterable(ordered(pool, fn, tasks, window=4 * n)):
                for i, out in enumerate(outs):
                    if out is None:
                        continue
                    res = results[i]
                    if out[0] == "error":
                        res.failed.append((stem, out[1]))
                        if on_error is not None:
                            on_error(res.name, stem, out[1])
                        continue
                    _, values, resized = out
                    scalars = suites[i].add(values)
                    res.resized += int(resized)
                    res.per_image.append({"method": res.name, "name": stem,
                                          "height": shape[0], "width": shape[1], **scalars})
                if progress is not None:
                    progress.advance(1)
        finally:
            if progress is not None:
                progress.stop()
    elapsed = time.perf_counter() - t_method
    for res, suite in zip(results, suites):
        res.finish(suite, elapsed)
    return EvaluationRun(mode="maps", dataset=dataset, gt_dir=str(gt_dir), curve=curve,
                         methods=results, gt_count=len(gt_files), shard=shard,
                         seconds=time.perf_counter() - t0)

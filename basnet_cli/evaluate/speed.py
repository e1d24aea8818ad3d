"""Speed of the metrics against PySODMetrics, for ``make bench`` (not used by the tests of
``basnet evaluate`` itself)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli import metrics as M
from basnet_cli.evaluate.files import default_workers, fit_to, list_files, read_gray, resolve_gt_dir


def benchmark(gt: str | Path, pred: str | Path | None = None, *, limit: int = 1000,
              workers: int | None = None, seed: int = 0, rounds: int = 8) -> dict[str, Any]:
    """Maps/s of our metrics vs PySODMetrics on the same pairs.

    ``pred``: a folder of maps; without it, perturbed copies of the masks (blurred, noised,
    shifted) are made in memory. Times, on the same arrays already decoded (uint8 map, uint8
    mask), one thread: PySODMetrics (MAE, Fmeasure, Smeasure, Emeasure, WeightedFmeasure; each
    normalises its input, as its API does), ours on the same five metrics (``ours_maps_per_s``:
    one :func:`~basnet_cli.metrics.prepare` per pair, then the five) and ours with the relaxed
    boundary F too; plus ``basnet evaluate --pred`` on the same maps written to PNG files, run
    as a command (``workers`` processes, all metrics, decode included):
    ``ours_pipeline_maps_per_s`` is the rate it reports (the scoring's wall time),
    ``ours_command_maps_per_s`` the maps over the whole command's wall time (interpreter start,
    imports and file listing included).

    Fairness on a busy machine: BLAS/OpenMP pools are limited to one thread while timing (when
    ``threadpoolctl`` is importable), and the pairs are split into ``rounds`` chunks timed in
    turn (ours then PySODMetrics, the order swapped every chunk), so that load changes hit both
    alike. Each rate is given by wall clock (``*_maps_per_s``) and by the CPU time of the timing
    thread (``*_cpu_maps_per_s``, unaffected by time spent waiting for a core); ``speedup`` and
    ``speedup_cpu`` are ours over PySODMetrics on the same five metrics.
    """
    import contextlib
    import warnings

    from PIL import Image, ImageFilter

    gt_dir, _ = resolve_gt_dir(gt)
    gt_files = list_files(gt_dir)
    stems = sorted(gt_files)
    pred_files = list_files(Path(pred)) if pred is not None else {}
    if pred is not None:
        stems = [s for s in stems if s in pred_files]
    stems = stems[:limit]
    rng = np.random.default_rng(seed)
    pairs = []
    for k, stem in enumerate(stems):
        g = read_gray(gt_files[stem])
        if pred is not None:
            p, _ = fit_to(read_gray(pred_files[stem]), g.shape)
        else:
            blurred = np.asarray(Image.fromarray(g).filter(ImageFilter.GaussianBlur(1 + k % 5)),
                                 dtype=np.float32)
            noisy = blurred + rng.normal(0, 12, g.shape)
            p = np.clip(np.roll(noisy, (k % 7 - 3, k % 5 - 2), axis=(0, 1)), 0, 255)
            p = p.astype(np.uint8)
        pairs.append((p, g))
    out: dict[str, Any] = {"pairs": len(pairs)}
    try:
        import py_sod_metrics as psm
    except ImportError:
        psm = None
    try:
        from threadpoolctl import threadpool_limits
        one_thread: Any = threadpool_limits(limits=1)
    except ImportError:  # pragma: no cover - depends on the environment
        one_thread = contextlib.nullcontext()

    def run_ours(chunk: list[tuple[np.ndarray, np.ndarray]], metrics: list[Any]) -> None:
        for p, g in chunk:
            sample = M.prepare(p, g)
            for m in metrics:
                m.update(sample)

    def run_suite(chunk: list[tuple[np.ndarray, np.ndarray]], suite: M.MetricSuite) -> None:
        for p, g in chunk:
            suite.step(p, g)

    def run_ref(chunk: list[tuple[np.ndarray, np.ndarray]], metrics: list[Any]) -> None:
        for p, g in chunk:
            for m in metrics:
                m.step(p, g)

    def ours_five() -> list[Any]:
        return [M.MAE(), M.FMeasure(), M.SMeasure(), M.EMeasure(), M.WeightedFMeasure()]

    def ref_five() -> list[Any]:
        return [psm.MAE(), psm.Fmeasure(beta=0.3), psm.Smeasure(), psm.Emeasure(),
                psm.WeightedFmeasure()]

    with one_thread, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PySODMetrics' Fmeasure deprecation notice
        ours = ours_five()
        suite = M.MetricSuite()
        ref = ref_five() if psm is not None else None
        warm = pairs[:3]  # imports, first allocations
        run_ours(warm, ours_five())
        run_suite(warm, M.MetricSuite())
        if psm is not None:
            run_ref(warm, ref_five())
        jobs: dict[str, Callable[[list[Any]], None]] = {
            "ours": lambda c: run_ours(c, ours),
            "ours_all_metrics": lambda c: run_suite(c, suite),
        }
        if ref is not None:
            jobs["pysodmetrics"] = lambda c: run_ref(c, ref)
        wall = dict.fromkeys(jobs, 0.0)
        cpu = dict.fromkeys(jobs, 0.0)
        n_rounds = max(1, min(rounds, len(pairs)))
        bounds = np.linspace(0, len(pairs), n_rounds + 1).astype(int)
        for i in range(n_rounds):
            chunk = pairs[bounds[i]:bounds[i + 1]]
            names = list(jobs) if i % 2 == 0 else list(jobs)[::-1]
            for name in names:
                t, c = time.perf_counter(), time.thread_time()
                jobs[name](chunk)
                cpu[name] += time.thread_time() - c
                wall[name] += time.perf_counter() - t
    n = len(pairs)
    for name in ("ours", "ours_all_metrics", "pysodmetrics"):
        out[f"{name}_maps_per_s"] = n / wall[name] if name in wall else None
        out[f"{name}_cpu_maps_per_s"] = n / cpu[name] if name in cpu else None
    if "pysodmetrics" in wall:
        out["speedup"] = wall["pysodmetrics"] / wall["ours"]
        out["speedup_cpu"] = cpu["pysodmetrics"] / cpu["ours"]
    else:
        out["speedup"] = out["speedup_cpu"] = None
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="basnet-bench-") as tmp:
        maps = Path(tmp)
        for stem, (p, _) in zip(stems, pairs):  # the command reads files: the timed maps
            target = maps / f"{stem}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(p).save(target)
        n_workers = workers or default_workers()
        # the real command, in its own process as a user runs it (interpreter start included)
        cmd = [sys.executable, "-m", "basnet_cli", "evaluate", "--pred", str(maps),
               "--gt", str(gt), "--no-report", "--json", "--workers", str(n_workers)]
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        command_s = time.perf_counter() - t
        if done.returncode != 0:
            raise RuntimeError(f"basnet evaluate failed ({done.returncode}): {done.stderr[-800:]}")
        method = json.loads(done.stdout)["methods"][0]
    if method["images"] != len(pairs):
        raise RuntimeError(f"basnet evaluate scored {method['images']} of {len(pairs)} maps")
    out["ours_pipeline_maps_per_s"] = method["maps_per_second"]
    out["ours_command_maps_per_s"] = len(pairs) / command_s
    out["pipeline_workers"] = n_workers
    return out

"""Device set-up, models, timed steps and :func:`run_benchmark`: the measurements described in
:mod:`basnet_cli.benchmark` (inference, predict, train, peak RSS)."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli.benchmark.machine import framework_info, machine_info, machine_line, peak_rss_mib
from basnet_cli.display import printable
from basnet_cli.errors import UsageError
from basnet_cli.model.config import DEFAULT_PRESET

RANDOM_INIT_NOTE = ("random initialisation (no trained weights found): speed and memory only, "
                    "the masks mean nothing")
PHASES = ("inference", "predict", "train")


class BenchmarkError(UsageError):
    """Bad options or a model that cannot be benchmarked (a usage error)."""


# ---------------------------------------------------------------------------------------------
# The device.


def setup_device(device: str = "auto") -> dict[str, Any]:
    """Apply ``--device`` (before any model is built) and describe what will run the model.

    Returns ``{"device": "cpu" | "gpu xN", "name": CPU model or GPU names, "pin": "/CPU:0" or
    None}``.
    """
    from basnet_cli.inference import InferenceUsageError, configure_device

    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":  # pragma: no cover
        from basnet_cli.runtime import gpu_available

        desc = "gpu" if device != "cpu" and gpu_available() else "cpu"
        return {"device": desc, "name": machine_line() if desc == "cpu" else desc, "pin": None}
    try:
        desc = configure_device(device)
    except InferenceUsageError as exc:
        raise BenchmarkError(str(exc)) from None
    name = machine_line()
    if desc != "cpu":
        from basnet_cli.runtime import import_tf

        tf = import_tf()
        names = []
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                names.append(tf.config.experimental.get_device_details(gpu).get(
                    "device_name", gpu.name))
            except Exception:  # noqa: BLE001 - a description only
                names.append(gpu.name)
        name = ", ".join(names) or desc
    return {"device": desc, "name": name, "pin": "/CPU:0" if desc == "cpu" else None}


# ---------------------------------------------------------------------------------------------
# Models.


@dataclass
class BenchModel:
    """A model ready to time: ``predictor`` for inference, ``model`` (8 outputs) for training."""

    spec: str
    name: str
    precision: str
    weights: str  # a path, or "random init"
    params: int | None
    predictor: Any
    model: Any = None  # None for exported models (no training step)
    compiled: bool = False

    @property
    def random_init(self) -> bool:
        return self.weights == "random init"

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "name": self.name, "precision": self.precision,
                "weights": self.weights, "params": self.params,
                "trainable": self.model is not None}


def load_model(spec: str = DEFAULT_PRESET, *, precision: str = "auto", device: str = "cpu",
               pin: str | None = None, preset: str | None = None) -> BenchModel:
    """Build ``spec`` under ``precision``: a preset (bundled weights, else random init), a
    ``.weights.h5`` / ``.keras`` file, or an exported model a predictor loader accepts.

    ``device``/``pin`` come from :func:`setup_device`.  The global dtype policy is restored.
    """
    from basnet_cli.inference import (
        InferenceUsageError,
        concrete_precision,
        keras_predictor,
        load_exported,
    )
    from basnet_cli.model.basnet import inference_model
    from basnet_cli.model.io import ModelSpecError, load_training_model, loading, resolve
    from basnet_cli.runtime import import_keras

    import_keras()
    try:
        exported = load_exported(spec)
        if exported is not None:
            return BenchModel(spec, exported.description, "exported", spec, None, exported)
        source = resolve(spec, preset=preset, require_weights=False)
        concrete = concrete_precision(precision, device)
    except (InferenceUsageError, ModelSpecError, ValueError) as exc:
        raise BenchmarkError(str(exc)) from None
    with loading(spec, concrete, BenchmarkError):
        if pin is not None:
            import tensorflow as tf

            with tf.device(pin):
                model = load_training_model(source)
        else:
            model = load_training_model(source)
    name = source.config.name if source.config is not None else model.name
    predictor = keras_predictor(inference_model(model), device=pin,
                                description=f"{source.describe()} [{concrete}]")
    weights = str(source.path) if source.path is not None else "random init"
    return BenchModel(spec, name, concrete, weights, int(model.count_params()), predictor, model)


def release(*models: BenchModel) -> None:
    """Drop models and Keras' global state (between suites of models)."""
    import gc

    from basnet_cli.runtime import import_keras

    for m in models:
        m.predictor = None
        m.model = None
    import_keras().backend.clear_session()
    gc.collect()


# ---------------------------------------------------------------------------------------------
# Timed steps.


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of per-repeat images/s (and the values themselves)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"images_per_s": None, "s_per_image": None, "min": None, "max": None,
                "values": []}
    med = statistics.median(vals)
    return {"images_per_s": round(med, 4), "s_per_image": round(1.0 / med, 5) if med else None,
            "min": round(min(vals), 4), "max": round(max(vals), 4),
            "values": [round(v, 4) for v in vals]}


_INPUTS: dict[tuple[int, int], np.ndarray] = {}


def _batch(size: int, batch_size: int) -> np.ndarray:
    key = (size, batch_size)
    if key not in _INPUTS:
        rng = np.random.default_rng(size * 1000 + batch_size)
        _INPUTS[key] = rng.uniform(0, 255, (batch_size, size, size, 3)).astype(np.float32)
    return _INPUTS[key]


def _timed(step: Callable[[], Any], steps: int, min_seconds: float) -> tuple[int, float, Any]:
    """Call ``step`` at least ``steps`` times and for at least ``min_seconds``.

    Returns ``(calls, seconds, last result)``."""
    calls, out = 0, None
    t0 = time.perf_counter()
    while True:
        out = step()
        calls += 1
        elapsed = time.perf_counter() - t0
        if calls >= steps and elapsed >= min_seconds:
            return calls, elapsed, out


def time_inference(bm: BenchModel, *, size: int, batch_size: int, steps: int,
                   min_seconds: float = 0.0) -> float:
    """Images/s of model calls on one random ``batch_size`` x ``size``^2 batch: at least
    ``steps`` calls and at least ``min_seconds``."""
    x = _batch(size, batch_size)
    predictor = bm.predictor
    calls, elapsed, out = _timed(lambda: predictor(x), steps, min_seconds)
    if out.shape[:3] != (batch_size, size, size):
        raise BenchmarkError(f"{bm.spec}: unexpected output shape {out.shape}")
    return calls * batch_size / elapsed


def _train_batch(size: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    x = _batch(size, batch_size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    masks = []
    for i in range(batch_size):
        r = 0.2 + 0.05 * (i % 4)
        masks.append((np.hypot(yy - 0.5, xx - 0.4 - 0.05 * (i % 3)) < r).astype(np.float32))
    return x, np.stack(masks)[..., None]


def compile_for_training(bm: BenchModel, x: np.ndarray | None = None,
                         y: np.ndarray | None = None, lr: float = 1e-4) -> None:
    """Adam + the hybrid loss on all 8 outputs, as ``basnet train`` compiles it.

    With a batch ``x``/``y``, the loss trackers and Adam's slots are created now, symbolically:
    otherwise the first step traces the train function twice (the first trace only to create
    those variables), which costs as much again as the trace itself and is no part of a step.
    """
    if bm.model is None:
        raise BenchmarkError(f"{bm.spec}: an exported model has no training step")
    if bm.compiled:
        return
    from basnet_cli.runtime import import_keras

    keras = import_keras()
    from basnet_cli.losses import HybridLoss
    from basnet_cli.model.basnet import OUTPUT_NAMES

    n = len(bm.model.outputs)
    bm.model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr),
                     loss=[HybridLoss(name=f"{name}_loss") for name in OUTPUT_NAMES[:n]])
    bm.compiled = True
    if x is not None and y is not None:
        build = getattr(bm.model, "_symbolic_build", None)  # Keras 3 private API: best effort
        try:
            if build is not None:
                build(data_batch=(x, [y] * n, None))
            else:  # pragma: no cover
                bm.model.optimizer.build(bm.model.trainable_variables)
        except Exception:  # noqa: BLE001 - only an optimisation of the warm-up
            pass


def time_train(bm: BenchModel, *, size: int, batch_size: int, steps: int,
               min_seconds: float = 0.0) -> float:
    """Images/s of training steps (forward, hybrid loss, backward, Adam update): at least
    ``steps`` steps and at least ``min_seconds``."""
    x, y = _train_batch(size, batch_size)
    compile_for_training(bm, x, y)
    model = bm.model
    targets = [y] * len(model.outputs)
    calls, elapsed, logs = _timed(
        lambda: model.train_on_batch(x, targets, return_dict=True), steps, min_seconds)
    loss = float(np.asarray(logs["loss"]))
    if not np.isfinite(loss):
        raise BenchmarkError(f"{bm.spec}: the training loss is {loss}")
    return calls * batch_size / elapsed


def alternate(runs: Sequence[Callable[[], float]], repeats: int) -> list[list[float]]:
    """Run ``runs`` in turn, ``repeats`` times (A, B, C, A, B, C, ...): slow drifts of the
    machine (other jobs, clocks, heat) then touch every contender alike.  Returns each run's
    per-repeat values."""
    values: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for i, fn in enumerate(runs):
            values[i].append(fn())
    return values


# ---------------------------------------------------------------------------------------------
# End-to-end predict.


def synthetic_photos(folder: Path, n: int, size: tuple[int, int] = (400, 300),
                     seed: int = 0) -> list[Path]:
    """Write ``n`` JPEG photos (ECSSD-like 400x300: smooth background, a bright object)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        base = np.stack([xx / w * 180 + 20, yy / h * 160 + 40, np.full_like(xx, 70.0)], -1)
        disc = (np.hypot(xx - cx, yy - cy) < rng.uniform(0.15, 0.3) * min(w, h))[..., None]
        arr = np.where(disc, np.array([225.0, 70.0, 50.0]), base) + rng.normal(0, 8, (h, w, 3))
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, as ``basnet predict`` finds them)."""
    from basnet_cli.inputs import discover

    root = Path(folder)
    if not root.is_dir():
        raise BenchmarkError(f"--images {folder}: not a folder")
    try:
        items, _ = discover([str(root)])
    except UsageError as exc:
        raise BenchmarkError(str(exc)) from None
    paths = [item.path for item in items]
    if not paths:
        raise BenchmarkError(f"--images {folder}: no image files")
    return paths[:limit] if limit else paths


def usable_photos(paths: Sequence[Path], size: int
                  ) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The photos that decode (kept in order) and ``(path, reason)`` for the others, so one bad
    file is reported and left out instead of failing every timed round."""
    from basnet_cli import images as imgs

    good, bad = [], []
    for path in paths:
        try:
            imgs.load_rgb(path, draft_size=size)
        except imgs.DecodeError as exc:
            bad.append((path, str(exc)))
        else:
            good.append(path)
    return good, bad


def time_predict(bm: BenchModel, paths: Sequence[Path], *, size: int, batch_size: int,
                 kinds: Sequence[str] = ("mask",), workers: int | None = None
                 ) -> dict[str, Any]:
    """One run of ``basnet predict``'s streaming pipeline (:func:`basnet_cli.stream.run_stream`)
    over ``paths`` into a temporary folder (removed afterwards): ``{"images_per_s", "processed",
    "files_written", "elapsed_s"}``."""
    from basnet_cli.inputs import InputItem
    from basnet_cli.outputs import plan_jobs
    from basnet_cli.stream import run_stream

    out = Path(tempfile.mkdtemp(prefix="basnet-bench-predict-")).resolve()
    failures: list[str] = []
    try:
        started = time.perf_counter()
        items = [InputItem(Path(p), f"{i:08d}{Path(p).suffix}", Path(p).parent)
                 for i, p in enumerate(paths)]
        jobs, refused = plan_jobs(items, out, kinds)
        failures += [f.line() for f in refused]
        done = run_stream([(job, job.outputs) for job in jobs], lambda: bm.predictor,
                          kinds=kinds, size=size, batch_size=batch_size, out_root=out,
                          workers=workers,
                          on_failure=lambda path, reason: failures.append(f"{path}: {reason}"))
        elapsed = time.perf_counter() - started
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if failures:
        raise BenchmarkError(f"predict: {len(failures)} inputs failed ({failures[0]})")
    return {"images_per_s": done.processed / elapsed if elapsed > 0 else 0.0,
            "processed": done.processed, "files_written": done.files_written,
            "elapsed_s": elapsed}


# ---------------------------------------------------------------------------------------------
# `basnet benchmark`.


@dataclass
class BenchmarkOptions:
    """Every option of ``basnet benchmark``."""

    model: str = DEFAULT_PRESET
    preset: str | None = None
    size: int = 320
    batch_size: int = 8
    precision: str = "auto"
    device: str = "auto"
    images: str | None = None
    predict_images: int | None = None  # None: steps x batch size; 0: every file in --images
    steps: int = 5
    warmup: int = 1
    repeats: int = 3
    min_seconds: float = 0.0  # each timed repeat runs at least this long
    train_size: int | None = None  # None: --size
    train_batch_size: int | None = None  # None: --batch-size
    phases: Sequence[str] = PHASES
    workers: int | None = None

    def validate(self) -> None:
        for name in ("size", "train_size"):
            value = getattr(self, name)
            if value is not None and (value < 32 or value % 32):
                raise BenchmarkError(f"--{name.replace('_', '-')} {value}: must be a positive "
                                     f"multiple of 32")
        for name in ("batch_size", "steps", "repeats"):
            if getattr(self, name) < 1:
                raise BenchmarkError(f"--{name.replace('_', '-')} must be >= 1")
        if self.warmup < 0:
            raise BenchmarkError("--warmup must be >= 0")
        if self.min_seconds < 0:
            raise BenchmarkError("--min-seconds must be >= 0")
        if self.train_batch_size is not None and self.train_batch_size < 1:
            raise BenchmarkError("--train-batch-size must be >= 1")
        if self.predict_images is not None and self.predict_images < 0:
            raise BenchmarkError("--predict-images must be >= 0")
        if self.predict_images == 0 and not self.images:
            raise BenchmarkError("--predict-images 0 (all files) needs --images DIR")
        from basnet_cli.inference import DEVICES
        from basnet_cli.runtime import PRECISIONS

        if self.precision not in PRECISIONS:
            raise BenchmarkError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.device not in DEVICES:
            raise BenchmarkError(f"--device must be one of {', '.join(DEVICES)}")
        unknown = [p for p in self.phases if p not in PHASES]
        if unknown or not self.phases:
            raise BenchmarkError(f"phases must be among {', '.join(PHASES)}")


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` measured (``to_dict`` is the ``--json`` output)."""

    machine: dict[str, Any]
    device: dict[str, Any]
    framework: dict[str, Any]
    model: dict[str, Any]
    settings: dict[str, Any]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped_inputs: list[dict[str, str]] = field(default_factory=list)  # unreadable photos
    peak_rss_mib: float = 0.0
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "device": self.device, "framework": self.framework,
                "model": self.model, "settings": self.settings, "results": self.results,
                "peak_rss_mib": self.peak_rss_mib, "elapsed_s": round(self.elapsed_s, 2),
                "notes": self.notes, "skipped_inputs": self.skipped_inputs}


def run_benchmark(opts: BenchmarkOptions,
                  log: Callable[[str], None] | None = None) -> BenchmarkResult:
    """Warm up, then time each phase ``repeats`` times; medians of images/s, peak RSS.

    ``log``: called with a short line as each phase starts (the CLI prints it on stderr).
    """
    say = log or (lambda _msg: None)
    opts.validate()
    started = time.perf_counter()
    dev = setup_device(opts.device)
    machine = machine_info()
    framework = framework_info()
    say(f"building {opts.model} ({opts.precision}) on {dev['device']}")
    bm = load_model(opts.model, precision=opts.precision, device=dev["device"], pin=dev["pin"],
                    preset=opts.preset)
    train_size = opts.train_size or opts.size
    train_batch = opts.train_batch_size or opts.batch_size
    settings = {"size": opts.size, "batch_size": opts.batch_size, "precision": bm.precision,
                "steps": opts.steps, "warmup": opts.warmup, "repeats": opts.repeats,
                "min_seconds": opts.min_seconds, "train_size": train_size,
                "train_batch_size": train_batch, "phases": list(opts.phases)}
    result = BenchmarkResult(machine=machine, device={k: v for k, v in dev.items() if k != "pin"},
                             framework=framework, model=bm.describe(), settings=settings)
    if bm.random_init:
        result.notes.append(RANDOM_INIT_NOTE)
    if dev["device"] == "cpu" and bm.precision == "bfloat16" and "amx_bf16" not in \
            machine["cpu_features"] and "avx512_bf16" not in machine["cpu_features"]:
        result.notes.append("bfloat16 on a CPU without AMX/AVX512-BF16: emulated, often slower")

    def phase(name: str, values: list[float], **extra: Any) -> None:
        row = summarize(values)
        row.update(extra)
        row["peak_rss_mib"] = peak_rss_mib()
        result.results[name] = row

    if "inference" in opts.phases:
        say(f"inference: {opts.warmup} warm-up + {opts.repeats} x {opts.steps} batches of "
            f"{opts.batch_size} at {opts.size}px")
        if opts.warmup:
            time_inference(bm, size=opts.size, batch_size=opts.batch_size, steps=opts.warmup)
        values = [time_inference(bm, size=opts.size, batch_size=opts.batch_size,
                                 steps=opts.steps, min_seconds=opts.min_seconds)
                  for _ in range(opts.repeats)]
        phase("inference", values, size=opts.size, batch_size=opts.batch_size,
              images=opts.steps * opts.batch_size)

    if "predict" in opts.phases:
        tmp: Path | None = None
        try:
            n = opts.predict_images if opts.predict_images is not None else \
                opts.steps * opts.batch_size
            if opts.images:
                paths = list_images(opts.images, n or None)
                paths, bad = usable_photos(paths, opts.size)
                for path, reason in bad:
                    say(f"skipping {printable(path)}: {reason}")
                result.skipped_inputs += [{"path": str(p), "reason": r} for p, r in bad]
                if not paths:
                    raise BenchmarkError(f"--images {opts.images}: no readable photos")
                source = opts.images
            else:
                tmp = Path(tempfile.mkdtemp(prefix="basnet-bench-photos-"))
                paths = synthetic_photos(tmp, n)
                source = "synthetic 400x300 JPEG photos"
            say(f"predict: {opts.repeats} x {len(paths)} photos ({source}), decode -> infer -> "
                f"encode -> write")
            if opts.warmup:
                time_predict(bm, paths[: opts.batch_size], size=opts.size,
                             batch_size=opts.batch_size, workers=opts.workers)
            runs = [time_predict(bm, paths, size=opts.size, batch_size=opts.batch_size,
                                 workers=opts.workers)
                    for _ in range(opts.repeats)]
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        phase("predict", [r["images_per_s"] for r in runs], size=opts.size,
              batch_size=opts.batch_size, images=len(paths), source=source, kinds=["mask"])

    if "train" in opts.phases:
        if bm.model is None:
            result.notes.append("train: skipped, an exported model cannot be trained")
        else:
            say(f"train: {opts.warmup} warm-up + {opts.repeats} x {opts.steps} steps of "
                f"{train_batch} at {train_size}px")
            if opts.warmup:
                time_train(bm, size=train_size, batch_size=train_batch, steps=opts.warmup)
            values = [time_train(bm, size=train_size, batch_size=train_batch, steps=opts.steps,
                                 min_seconds=opts.min_seconds) for _ in range(opts.repeats)]
            phase("train", values, size=train_size, batch_size=train_batch,
                  images=opts.steps * train_batch)

    result.peak_rss_mib = peak_rss_mib()
    result.elapsed_s = time.perf_counter() - started
    return result

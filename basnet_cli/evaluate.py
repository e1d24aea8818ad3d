"""``basnet evaluate``: score saliency maps against ground truth, streaming and in parallel.

Two modes:

* **maps** (:func:`evaluate_maps`): folders of saved maps (one per ``--pred``, any method) against
  a folder of ground-truth masks. Files pair by relative stem (``a/0001.jpg`` <-> ``a/0001.png``);
  a map of another size is resized to the GT size (bilinear); GT files without a map (missing)
  and maps without a GT (extra) are reported, not fatal.
* **model** (:func:`evaluate_model`): run a model over a labelled dataset (the layouts of
  :func:`basnet_cli.data.find_pairs`), each image resized to ``size`` x ``size``, the map resized
  back to the GT size (bilinear) and quantised to 8 bits exactly as ``basnet predict`` writes
  masks, so the numbers equal those of maps mode on the saved maps (``--save-maps``).

Nothing holds all maps: a bounded window of images is in flight in a thread pool (decoding,
resizing and the per-image metric work; NumPy and Pillow release the GIL), and the main thread
only adds each image's numbers to running sums, in input order, so results are deterministic.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from basnet_cli import metrics as M
from basnet_cli.images import MAP_EXTS
from basnet_cli.model.config import DEFAULT_SIZE

CURVES = ("image", "dataset")


class EvaluateUsageError(ValueError):
    """Bad options or nothing to evaluate (exit code 2)."""


class Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, n: int) -> None: ...

    def stop(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class MethodResult:
    """One method's numbers (a ``--pred`` folder or the model)."""

    name: str
    source: str
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    count: int = 0
    per_image: list[dict[str, Any]] = field(default_factory=list)
    # maps mode: GT stems without a map / maps without a GT;
    # model mode: images without a mask / masks without an image
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (stem, reason)
    resized: int = 0  # maps resized to their GT's size
    seconds: float = 0.0

    @property
    def maps_per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class EvaluationRun:
    """Everything one ``basnet evaluate`` call produced."""

    mode: str  # "maps" | "model"
    dataset: str
    gt_dir: str
    curve: str
    methods: list[MethodResult]
    model: str | None = None
    size: int | None = None
    gt_count: int = 0
    seconds: float = 0.0

    @property
    def evaluated(self) -> int:
        return sum(m.count for m in self.methods)

    @property
    def failures(self) -> int:
        return sum(len(m.failed) for m in self.methods)

    def conventions(self) -> dict[str, Any]:
        return conventions(self.curve)


def conventions(curve: str = "image") -> dict[str, Any]:
    """The conventions behind the numbers, for reports."""
    return {
        "pred": "uint8 maps / 255, then per-image min-max (PySODMetrics' normalize=True); float "
                "maps are first quantised to uint8 as `basnet predict` writes them",
        "gt": "binary, gt > 128",
        "f_beta2": M.BETA2,
        "thresholds": "256 (0..255 on the normalised map, pred >= t)",
        "f_curve": {"image": "per-image P/R/F curves averaged over images (PySODMetrics)",
                    "dataset": "P and R averaged over images, then F (classic toolboxes)"}[curve],
        "adaptive_threshold": "min(2 * mean(pred), 1) per image",
        "s_measure_alpha": 0.5,
        "weighted_f": "beta^2 = 1, 7x7 Gaussian sigma 5 (Margolin et al.)",
        "relaxed_f": "pred >= 0.5, boundary = mask XOR 3x3 erosion, rho = 3 px (Euclidean), "
                     "beta^2 = 0.3, per image then averaged (BASNet)",
        "resize": "maps of another size are resized to the GT size (bilinear)",
    }


# ---------------------------------------------------------------------------------------------
# Files and decoding


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
        return root, _dataset_name(root)
    return mask_dir, _dataset_name(root)


def _dataset_name(path: Path) -> str:
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
    from basnet_cli.images import load_gray

    return M.to_uint8(load_gray(path))


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


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _ordered(pool: cf.Executor, fn: Callable[[Any], Any], items: Iterable[Any],
             window: int) -> Iterator[Any]:
    """``pool.map`` in input order with at most ``window`` tasks in flight (streaming)."""
    pending: deque[cf.Future] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _error_text(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:400]


# ---------------------------------------------------------------------------------------------
# Maps mode


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


def evaluate_maps(pred_dirs: Sequence[str | Path], gt: str | Path, *,
                  names: Sequence[str] | None = None, curve: str = "image",
                  workers: int | None = None, progress: Progress | None = None,
                  on_error: Callable[[str, str, str], None] | None = None) -> EvaluationRun:
    """Score each folder of ``pred_dirs`` against the masks in ``gt`` (see the module doc).

    ``on_error(method, stem, reason)`` is called for each map or mask that cannot be decoded;
    such images are left out of that method's numbers and listed in ``failed``.
    Raises :class:`EvaluateUsageError` when no map pairs with a mask at all.
    """
    if curve not in CURVES:
        raise EvaluateUsageError(f"--curve must be one of {', '.join(CURVES)}, got {curve!r}")
    if not pred_dirs:
        raise EvaluateUsageError("give at least one --pred folder")
    t0 = time.perf_counter()
    gt_dir, dataset = resolve_gt_dir(gt)
    gt_files = list_files(gt_dir)
    if not gt_files:
        raise EvaluateUsageError(f"--gt {gt}: no mask files in {gt_dir}")
    dirs = [Path(p) for p in pred_dirs]
    for d in dirs:
        if not d.is_dir():
            raise EvaluateUsageError(f"--pred {d}: not a folder")
    method_names = _unique_names(dirs, names)
    pred_files = [list_files(d) for d in dirs]
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

    def work(stem: str) -> tuple[str, tuple[int, int] | None, list[Any]]:
        out: list[Any] = [None] * len(dirs)
        try:
            gt_arr = read_gray(gt_files[stem])
        except Exception as exc:  # noqa: BLE001 - reported per file
            reason = f"ground truth {gt_files[stem].name}: {_error_text(exc)}"
            return stem, None, [("error", reason) if stem in f else None for f in pred_files]
        truth = M.Truth(gt_arr)  # shared by every method: mask-only work is done once
        for i, files in enumerate(pred_files):
            if stem not in files:
                continue
            try:
                pred, resized = fit_to(read_gray(files[stem]), gt_arr.shape)
                values = suites[i].compute(M.prepare(pred, truth))
            except Exception as exc:  # noqa: BLE001 - reported per file
                out[i] = ("error", f"{files[stem].name}: {_error_text(exc)}")
                continue
            out[i] = ("ok", values, resized)
        return stem, gt_arr.shape, out

    n = max(1, workers or _default_workers())
    if progress is not None:
        progress.start(len(stems))
    try:
        with cf.ThreadPoolExecutor(max_workers=n, thread_name_prefix="evaluate") as pool:
            t_method = time.perf_counter()
            for stem, shape, outs in _ordered(pool, work, stems, window=4 * n):
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
        _finish(res, suite, elapsed)
    return EvaluationRun(mode="maps", dataset=dataset, gt_dir=str(gt_dir), curve=curve,
                         methods=results, gt_count=len(gt_files),
                         seconds=time.perf_counter() - t0)


def _finish(res: MethodResult, suite: M.MetricSuite, seconds: float) -> None:
    out = suite.get_results()
    res.count = out["count"]
    res.metrics = out["metrics"]
    res.curves = out["curves"]
    res.seconds = seconds


# ---------------------------------------------------------------------------------------------
# Model mode

BatchPredictor = Callable[[np.ndarray], np.ndarray]


class SimplePredictor:
    """A Keras inference model behind one ``tf.function`` (float32 RGB 0..255 NHWC in,
    ``(B, H, W)`` probabilities out). Small on purpose: ``predict_batch`` is the one place to
    swap in the streaming predict pipeline's predictor."""

    def __init__(self, model: Any, description: str = "") -> None:
        from basnet_cli.runtime import import_tf

        tf = import_tf()
        self._tf = tf
        self.model = model
        self.description = description or getattr(model, "name", "model")
        self._fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = self._tf.convert_to_tensor(images, dtype=self._tf.float32)
        return np.asarray(self._fn(x), dtype=np.float32)


def load_predictor(spec: str) -> SimplePredictor:
    """``--model`` (preset with bundled weights, .weights.h5 or .keras) -> a predictor.

    Raises :class:`EvaluateUsageError` when ``spec`` names nothing loadable.
    """
    from basnet_cli.model.io import ModelSpecError, load_inference_model, resolve
    from basnet_cli.runtime import import_keras

    try:
        source = resolve(spec)
    except ModelSpecError as exc:
        raise EvaluateUsageError(str(exc)) from None
    import_keras()
    try:
        model = load_inference_model(source)
    except ModelSpecError as exc:
        raise EvaluateUsageError(str(exc)) from None
    return SimplePredictor(model, source.describe())


def predict_batch(predictor: BatchPredictor, images: np.ndarray) -> np.ndarray:
    """The per-batch prediction step: ``(B, S, S, 3)`` float32 0..255 -> ``(B, S, S)`` in [0, 1].

    Kept tiny so the streaming predict pipeline of :mod:`basnet_cli.predict` can replace it.
    """
    out = np.asarray(predictor(images), dtype=np.float32)
    if out.ndim == 4:
        out = out[..., 0]
    return np.clip(out, 0.0, 1.0)


def _load_pair(image_path: Path, mask_path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(float32 image (size, size, 3), uint8 mask)``; the DecodeError names the bad file."""
    from PIL import Image

    from basnet_cli.images import load_pair

    rgb, mask = load_pair(image_path, mask_path)
    image = Image.fromarray(rgb)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32), M.to_uint8(mask)


def _save_map(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(arr, "L").save(tmp, format="PNG")
    os.replace(tmp, path)


def _model_name(spec: str) -> str:
    name = Path(spec).name or spec
    for suffix in (".weights.h5", ".keras", ".h5"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def evaluate_model(data: str | Path | None = None, *, images: str | Path | None = None,
                   masks: str | Path | None = None, model: str = "basnet",
                   predictor: BatchPredictor | None = None, model_description: str | None = None,
                   size: int | None = None, batch_size: int = 4,
                   save_maps: str | Path | None = None,
                   curve: str = "image", workers: int | None = None,
                   progress: Progress | None = None,
                   on_error: Callable[[str, str, str], None] | None = None) -> EvaluationRun:
    """Run a model over a labelled dataset and score its maps (see the module doc).

    ``predictor`` (any callable batch -> probabilities) overrides ``model``; otherwise ``model``
    is loaded with :func:`load_predictor`.
    """
    from basnet_cli.data import DatasetError, find_pairs

    if curve not in CURVES:
        raise EvaluateUsageError(f"--curve must be one of {', '.join(CURVES)}, got {curve!r}")
    if size is None:  # the model's default
        from basnet_cli.model.io import default_size

        size = default_size(model) if predictor is None else DEFAULT_SIZE
    if size <= 0 or size % 32:
        raise EvaluateUsageError(f"--size must be a positive multiple of 32, got {size}")
    if batch_size <= 0:
        raise EvaluateUsageError(f"--batch-size must be positive, got {batch_size}")
    t0 = time.perf_counter()
    try:
        scan = find_pairs(data, images=images, masks=masks)
    except DatasetError as exc:
        raise EvaluateUsageError(str(exc)) from None
    if not scan.pairs:
        raise EvaluateUsageError(f"no image/mask pairs in {data or images}")
    root = Path(data) if data is not None else Path(masks or ".")
    dataset = _dataset_name(root)
    if predictor is None:
        loaded = load_predictor(model)
        predictor, description = loaded, loaded.description
    else:
        description = model_description or getattr(predictor, "description", "custom predictor")
    out_dir = Path(save_maps) if save_maps is not None else None
    mask_root = scan.mask_dir

    res = MethodResult(name=_model_name(model), source=description,
                       missing=[p.relative_to(scan.image_dir).with_suffix("").as_posix()
                                for p in scan.unmatched_images],
                       extra=[p.relative_to(mask_root).with_suffix("").as_posix()
                              for p in scan.unmatched_masks])
    suite = M.MetricSuite(curve=curve)
    pairs = scan.pairs
    stems = [m.relative_to(mask_root).with_suffix("").as_posix() for _, m in pairs]
    n = max(1, workers or _default_workers())

    def decode(i: int) -> tuple[int, np.ndarray | None, np.ndarray | None, str]:
        image_path, mask_path = pairs[i]
        try:
            return i, *_load_pair(image_path, mask_path, size), ""
        except Exception as exc:  # noqa: BLE001 - reported per file (the reason names it)
            return i, None, None, _error_text(exc)

    def score(item: tuple[int, np.ndarray, np.ndarray]) -> tuple[int, dict[str, Any], bool]:
        i, prob, gt_arr = item
        full, resized = fit_to(prob, gt_arr.shape)
        quant = M.to_uint8(full)
        if out_dir is not None:
            _save_map(out_dir / (stems[i] + ".png"), quant)
        return i, suite.compute(M.prepare(quant, gt_arr)), resized

    def batches() -> Iterator[list[int]]:
        for start in range(0, len(pairs), batch_size):
            yield list(range(start, min(start + batch_size, len(pairs))))

    shapes: dict[int, tuple[int, int]] = {}
    if progress is not None:
        progress.start(len(pairs))
    t_method = time.perf_counter()
    try:
        with cf.ThreadPoolExecutor(max_workers=n, thread_name_prefix="evaluate") as pool:
            scoring: deque[cf.Future] = deque()

            def drain(limit: int) -> None:
                while len(scoring) > limit:
                    i, values, resized = scoring.popleft().result()
                    scalars = suite.add(values)
                    res.resized += int(resized)
                    h, w = shapes.pop(i)
                    res.per_image.append({"method": res.name, "name": stems[i], "height": h,
                                          "width": w, **scalars})
                    if progress is not None:
                        progress.advance(1)

            # decode one batch ahead of the model
            batch_iter = batches()
            pending = [pool.submit(decode, i) for i in next(batch_iter, [])]
            while pending:
                decoded = [f.result() for f in pending]
                pending = [pool.submit(decode, i) for i in next(batch_iter, [])]
                good = []
                for i, img, gt_arr, err in decoded:
                    if img is None:
                        res.failed.append((stems[i], err))
                        if on_error is not None:
                            on_error(res.name, stems[i], err)
                        if progress is not None:
                            progress.advance(1)
                    else:
                        good.append((i, img, gt_arr))
                if not good:
                    continue
                probs = predict_batch(predictor, np.stack([g[1] for g in good]))
                for (i, _, gt_arr), prob in zip(good, probs):
                    shapes[i] = gt_arr.shape
                    scoring.append(pool.submit(score, (i, prob, gt_arr)))
                drain(4 * n)
            drain(0)
    finally:
        if progress is not None:
            progress.stop()
    _finish(res, suite, time.perf_counter() - t_method)
    res.per_image.sort(key=lambda row: row["name"])
    return EvaluationRun(mode="model", dataset=dataset, gt_dir=str(mask_root), curve=curve,
                         methods=[res], model=description, size=size,
                         gt_count=len(pairs) + len(scan.unmatched_masks),
                         seconds=time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# Benchmark (for `make bench`; not used by the tests)


def benchmark(gt: str | Path, pred: str | Path | None = None, *, limit: int = 1000,
              workers: int | None = None, seed: int = 0, rounds: int = 8) -> dict[str, Any]:
    """Maps/s of our metrics vs PySODMetrics on the same pairs.

    ``pred``: a folder of maps; without it, perturbed copies of the masks (blurred, noised,
    shifted) are made in memory. Times, on the same arrays already decoded (uint8 map, uint8
    mask), one thread: PySODMetrics (MAE, Fmeasure, Smeasure, Emeasure, WeightedFmeasure; each
    normalises its input, as its API does), ours on the same five metrics (``ours_maps_per_s``:
    one :func:`~basnet_cli.metrics.prepare` per pair, then the five) and ours with the relaxed
    boundary F too; plus our whole maps-mode pipeline from files (decode included, ``workers``
    threads, all metrics).

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
    import tempfile

    with tempfile.TemporaryDirectory(prefix="basnet-bench-") as tmp:
        if pred is None:  # the pipeline reads files: write the perturbed maps once
            for stem, (p, _) in zip(stems, pairs):
                target = Path(tmp) / f"{stem}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(p).save(target)
        run = evaluate_maps([pred if pred is not None else tmp], gt, workers=workers)
    out["ours_pipeline_maps_per_s"] = run.methods[0].maps_per_second
    out["pipeline_workers"] = workers or _default_workers()
    return out

"""Model mode of ``basnet evaluate``: run a model over a labelled dataset and score its maps.

The dataset is any layout of :func:`basnet_cli.data.find_pairs`.  Each pair is decoded by the
project's decoder (:func:`basnet_cli.images.load_pair_for_model`: EXIF orientation when the
mask says so, any mode to RGB, transparency on white), the photo resized to ``size`` x
``size``; the model is any ``--model`` of the inference core
(:func:`basnet_cli.inference.load_predictor`: presets, Keras files, exported ``.tflite`` /
``.onnx`` / SavedModel), run in batches; each map is resized back to the GT size (bilinear) and
quantised to 8 bits exactly as ``basnet predict`` writes masks, so the numbers equal those of
maps mode on the saved maps (``--save-maps``).

Nothing holds all maps: a bounded window of pairs is decoded ahead in a thread pool, which also
does the per-image metric work (NumPy and Pillow release the GIL); the main thread runs the
model and adds each image's numbers to running sums in input order, so results are
deterministic.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli import metrics as M
from basnet_cli.errors import UsageError
from basnet_cli.evaluate.files import dataset_name, default_workers, error_text, fit_to, ordered
from basnet_cli.evaluate.options import EvaluateUsageError, Progress, check_curve
from basnet_cli.evaluate.results import EvaluationRun, MethodResult

BatchPredictor = Callable[[np.ndarray], Any]


def _model_name(spec: str) -> str:
    name = Path(spec).name or spec
    for suffix in (".weights.h5", ".keras", ".h5", ".tflite", ".onnx"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _save_map(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    from basnet_cli.images import atomic_save

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(Image.fromarray(arr, "L"), path)


def _load_model(model: str, size: int | None, precision: str, device: str, tta: bool
                ) -> tuple[BatchPredictor, str, int]:
    """``--model`` through the inference core: ``(predictor, description, size)``, ``size``
    defaulting to the model's own (the side a fixed-size export was made for); wrapped in
    mirror TTA when ``tta``."""
    from basnet_cli.inference import fixed_input_size, load_predictor, with_tta
    from basnet_cli.model.io import default_size

    try:
        predictor, _, _ = load_predictor(model, precision=precision, device=device)
    except UsageError as exc:
        raise EvaluateUsageError(str(exc)) from None
    fixed = fixed_input_size(predictor)
    if fixed is not None and size not in (None, fixed):
        raise EvaluateUsageError(f"--model {model} takes {fixed}x{fixed} images (fixed when it "
                                 f"was exported); leave --size out or pass --size {fixed}")
    predictor = with_tta(predictor, tta)
    return predictor, predictor.description, size or fixed or default_size(model)


def evaluate_model(data: str | Path | None = None, *, images: str | Path | None = None,
                   masks: str | Path | None = None, model: str = "basnet",
                   predictor: BatchPredictor | None = None, model_description: str | None = None,
                   size: int | None = None, tta: bool = False, batch_size: int = 4,
                   save_maps: str | Path | None = None,
                   curve: str = "image", workers: int | None = None,
                   progress: Progress | None = None,
                   on_error: Callable[[str, str, str], None] | None = None,
                   precision: str = "float32", device: str = "auto",
                   shard: tuple[int, int] | None = None) -> EvaluationRun:
    """Run a model over a labelled dataset and score its maps (see the module doc).

    ``predictor`` (any callable: float32 RGB 0..255 batch -> probabilities) overrides
    ``model`` and is used as it is; otherwise ``model`` is loaded by the inference core at
    ``precision`` (float32 by default: the reference numbers) on ``device``, and wrapped in
    mirror TTA when ``tta`` (as ``basnet predict --tta``). ``shard=(K, N)``: only the pairs of
    shard K of N (by the mask's relative stem, as maps mode), for :func:`merge_reports`.
    """
    from basnet_cli.data import DatasetError, find_pairs
    from basnet_cli.images import load_pair_for_model
    from basnet_cli.inference import predict_batches
    from basnet_cli.inputs import shard_index
    from basnet_cli.model.config import DEFAULT_SIZE

    check_curve(curve)
    if size is not None and (size <= 0 or size % 32):
        raise EvaluateUsageError(f"--size must be a positive multiple of 32, got {size}")
    if batch_size <= 0:
        raise EvaluateUsageError(f"--batch-size must be positive, got {batch_size}")
    t0 = time.perf_counter()
    try:
        scan = find_pairs(data, images=images, masks=masks)
    except DatasetError as exc:
        raise EvaluateUsageError(str(exc)) from None
    mask_root = scan.mask_dir

    def rel_stem(path: Path, root: Path) -> str:
        return path.relative_to(root).with_suffix("").as_posix()

    def keep(stem: str) -> bool:  # --shard K/N picks by relative stem, as maps mode
        return shard is None or shard_index(stem, shard[1]) == shard[0]

    pairs = [(image, m) for image, m in scan.pairs if keep(rel_stem(m, mask_root))]
    stems = [rel_stem(m, mask_root) for _, m in pairs]
    missing = [s for s in (rel_stem(p, scan.image_dir) for p in scan.unmatched_images) if keep(s)]
    extra = [s for s in (rel_stem(p, mask_root) for p in scan.unmatched_masks) if keep(s)]
    if not pairs:
        raise EvaluateUsageError(f"no image/mask pairs in shard {shard[0]}/{shard[1]}"
                                 if shard else f"no image/mask pairs in {data or images}")
    root = Path(data) if data is not None else Path(masks or ".")
    dataset = dataset_name(root)
    if predictor is None:
        predictor, description, size = _load_model(model, size, precision, device, tta)
    else:
        description = model_description or getattr(predictor, "description", "custom predictor")
        size = size or DEFAULT_SIZE
    out_dir = Path(save_maps) if save_maps is not None else None
    res = MethodResult(name=_model_name(model), source=description, missing=missing,
                       extra=extra)
    suite = M.MetricSuite(curve=curve)
    n = max(1, workers or default_workers())

    def decode(i: int) -> tuple[int, np.ndarray | None, np.ndarray | None, str]:
        image_path, mask_path = pairs[i]
        try:
            image, mask = load_pair_for_model(image_path, mask_path, size)
        except Exception as exc:  # noqa: BLE001 - reported per file (the reason names it)
            return i, None, None, error_text(exc)
        return i, image, M.to_uint8(mask), ""

    def score(i: int, prob: np.ndarray, gt_arr: np.ndarray) -> tuple[int, dict[str, Any], bool]:
        full, resized = fit_to(prob, gt_arr.shape)
        quant = M.to_uint8(full)
        if out_dir is not None:
            _save_map(out_dir / (stems[i] + ".png"), quant)
        return i, suite.compute(M.prepare(quant, gt_arr)), resized

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

            def decoded() -> Iterator[tuple[tuple[int, np.ndarray], np.ndarray]]:
                """Decoded pairs, a window ahead of the model; failures reported here."""
                window = max(2 * batch_size, 4 * n)
                for i, image, gt_arr, err in ordered(pool, decode, range(len(pairs)), window):
                    if image is None or gt_arr is None:
                        res.failed.append((stems[i], err))
                        if on_error is not None:
                            on_error(res.name, stems[i], err)
                        if progress is not None:
                            progress.advance(1)
                        continue
                    yield (i, gt_arr), image

            for (i, gt_arr), prob in predict_batches(predictor, decoded(), batch_size):
                shapes[i] = gt_arr.shape
                scoring.append(pool.submit(score, i, prob, gt_arr))
                drain(4 * n)
            drain(0)
    finally:
        if progress is not None:
            progress.stop()
    res.finish(suite, time.perf_counter() - t_method)
    res.per_image.sort(key=lambda row: row["name"])
    return EvaluationRun(mode="model", dataset=dataset, gt_dir=str(mask_root), curve=curve,
                         methods=[res], model=description, size=size,
                         gt_count=len(pairs) + len(extra), shard=shard,
                         seconds=time.perf_counter() - t0)

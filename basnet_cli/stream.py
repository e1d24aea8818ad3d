"""The streaming run of the inference pipeline: planned jobs -> decoded batches -> predictor ->
rendered files, with memory flat in the number of inputs.

1. **Decode** (``tf.data``): job indices -> Pillow decode in parallel through
   ``tf.numpy_function`` (EXIF orientation, any mode to RGB, JPEG DCT-domain downscaling when only
   masks are wanted) -> ``size`` x ``size`` -> batch -> prefetch.  A file that fails to decode
   is dropped from the stream and its reason recorded; the run goes on.
2. **Predict**: a :class:`~basnet_cli.inference.Predictor` maps each float32 batch to
   ``(B, H, W, 1)`` probabilities.
3. **Write**: a background thread pool resizes each map back to the photo's size (bilinear),
   renders the requested kinds and writes each file atomically (temporary name + ``os.replace``).
   At most a few batches are in flight.

``basnet predict`` plans the jobs (:mod:`basnet_cli.inputs`, :mod:`basnet_cli.outputs`) and runs
them here; ``basnet benchmark`` times this same run.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import queue
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli import images as imgs
from basnet_cli.display import printable
from basnet_cli.inference import Predictor, available_cpus, import_tf_quiet
from basnet_cli.inputs import InputItem
from basnet_cli.outputs import PHOTO_KINDS, Job, UnsafePathError, output_parts, safe_output_path


def decode_dataset(paths: Sequence[str | Path], *, size: int, batch_size: int,
                   max_pixels: int | None, draft: bool, workers: int | None,
                   on_error: Callable[[int, str], None]) -> Any:
    """``tf.data`` stream of ``(indices, uint8 images (B, size, size, 3), sizes (B, 2) as H, W)``.

    Decoding runs in Pillow through ``tf.numpy_function`` on ``workers`` parallel calls
    (Pillow releases the GIL while decoding and resizing).  Inputs that fail are filtered out of
    the stream after ``on_error(index, reason)`` is called; the pipeline never stops on them.
    """
    tf = import_tf_quiet()
    str_paths = [str(p) for p in paths]
    blank = np.zeros((size, size, 3), np.uint8)
    no_size = np.zeros(2, np.int32)

    def load(index: np.int64) -> tuple[np.ndarray, np.ndarray, np.bool_]:
        i = int(index)
        try:
            arr, (w, h) = imgs.load_for_model(str_paths[i], size, max_pixels, draft=draft)
            return arr, np.array([h, w], np.int32), np.bool_(True)
        except imgs.DecodeError as exc:
            reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad file must never stop the stream
            reason = f"{type(exc).__name__}: {exc}"
        on_error(i, reason)
        return blank, no_size, np.bool_(False)

    def tf_load(index):
        image, hw, ok = tf.numpy_function(load, [index], [tf.uint8, tf.int32, tf.bool],
                                          stateful=True)
        image.set_shape((size, size, 3))
        hw.set_shape((2,))
        ok.set_shape(())
        return index, image, hw, ok

    parallel = workers or tf.data.AUTOTUNE
    ds = tf.data.Dataset.range(len(str_paths))
    ds = ds.map(tf_load, num_parallel_calls=parallel, deterministic=False)
    ds = ds.filter(lambda i, image, hw, ok: ok)
    ds = ds.map(lambda i, image, hw, ok: (i, image, hw))
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = False
    if workers:
        options.threading.private_threadpool_size = max(2, workers)
    return ds.with_options(options)


def write_outputs(job: Job, outputs: dict[str, Path], prob: np.ndarray, size_wh: tuple[int, int],
                  *, normalize: bool, threshold: float, max_pixels: int | None,
                  created_dirs: set[Path] | None = None, out_root: Path | None = None) -> int:
    """Render and atomically write ``outputs`` for one input; returns the number of files."""
    full = imgs.prepare_map(prob, size_wh, normalize=normalize)
    photo = None
    if any(k in PHOTO_KINDS for k in outputs):
        photo, _ = imgs.load_rgb(job.item.path, max_pixels)
        if photo.size != size_wh:  # the file changed since decoding: follow the file
            full = imgs.prepare_map(prob, photo.size, normalize=normalize)
    written = 0
    for kind, target in outputs.items():
        parent = target.parent
        if created_dirs is None or parent not in created_dirs:
            if out_root is not None:
                # Re-check right before creating: no symlink may have appeared on the way.
                safe_output_path(out_root, parent.relative_to(out_root).parts)
            parent.mkdir(parents=True, exist_ok=True)
            if created_dirs is not None:
                created_dirs.add(parent)
        if target.is_symlink():
            raise UnsafePathError(f"{target} is a symlink")
        imgs.atomic_save(imgs.render(kind, full, photo=photo, threshold=threshold), target)
        written += 1
    return written


def _write_failure(exc: Exception) -> str:
    """The one-line reason of a failed write."""
    if isinstance(exc, imgs.DecodeError):
        return str(exc)
    if isinstance(exc, IsADirectoryError):
        target = getattr(exc, "filename2", None) or exc.filename
        return f"write failed: a folder is in the way at {printable(target)}"
    return f"write failed: {type(exc).__name__}: {exc}"


@dataclass
class StreamResult:
    """What :func:`run_stream` did: inputs fully written and files written."""

    processed: int = 0
    files_written: int = 0


def run_stream(todo: Sequence[tuple[Job, dict[str, Path]]],
               get_predictor: Callable[[], Predictor], *, kinds: Sequence[str], size: int,
               batch_size: int, out_root: Path, on_failure: Callable[[str, str], None],
               normalize: bool = False, threshold: float = 0.5, max_pixels: int | None = None,
               workers: int | None = None, progress: Any = None, done_before: int = 0
               ) -> StreamResult:
    """Decode, predict and write each ``(job, outputs to write)`` of ``todo``.

    ``get_predictor()`` is called once per decoded batch (it may load the model on the first
    call, so a run whose every input fails to decode never loads it).  ``kinds``: the kinds the
    run writes (JPEGs are decoded at a reduced scale unless one needs the photo).
    ``on_failure(path, reason)`` is called once per failed input, as it happens.  ``progress``:
    ``start(total)``, ``advance(n)`` and ``stop()``, started at ``len(todo) + done_before`` with
    ``done_before`` already done.  On KeyboardInterrupt the writes in flight finish (no temporary
    files are left) and the interrupt propagates.
    """
    result = StreamResult()
    n_workers = workers or available_cpus()
    errors: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
    draft = not any(k in PHOTO_KINDS for k in kinds)
    ds = decode_dataset([job.item.path for job, _ in todo], size=size, batch_size=batch_size,
                        max_pixels=max_pixels, draft=draft, workers=workers,
                        on_error=lambda i, r: errors.put((i, r)))
    imgs._umask()  # read the umask once, in this thread
    if progress is not None:
        progress.start(len(todo) + done_before)
        if done_before:
            progress.advance(done_before)

    def drain_errors() -> None:
        while True:
            try:
                i, reason = errors.get_nowait()
            except queue.Empty:
                return
            on_failure(str(todo[i][0].item.path), reason)
            if progress is not None:
                progress.advance(1)

    created: set[Path] = set()

    def write_task(index: int, prob: np.ndarray, hw: tuple[int, int]) -> int:
        job, outputs = todo[index]
        return write_outputs(job, outputs, prob, (hw[1], hw[0]), normalize=normalize,
                             threshold=threshold, max_pixels=max_pixels,
                             created_dirs=created, out_root=out_root)

    from PIL import Image

    # Our own --max-pixels check runs first, with a clear message; Pillow's global limit would
    # otherwise refuse (or warn about) images that --max-pixels allows.
    pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    pool = cf.ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="basnet-write")
    pending: collections.deque[tuple[int, cf.Future[int]]] = collections.deque()
    max_pending = max(4 * batch_size, 2 * n_workers)

    def collect(block_until: int) -> None:
        while pending and (len(pending) > block_until or pending[0][1].done()):
            index, fut = pending.popleft()
            try:
                result.files_written += fut.result()
                result.processed += 1
            except Exception as exc:  # noqa: BLE001 - report and go on
                on_failure(str(todo[index][0].item.path), _write_failure(exc))
            if progress is not None:
                progress.advance(1)

    tf = import_tf_quiet()
    try:
        for idx_t, images_t, hw_t in ds:
            drain_errors()
            probs = get_predictor()(tf.cast(images_t, tf.float32))
            indices = idx_t.numpy()
            sizes = hw_t.numpy()
            for j in range(len(indices)):
                fut = pool.submit(write_task, int(indices[j]), probs[j], tuple(sizes[j]))
                pending.append((int(indices[j]), fut))
            collect(max_pending)
        drain_errors()
        collect(0)
    except KeyboardInterrupt:
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)  # in-flight writes finish: no temp files
        raise
    finally:
        pool.shutdown(wait=True)
        Image.MAX_IMAGE_PIXELS = pillow_limit
        if progress is not None:
            progress.stop()
    return result


# ---------------------------------------------------------------------------------------------
# Throughput of the decode and encode stages alone (for the benchmark).


def measure_pipeline(paths: Sequence[str | Path], *, size: int = 320, batch_size: int = 8,
                     kinds: Sequence[str] = ("mask",), workers: int | None = None,
                     max_pixels: int | None = imgs.DEFAULT_MAX_PIXELS,
                     out_dir: str | Path | None = None) -> dict[str, float]:
    """Images/s of the decode stage (tf.data + Pillow, no model) and of the encode/write stage.

    The encode stage writes each requested kind for every input from a synthetic probability map
    (a soft disc) through the same thread pool and atomic writes as ``basnet predict``, into
    ``out_dir`` (a temporary folder by default, removed afterwards).
    """
    workers = workers or available_cpus()
    draft = not any(k in PHOTO_KINDS for k in kinds)
    failed: list[int] = []
    ds = decode_dataset(paths, size=size, batch_size=batch_size, max_pixels=max_pixels,
                        draft=draft, workers=workers, on_error=lambda i, r: failed.append(i))
    decoded: list[tuple[int, tuple[int, int]]] = []
    t0 = time.perf_counter()
    for idx_t, _images, hw_t in ds:
        for i, hw in zip(idx_t.numpy(), hw_t.numpy()):
            decoded.append((int(i), (int(hw[0]), int(hw[1]))))
    decode_s = time.perf_counter() - t0

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    prob = np.clip(1.5 - 4.0 * np.hypot(yy - 0.5, xx - 0.5), 0, 1)[..., None]
    cleanup = out_dir is None
    root = Path(tempfile.mkdtemp(prefix="basnet-bench-")) if out_dir is None else Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    multi = len(kinds) > 1
    created: set[Path] = set()
    try:
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = []
            for i, (h, w) in decoded:
                item = InputItem(Path(paths[i]), f"{i:08d}.png", Path("."))
                outputs = {k: safe_output_path(root, output_parts(
                    item.rel, f"{i:08d}{imgs.KIND_EXT[k]}", k, multi)) for k in kinds}
                job = Job(item, outputs)
                futures.append(pool.submit(write_outputs, job, outputs, prob, (w, h),
                                           normalize=False, threshold=0.5,
                                           max_pixels=max_pixels, created_dirs=created,
                                           out_root=root))
            files = sum(f.result() for f in futures)
        encode_s = time.perf_counter() - t0
    finally:
        if cleanup:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    n = len(decoded)
    return {
        "images": float(n),
        "failed": float(len(failed)),
        "files": float(files),
        "decode_s": decode_s,
        "encode_s": encode_s,
        "decode_images_per_s": n / decode_s if decode_s > 0 else 0.0,
        "encode_images_per_s": n / encode_s if encode_s > 0 else 0.0,
    }

"""``basnet predict``: stream files, folders and globs of photos to masks at original resolution.

Pipeline (one process):

1. **Plan** (pure Python, no TensorFlow): find inputs (:func:`discover`), keep this machine's
   ``--shard`` (:func:`in_shard`, a stable hash of each input's path relative to its input root),
   map each input to its outputs under ``--out`` (:func:`plan_jobs`: sub-folders mirrored, never
   outside ``--out``), and drop the inputs whose outputs already exist (resume).
2. **Decode** (``tf.data``): job indices -> Pillow decode in parallel through
   ``tf.numpy_function`` (EXIF orientation, any mode to RGB, JPEG DCT-domain downscaling when only
   masks are wanted) -> ``--size`` x ``--size`` -> batch -> prefetch.  A file that fails to decode
   is dropped from the stream and its reason recorded; the run goes on.
3. **Predict**: a :class:`Predictor` maps a float32 RGB 0..255 NHWC batch to ``(B, H, W, 1)``
   probabilities.  Keras models are wrapped by :class:`KerasPredictor`; exported models can plug
   in through :data:`PREDICTOR_LOADERS`.
4. **Write**: a background thread pool resizes each map back to the photo's size (bilinear),
   renders the requested kinds and writes each file atomically (temporary name + ``os.replace``).
   At most a few batches are in flight, so memory stays flat in the number of inputs.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import glob
import hashlib
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from basnet_cli import images as imgs
from basnet_cli.display import printable
from basnet_cli.model.config import DEFAULT_PRESET

KINDS = ("mask", "binary", "cutout", "overlay")
DEVICES = ("auto", "cpu", "gpu")
# Kinds that need the full-resolution photo at write time (re-decoded by the writer).
PHOTO_KINDS = ("cutout", "overlay")


class PredictUsageError(ValueError):
    """Bad options or nothing to work on: exit code 2."""


# ---------------------------------------------------------------------------------------------
# Options and results.


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
    workers: int | None = None
    verbose: bool = False

    def validate(self) -> None:
        if not self.inputs:
            raise PredictUsageError("no inputs given")
        kinds = list(self.kinds)
        if not kinds:
            raise PredictUsageError("--kind: give at least one of " + ", ".join(KINDS))
        for kind in kinds:
            if kind not in KINDS:
                raise PredictUsageError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
        if len(set(kinds)) != len(kinds):
            raise PredictUsageError("--kind: each kind at most once")
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
        if self.device not in DEVICES:
            raise PredictUsageError(f"--device must be one of {', '.join(DEVICES)}")
        if self.workers is not None and self.workers < 1:
            raise PredictUsageError("--workers must be >= 1")
        if self.shard is not None:
            k, n = self.shard
            if n < 1 or not 0 <= k < n:
                raise PredictUsageError(f"--shard {k}/{n}: need N >= 1 and 0 <= K < N")


@dataclass
class Failure:
    path: str
    reason: str

    def line(self) -> str:
        return f"{self.path}: {self.reason}"


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
            "size": self.size,
            "kinds": list(self.kinds),
            "out": self.out,
            "shard": self.shard,
            "interrupted": self.interrupted,
            "exit_code": self.exit_code,
            "failures": [{"path": f.path, "reason": f.reason} for f in self.failures],
        }


# ---------------------------------------------------------------------------------------------
# Input discovery and sharding.


@dataclass(frozen=True)
class InputItem:
    """One input file: ``path`` as found, ``rel`` its POSIX path relative to its input root."""

    __slots__ = ("path", "rel", "root")
    path: Path
    rel: str
    root: Path


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(imgs.IMAGE_EXTS)


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
            raise PredictUsageError(f"cannot list {root}: {exc.strerror or exc}") from None
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
            raise PredictUsageError(f"input {raw!r} does not exist (not a file, folder or glob)")
    return items, roots


def shard_index(rel: str, n: int) -> int:
    """The shard (0..n-1) of a relative path: a stable 64-bit BLAKE2b hash, modulo ``n``.

    Depends only on the path relative to its input root, so it is the same on every machine,
    mount point and re-run.
    """
    digest = hashlib.blake2b(rel.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def in_shard(items: Iterable[InputItem], shard: tuple[int, int] | None) -> list[InputItem]:
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
        raise PredictUsageError(f"--shard {text!r}: expected K/N, e.g. 0/4") from None
    if n < 1 or not 0 <= k < n:
        raise PredictUsageError(f"--shard {text}: need N >= 1 and 0 <= K < N (K is 0-based)")
    return k, n


# ---------------------------------------------------------------------------------------------
# Output planning and path safety.


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


def _output_parts(rel: str, name: str, kind: str, multi_kind: bool) -> list[str]:
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
                    out_root, _output_parts(it.rel, name + imgs.KIND_EXT[kind], kind, multi))
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

    Returns the resolved output root; raises :class:`PredictUsageError`.
    """
    out_path = Path(out)
    if out_path.exists() and not out_path.is_dir():
        raise PredictUsageError(f"--out {out}: exists and is not a folder")
    resolved = out_path.resolve()
    if not allow_inside_input:
        for root in roots:
            r = root.resolve()
            if resolved == r or resolved.is_relative_to(r):
                raise PredictUsageError(
                    f"--out {out} is inside the input folder {root}; pick another folder or "
                    f"pass --allow-inside-input"
                )
    try:
        resolved.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=resolved, prefix=".basnet-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PredictUsageError(f"--out {out} is not writable ({exc.strerror or exc})") from None
    return resolved


def pending_outputs(job: Job, overwrite: bool) -> dict[str, Path]:
    """The outputs of ``job`` still to write (all of them with ``overwrite``)."""
    if overwrite:
        return dict(job.outputs)
    return {k: p for k, p in job.outputs.items() if not imgs.output_is_complete(p)}


# ---------------------------------------------------------------------------------------------
# Predictors: batch of float32 RGB 0..255 NHWC -> (B, H, W, 1) float32 probabilities.


class Predictor(Protocol):
    """Anything that maps an RGB batch to probabilities; ``description`` names it in summaries."""

    description: str

    def __call__(self, images: Any) -> np.ndarray: ...


class KerasPredictor:
    """A Keras inference model behind a traced ``tf.function`` (one trace per image size).

    With a ``tf.distribute`` strategy of several replicas (several GPUs), each batch is split
    across the replicas with ``experimental_distribute_values_from_function``.
    """

    def __init__(self, model: Any, *, strategy: Any = None, description: str = "",
                 device: str | None = None) -> None:
        from basnet_cli.runtime import import_tf

        tf = import_tf()
        self._tf = tf
        self.model = model
        self.strategy = strategy
        self.device = device  # e.g. "/CPU:0" to pin the calls; None: TensorFlow's placement
        self.description = description or getattr(model, "name", "keras model")
        self._fns: dict[tuple[int, int], Any] = {}

    def _fn(self, x: Any) -> Any:
        # One trace per image size with a free batch dimension (the network's bilinear
        # upsampling needs static spatial sizes), so a short last batch does not retrace.
        key = (int(x.shape[1]), int(x.shape[2]))
        fn = self._fns.get(key)
        if fn is None:
            tf, model = self._tf, self.model
            fn = tf.function(lambda t: model(t, training=False), input_signature=[
                tf.TensorSpec([None, key[0], key[1], 3], tf.float32)])
            self._fns[key] = fn
        if self.device is not None:
            with self._tf.device(self.device):
                return fn(x)
        return fn(x)

    def __call__(self, images: Any) -> np.ndarray:
        tf = self._tf
        x = tf.convert_to_tensor(images, dtype=tf.float32)
        strategy = self.strategy
        if strategy is None or strategy.num_replicas_in_sync == 1:
            if strategy is None:
                out = self._fn(x)
            else:
                with strategy.scope():
                    out = self._fn(x)
            return np.asarray(out, dtype=np.float32)
        n = strategy.num_replicas_in_sync
        batch = int(x.shape[0])
        if batch < n:  # every replica needs at least one image (BatchNorm fails on empty ones)
            x = tf.concat([x, tf.repeat(x[-1:], n - batch, axis=0)], axis=0)
        bounds = np.linspace(0, int(x.shape[0]), n + 1).astype(int)
        chunks = [x[bounds[i]:bounds[i + 1]] for i in range(n)]
        values = strategy.experimental_distribute_values_from_function(
            lambda ctx: chunks[ctx.replica_id_in_sync_group])
        result = strategy.run(self._fn, args=(values,))
        parts = strategy.experimental_local_results(result)
        out = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=0)
        return out[:batch]


def configure_device(device: str, verbose: bool = False) -> str:
    """Apply ``--device`` to TensorFlow; returns a description ("cpu", "gpu x2", ...)."""
    from basnet_cli.runtime import import_tf

    tf = import_tf(verbose)
    gpus = tf.config.list_physical_devices("GPU")
    if device == "cpu":
        if gpus:
            try:
                tf.config.set_visible_devices([], "GPU")
            except RuntimeError:  # already initialised: load_predictor pins to /CPU:0
                pass
        return "cpu"
    if device == "gpu" and not gpus:
        raise PredictUsageError("--device gpu: TensorFlow sees no GPU (use --device auto/cpu)")
    return f"gpu x{len(gpus)}" if gpus else "cpu"


# Loaders for ``--model`` values other than presets / Keras files (exported models).  Each takes
# the spec and returns a Predictor, or None when the spec is not its kind.
PREDICTOR_LOADERS: list[Callable[[str], Predictor | None]] = []


def check_model_spec(spec: str, preset: str | None = None) -> None:
    """Fail early (before any work) on a ``--model`` value that names nothing loadable."""
    from basnet_cli.model.io import ModelSpecError, resolve

    for loader_check in _SPEC_CHECKS:
        if loader_check(spec):
            return
    try:
        resolve(spec, preset=preset)
    except (ModelSpecError, ValueError) as exc:
        raise PredictUsageError(str(exc)) from None


_SPEC_CHECKS: list[Callable[[str], bool]] = []


def register_predictor_loader(loader: Callable[[str], Predictor | None],
                              accepts: Callable[[str], bool]) -> None:
    """Let another backend (``.tflite``, ``.onnx``, SavedModel) serve ``--model`` values."""
    PREDICTOR_LOADERS.append(loader)
    _SPEC_CHECKS.append(accepts)


def load_predictor(spec: str, *, precision: str = "auto", device: str = "auto",
                   verbose: bool = False, preset: str | None = None
                   ) -> tuple[Predictor, str, str]:
    """Build the predictor for ``--model spec``.  Returns ``(predictor, precision, device)``."""
    from basnet_cli.model.io import ModelSpecError, load_inference_model, loading, resolve
    from basnet_cli.runtime import cpu_has_fast_bf16, import_keras, resolve_precision

    device_desc = configure_device(device, verbose)
    for loader in PREDICTOR_LOADERS:
        predictor = loader(spec)
        if predictor is not None:
            return predictor, "exported", device_desc
    try:
        source = resolve(spec, preset=preset)
    except (ModelSpecError, ValueError) as exc:
        raise PredictUsageError(str(exc)) from None
    import_keras(verbose)
    if precision == "auto" and device_desc == "cpu":
        # resolve_precision() looks at physical GPUs; with --device cpu only the CPU counts.
        concrete = "bfloat16" if cpu_has_fast_bf16() else "float32"
    else:
        concrete = resolve_precision(precision)
    tf = import_tf_quiet(verbose)
    strategy = None
    if device_desc != "cpu" and len(tf.config.list_logical_devices("GPU")) > 1:
        strategy = tf.distribute.MirroredStrategy()
    pin = "/CPU:0" if device_desc == "cpu" else None
    with loading(spec, concrete, PredictUsageError):
        if strategy is not None:
            with strategy.scope():
                model = load_inference_model(source)
        elif pin is not None:
            with tf.device(pin):
                model = load_inference_model(source)
        else:
            model = load_inference_model(source)
    predictor = KerasPredictor(model, strategy=strategy, description=source.describe(),
                               device=pin)
    return predictor, concrete, device_desc


def import_tf_quiet(verbose: bool = False) -> Any:
    from basnet_cli.runtime import import_tf

    return import_tf(verbose)


# ---------------------------------------------------------------------------------------------
# The streaming pipeline.


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


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


def run(opts: PredictOptions, *, predictor: Predictor | None = None,
        on_failure: Callable[[Failure], None] | None = None,
        progress: Any = None, precision_label: str | None = None) -> PredictSummary:
    """Run ``basnet predict``.  Raises :class:`PredictUsageError` for usage errors.

    ``predictor``: use this instead of loading ``opts.model`` (tests, other backends).
    ``on_failure``: called once per failed input, as it happens (the CLI prints one line).
    ``progress``: an object with ``start(total)``, ``advance(n)`` and ``stop()`` (the CLI's Rich
    bar), or None.
    """
    opts.validate()
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
    out_resolved = out_given.resolve()
    items, roots = discover(opts.inputs, recursive=opts.recursive, exclude=out_resolved)
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

    imgs._umask()  # read the umask once, in this thread
    if not todo:
        summary.elapsed_s = time.perf_counter() - started
        summary.model = opts.model if predictor is None else predictor.description
        return summary

    summary.model = opts.model if predictor is None else predictor.description
    if predictor is None:
        # Devices must be chosen before tf.data starts the TensorFlow runtime; the model itself
        # is loaded on the first decoded batch, so a re-run left with only broken files never
        # pays for it.
        summary.device = configure_device(opts.device, opts.verbose)
    else:
        summary.precision, summary.device = precision_label or "given", opts.device
    model: list[Predictor] = [predictor] if predictor is not None else []

    def get_predictor() -> Predictor:
        if not model:
            t0 = time.perf_counter()
            loaded, summary.precision, summary.device = load_predictor(
                opts.model, precision=opts.precision, device=opts.device, verbose=opts.verbose,
                preset=opts.preset)
            # Trace once outside the timed stream (a first call costs seconds, not images).
            loaded(np.zeros((1, opts.size, opts.size, 3), np.float32))
            summary.model = loaded.description
            summary.load_s = time.perf_counter() - t0
            model.append(loaded)
        return model[0]

    workers = opts.workers or _default_workers()
    errors: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
    draft = not any(k in PHOTO_KINDS for k in kinds)
    ds = decode_dataset([job.item.path for job, _ in todo], size=opts.size,
                        batch_size=opts.batch_size,
                        max_pixels=opts.max_pixels or None, draft=draft,
                        workers=opts.workers, on_error=lambda i, r: errors.put((i, r)))

    if progress is not None:
        progress.start(len(todo) + summary.skipped)
        if summary.skipped:
            progress.advance(summary.skipped)

    def drain_errors() -> None:
        while True:
            try:
                i, reason = errors.get_nowait()
            except queue.Empty:
                return
            fail(str(todo[i][0].item.path), reason)
            if progress is not None:
                progress.advance(1)

    created: set[Path] = set()

    def write_task(index: int, prob: np.ndarray, hw: tuple[int, int]) -> int:
        job, outputs = todo[index]
        return write_outputs(job, outputs, prob, (hw[1], hw[0]), normalize=opts.normalize,
                             threshold=opts.threshold, max_pixels=opts.max_pixels or None,
                             created_dirs=created, out_root=out_root)

    from PIL import Image

    # Our own --max-pixels check runs first, with a clear message; Pillow's global limit would
    # otherwise refuse (or warn about) images that --max-pixels allows.
    pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="basnet-write")
    pending: collections.deque[tuple[int, cf.Future[int]]] = collections.deque()
    max_pending = max(4 * opts.batch_size, 2 * workers)

    def collect(block_until: int) -> None:
        while pending and (len(pending) > block_until or pending[0][1].done()):
            index, fut = pending.popleft()
            try:
                summary.files_written += fut.result()
                summary.processed += 1
            except Exception as exc:  # noqa: BLE001 - report and go on
                if isinstance(exc, imgs.DecodeError):
                    reason = str(exc)
                elif isinstance(exc, IsADirectoryError):
                    target = getattr(exc, "filename2", None) or exc.filename
                    reason = f"write failed: a folder is in the way at {printable(target)}"
                else:
                    reason = f"write failed: {type(exc).__name__}: {exc}"
                fail(str(todo[index][0].item.path), reason)
            if progress is not None:
                progress.advance(1)

    try:
        for idx_t, images_t, hw_t in ds:
            drain_errors()
            probs = get_predictor()(_tf_cast_float(images_t))
            indices = idx_t.numpy()
            sizes = hw_t.numpy()
            for j in range(len(indices)):
                fut = pool.submit(write_task, int(indices[j]), probs[j], tuple(sizes[j]))
                pending.append((int(indices[j]), fut))
            collect(max_pending)
        drain_errors()
        collect(0)
    except KeyboardInterrupt:
        summary.interrupted = True
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)  # in-flight writes finish: no temp files
        raise
    finally:
        pool.shutdown(wait=True)
        Image.MAX_IMAGE_PIXELS = pillow_limit
        if progress is not None:
            progress.stop()
        summary.elapsed_s = time.perf_counter() - started
    summary.failures.sort(key=lambda f: f.path)
    return summary


def _tf_cast_float(images: Any) -> Any:
    tf = import_tf_quiet()
    return tf.cast(images, tf.float32)


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
    workers = workers or _default_workers()
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
                outputs = {k: safe_output_path(root, _output_parts(
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


# Exported models (.tflite, .onnx, SavedModel folders) serve ``--model`` through their own
# runtimes; see :mod:`basnet_cli.backends`.
from basnet_cli import backends as _backends  # noqa: E402

_backends.register(register_predictor_loader)

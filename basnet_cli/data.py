"""Datasets: find image/mask pairs, decode them, and build tf.data pipelines.

Layouts understood by :func:`find_pairs`:
- DUTS: ``<root>/<name>-Image/`` + ``<root>/<name>-Mask/`` (e.g. DUTS-TR, DUTS-TE);
- plain: ``<root>/images/`` + ``<root>/masks/`` (also ``imgs``/``gt``, ``Image``/``GT``...);
- explicit folders given by the caller (``--images DIR --masks DIR``).
Pairs match by file stem (``0001.jpg`` <-> ``0001.png``), recursively, sub-folders included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from basnet_cli.errors import UsageError
from basnet_cli.images import IMAGE_EXTS, MAP_EXTS  # the one list for predict, train, evaluate

_PLAIN_IMAGE_DIRS = ("images", "imgs", "image", "Image", "Images", "img", "im")
_PLAIN_MASK_DIRS = ("masks", "mask", "gt", "GT", "Masks", "Mask", "labels", "annotations")


class DatasetError(UsageError):
    """The dataset folder cannot be understood, or holds nothing to train on (exit 2)."""


@dataclass
class PairScan:
    """Result of :func:`find_pairs`."""

    pairs: list[tuple[Path, Path]]
    image_dir: Path
    mask_dir: Path
    layout: str
    unmatched_images: list[Path] = field(default_factory=list)
    unmatched_masks: list[Path] = field(default_factory=list)

    @property
    def unmatched(self) -> int:
        return len(self.unmatched_images) + len(self.unmatched_masks)

    def describe_unmatched(self, limit: int = 5) -> str:
        """One line: counts plus the first few names, or "" when everything matched."""
        parts = []
        for label, items, base in (("images without a mask", self.unmatched_images,
                                    self.image_dir),
                                   ("masks without an image", self.unmatched_masks,
                                    self.mask_dir)):
            if items:
                names = ", ".join(str(p.relative_to(base)) for p in items[:limit])
                more = f", ... (+{len(items) - limit})" if len(items) > limit else ""
                parts.append(f"{len(items)} {label} ({names}{more})")
        return "; ".join(parts)


def _files(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    """Map relative stem (sub-folders kept, extension dropped) -> path."""
    out: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in exts and not path.name.startswith("."):
            key = path.relative_to(folder).with_suffix("").as_posix()
            out.setdefault(key, path)
    return out


def detect_layout(root: Path) -> tuple[Path, Path, str]:
    """Find the image and mask folders inside ``root``."""
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    for image_dir in sorted(root.glob("*-Image")):
        mask_dir = root / (image_dir.name[: -len("-Image")] + "-Mask")
        if mask_dir.is_dir():
            return image_dir, mask_dir, "duts"
    for i in _PLAIN_IMAGE_DIRS:
        for m in _PLAIN_MASK_DIRS:
            if (root / i).is_dir() and (root / m).is_dir():
                return root / i, root / m, "plain"
    raise DatasetError(
        f"{root}: no dataset layout found; expected <name>-Image/ + <name>-Mask/ (DUTS) or "
        f"images/ + masks/ (plain), or pass --images DIR --masks DIR"
    )


def find_pairs(root: str | Path | None = None, *, images: str | Path | None = None,
               masks: str | Path | None = None) -> PairScan:
    """Pair images with masks by stem, from a dataset root or explicit folders."""
    if images is not None or masks is not None:
        if images is None or masks is None:
            raise DatasetError("--images and --masks must be given together")
        image_dir, mask_dir, layout = Path(images), Path(masks), "explicit"
        for d in (image_dir, mask_dir):
            if not d.is_dir():
                raise DatasetError(f"{d} is not a folder")
    elif root is not None:
        image_dir, mask_dir, layout = detect_layout(Path(root))
    else:
        raise DatasetError("give a dataset folder or --images and --masks")
    imgs = _files(image_dir, IMAGE_EXTS)
    msks = _files(mask_dir, MAP_EXTS)
    common = sorted(set(imgs) & set(msks))
    return PairScan(
        pairs=[(imgs[k], msks[k]) for k in common],
        image_dir=image_dir,
        mask_dir=mask_dir,
        layout=layout,
        unmatched_images=[imgs[k] for k in sorted(set(imgs) - set(msks))],
        unmatched_masks=[msks[k] for k in sorted(set(msks) - set(imgs))],
    )


def load_mask(path: str | Path) -> np.ndarray:
    """Read a mask as float32 ``(H, W)`` in [0, 1] (:func:`basnet_cli.images.load_gray`: 1-bit,
    8/16-bit grey, palette, RGB(A) and grey-valued masks, no thresholding)."""
    from basnet_cli.images import load_gray

    return load_gray(path)


@dataclass(frozen=True)
class BadPair:
    """A pair that cannot be trained or evaluated on; ``reason`` names the file at fault."""

    image: Path
    mask: Path
    reason: str


def decode_pair_uint8(image_path: str | Path, mask_path: str | Path
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 (H, W, 3), uint8 (h, w, 1))`` through the project's one decoder
    (:func:`basnet_cli.images.load_pair`); raises its ``DecodeError``."""
    from basnet_cli.images import load_pair

    image, mask = load_pair(image_path, mask_path)
    return image, (mask * 255.0 + 0.5).astype(np.uint8)[..., None]


def check_pairs(pairs: list[tuple[Path, Path]], *, workers: int | None = None,
                on_bad: Callable[[BadPair], None] | None = None,
                on_progress: Callable[[int, int], None] | None = None
                ) -> tuple[list[tuple[Path, Path]], list[BadPair]]:
    """Decode every pair once (threads; Pillow releases the GIL while decoding) and split them
    into the good ones, in their order, and the bad ones (unreadable, truncated, corrupt, or an
    image and mask of different shapes).  ``on_bad`` is called once per bad pair, in order;
    ``on_progress(done, total)`` now and then."""
    import concurrent.futures as cf
    import os

    from basnet_cli.images import DecodeError

    def check(pair: tuple[Path, Path]) -> str | None:
        try:
            decode_pair_uint8(*pair)
        except DecodeError as exc:
            return str(exc)
        return None

    good: list[tuple[Path, Path]] = []
    bad: list[BadPair] = []
    total = len(pairs)
    n_workers = workers or max(1, min(8, len(os.sched_getaffinity(0))))
    with cf.ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="basnet-check") as pool:
        for i, (pair, reason) in enumerate(zip(pairs, pool.map(check, pairs), strict=True)):
            if reason is None:
                good.append(pair)
            else:
                item = BadPair(pair[0], pair[1], reason)
                bad.append(item)
                if on_bad is not None:
                    on_bad(item)
            if on_progress is not None and ((i + 1) % 64 == 0 or i + 1 == total):
                on_progress(i + 1, total)
    return good, bad


# --------------------------------------------------------------------------------------------
# tf.data training pipeline (TensorFlow is imported lazily, inside the functions).


@dataclass(frozen=True)
class AugmentConfig:
    """The official augmentation: resize, random crop, random horizontal flip."""

    resize: int = 256
    crop: int = 224
    flip: bool = True

    def __post_init__(self) -> None:
        if self.crop > self.resize:
            raise DatasetError(f"--crop {self.crop} is larger than --resize {self.resize}")


# Marks a decode failure inside tf.data, so the trainer can report it as one line.
BAD_PAIR_MARK = "basnet-bad-pair: "


def _numpy_decode_pair(image_path: bytes, mask_path: bytes) -> tuple[np.ndarray, np.ndarray]:
    import os

    from basnet_cli.images import DecodeError

    try:
        return decode_pair_uint8(os.fsdecode(image_path), os.fsdecode(mask_path))
    except DecodeError as exc:  # a file that changed after check_pairs
        raise ValueError(BAD_PAIR_MARK + str(exc)) from None


def _decode_pair(tf, image_path, mask_path):
    """Decode to ``uint8`` RGB image and ``uint8`` one-channel mask with the project's decoder
    (the same as predict's and evaluate's: every format Pillow reads, fully decoded or an
    error)."""
    image, mask = tf.numpy_function(_numpy_decode_pair, [image_path, mask_path],
                                    [tf.uint8, tf.uint8], stateful=False)
    image.set_shape((None, None, 3))
    mask.set_shape((None, None, 1))
    return image, mask


def _augment(tf, image, mask, seed, aug: AugmentConfig):
    size = (aug.resize, aug.resize)
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
    mask = tf.image.resize(tf.cast(mask, tf.float32) / 255.0, size, method="bilinear")
    stacked = tf.concat([image, mask], axis=-1)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if aug.crop < aug.resize:
        stacked = tf.image.stateless_random_crop(stacked, (aug.crop, aug.crop, 4), seed=seeds[0])
    if aug.flip:
        stacked = tf.image.stateless_random_flip_left_right(stacked, seed=seeds[1])
    return stacked[..., :3], tf.clip_by_value(stacked[..., 3:], 0.0, 1.0)


class MemoryCache:
    """The decoded (un-augmented) training pairs, kept for a whole run: each file is read and
    decoded once, before the first epoch, instead of once per epoch.  ``uint8``, so DUTS-TR at
    256x256 takes 2.8 GB."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] | None = None
        self.masks: list[np.ndarray] | None = None

    def fill(self, tf, images: np.ndarray, masks: np.ndarray) -> None:
        if self.images is not None:
            return
        import concurrent.futures as cf
        import os

        n_workers = max(1, min(8, len(os.sched_getaffinity(0))))
        with cf.ThreadPoolExecutor(max_workers=n_workers) as pool:
            decoded = list(pool.map(lambda a: _numpy_decode_pair(*a), zip(images, masks,
                                                                          strict=True)))
        self.images = [image for image, _ in decoded]
        self.masks = [mask for _, mask in decoded]

    def dataset(self, tf, order: np.ndarray):
        """``(index, image, mask)`` in ``order``."""
        images, masks = self.images, self.masks
        assert images is not None and masks is not None

        def gen():
            for i in order:
                yield np.int64(i), images[i], masks[i]

        return tf.data.Dataset.from_generator(gen, output_signature=(
            tf.TensorSpec((), tf.int64), tf.TensorSpec((None, None, 3), tf.uint8),
            tf.TensorSpec((None, None, 1), tf.uint8)))


def train_dataset(pairs: list[tuple[Path, Path]], *, batch_size: int, aug: AugmentConfig,
                  seed: int, epoch: int, skip_batches: int = 0, n_outputs: int = 8,
                  cache: str | MemoryCache | None = None):
    """One epoch of shuffled, augmented ``(image, (mask,) * n_outputs)`` batches.

    Deterministic: the order depends on ``(seed, epoch)`` only and each element's crop/flip on
    ``(seed, epoch, index)``, so a resumed run that skips ``skip_batches`` sees exactly the
    batches the interrupted run would have seen.  The incomplete last batch is dropped.
    ``cache``: None, a :class:`MemoryCache` (the same object for every epoch of a run: the
    batches are those of the uncached pipeline), ``"memory"`` (a cache for this epoch only) or
    a file path prefix (decoded pairs cached on disk, shuffled with a seeded 2,048 buffer).
    """
    from basnet_cli.runtime import import_tf

    tf = import_tf()
    n = len(pairs)
    steps = n // batch_size
    if steps == 0:
        raise DatasetError(f"{n} training pairs are fewer than one batch of {batch_size}")
    index = np.arange(n, dtype="int64")
    images = np.array([str(p) for p, _ in pairs])
    masks = np.array([str(m) for _, m in pairs])
    epoch_seed = int(np.random.default_rng([seed, epoch]).integers(2**31))
    order = np.random.default_rng(epoch_seed).permutation(n)[: steps * batch_size]
    order = order[skip_batches * batch_size:]
    if cache == "memory":
        cache = MemoryCache()
    if isinstance(cache, MemoryCache):
        cache.fill(tf, images, masks)
        ds = cache.dataset(tf, order)
    elif cache:
        ds = tf.data.Dataset.from_tensor_slices((index, images, masks))
        ds = ds.map(lambda i, a, b: (i, *_decode_pair(tf, a, b)),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.cache(str(cache))
        ds = ds.shuffle(min(n, 2048), seed=epoch_seed, reshuffle_each_iteration=False)
        ds = ds.take(steps * batch_size).skip(skip_batches * batch_size)
    else:
        ds = tf.data.Dataset.from_tensor_slices((index[order], images[order], masks[order]))
        ds = ds.map(lambda i, a, b: (i, *_decode_pair(tf, a, b)),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def aug_fn(idx, image, mask):
        s = tf.stack([tf.constant(seed * 1000 + epoch, tf.int64), idx])
        image, mask = _augment(tf, image, mask, s, aug)
        return image, (mask,) * n_outputs

    ds = ds.map(aug_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(pairs: list[tuple[Path, Path]], *, size: int, batch_size: int):
    """Validation batches ``(image resized to size, mask resized to size)`` in a fixed order."""
    from basnet_cli.runtime import import_tf

    tf = import_tf()
    ds = tf.data.Dataset.from_tensor_slices(([str(p) for p, _ in pairs],
                                             [str(m) for _, m in pairs]))

    def load(i, m):
        image, mask = _decode_pair(tf, i, m)
        image = tf.image.resize(tf.cast(image, tf.float32), (size, size), method="bilinear")
        mask = tf.image.resize(tf.cast(mask, tf.float32) / 255.0, (size, size),
                               method="bilinear")
        return image, mask

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def split_pairs(pairs: list[tuple[Path, Path]], fraction: float, seed: int
                ) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """Deterministic train/validation split by ``seed``."""
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"--val-split must be in (0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val = max(1, int(round(len(pairs) * fraction)))
    val_idx = set(order[:n_val].tolist())
    train = [p for i, p in enumerate(pairs) if i not in val_idx]
    val = [p for i, p in enumerate(pairs) if i in val_idx]
    return train, val


def limit_pairs(pairs: list[tuple[Path, Path]], limit: int, seed: int
                ) -> list[tuple[Path, Path]]:
    """At most ``limit`` of ``pairs`` (0: all), a seeded choice kept in the original order (how
    ``basnet train --val-limit`` picks its validation pairs)."""
    if not limit or len(pairs) <= limit:
        return pairs
    order = np.random.default_rng(seed).permutation(len(pairs))
    return [pairs[i] for i in sorted(order[:limit])]

# --------------------------------------------------------------------------------------------
# Pure-Python input path (Pillow + NumPy) for Keras backends without TensorFlow (e.g. a GPU
# machine with JAX only).  Same order and the same kind of augmentation as the tf.data path
# (resize, seeded crop/flip), not bit-identical to it.


def tensorflow_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def _load_pair_numpy(image_path: Path, mask_path: Path, size: int) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    from PIL import Image

    from basnet_cli.images import load_pair

    rgb, mask = load_pair(image_path, mask_path)
    image = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR),
                       dtype=np.float32)
    if mask.shape != (size, size):
        mask = np.asarray(Image.fromarray(mask, mode="F").resize((size, size), Image.BILINEAR))
    return image, np.clip(mask, 0.0, 1.0)[..., None].astype(np.float32)


def _augment_numpy(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                   aug: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    if aug.crop < aug.resize:
        y, x = rng.integers(0, aug.resize - aug.crop + 1, size=2)
        image = image[y:y + aug.crop, x:x + aug.crop]
        mask = mask[y:y + aug.crop, x:x + aug.crop]
    if aug.flip and rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def python_train_batches(pairs: list[tuple[Path, Path]], *, batch_size: int, aug: AugmentConfig,
                         seed: int, epoch: int, skip_batches: int = 0, n_outputs: int = 8,
                         workers: int = 4):
    """A ``keras.utils.PyDataset`` with the same epoch order as :func:`train_dataset`."""
    import keras

    n = len(pairs)
    steps = n // batch_size
    if steps == 0:
        raise DatasetError(f"{n} training pairs are fewer than one batch of {batch_size}")
    epoch_seed = int(np.random.default_rng([seed, epoch]).integers(2**31))
    order = np.random.default_rng(epoch_seed).permutation(n)[: steps * batch_size]
    order = order[skip_batches * batch_size:]

    class PairBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=workers, use_multiprocessing=False)

        def __len__(self) -> int:
            return len(order) // batch_size

        def __getitem__(self, i: int):
            images, masks = [], []
            for idx in order[i * batch_size:(i + 1) * batch_size]:
                image, mask = _load_pair_numpy(*pairs[idx], aug.resize)
                rng = np.random.default_rng([seed, epoch, int(idx)])
                image, mask = _augment_numpy(image, mask, rng, aug)
                images.append(image)
                masks.append(mask)
            y = np.stack(masks)
            return np.stack(images), (y,) * n_outputs

    return PairBatches()


def python_eval_batches(pairs: list[tuple[Path, Path]], *, size: int, batch_size: int):
    """Validation batches without TensorFlow (a plain generator)."""
    for start in range(0, len(pairs), batch_size):
        loaded = [_load_pair_numpy(i, m, size) for i, m in pairs[start:start + batch_size]]
        yield np.stack([a for a, _ in loaded]), np.stack([b for _, b in loaded])

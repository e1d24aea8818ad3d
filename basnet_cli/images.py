"""The project's one image decoder and writer (Pillow): decode any photo to RGB, masks and maps
to gray, pairs for training and evaluation; render and atomically write maps.

Decoding rules (:func:`to_rgb`):
- EXIF orientation is applied (the mask matches the photo as viewers show it);
- grayscale, 1-bit, palette, CMYK, YCbCr, LAB... are converted to RGB with Pillow;
- 16-bit and 32-bit integer images are scaled to 8 bits (``I;16``: divided by 257), float images
  (``F``) are taken as 0..1 when their maximum is <= 1, else clipped to 0..255;
- transparency (RGBA, LA, PA, palette with a transparent colour) is composited on **white**: the
  colour under fully transparent pixels is arbitrary (often black or garbage), white is what image
  viewers show and gives the model a plain background to ignore;
- animated GIF/WebP and multi-page TIFF: the first frame.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from basnet_cli.display import printable

IMAGE_EXTS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".webp", ".tif",
              ".tiff", ".gif")
# Saliency maps and masks: the photo formats, plus PGM (some SOD benchmarks ship maps as .pgm).
MAP_EXTS = (*IMAGE_EXTS, ".pgm")

# Pillow's own decompression-bomb limit (~0.27 GB of RGB); --max-pixels defaults to it.
DEFAULT_MAX_PIXELS = 89_478_485

# zlib level for PNG outputs: on ECSSD-like masks level 3 encodes ~1.7x faster than Pillow's
# default 6 (3.1 vs 5.4 ms at 400x300) for files of 2.1 instead of 1.5 KB.
PNG_COMPRESS_LEVEL = 3
JPEG_QUALITY = 90

# File extension of each output kind: masks and cutouts are lossless PNG (cutouts need alpha);
# overlays are only for looking at, and JPEG encodes them ~10x faster than PNG.
KIND_EXT = {"mask": ".png", "binary": ".png", "cutout": ".png", "overlay": ".jpg"}

OVERLAY_TINT = (255, 0, 64)
OVERLAY_ALPHA = 0.55

_ORIENTATION_TAG = 0x0112
_UMASK: int | None = None


class DecodeError(Exception):
    """An input that cannot be turned into an RGB image; ``str(err)`` is a one-line reason."""


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        current = os.umask(0o022)
        os.umask(current)
        _UMASK = current
    return _UMASK


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return kind
    return "special file"


def output_is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a finished output of ours: a regular, non-empty file whose format's
    end marker is in place (PNG: the IEND chunk, with every chunk's CRC checked; JPEG: EOI).
    A re-run redoes outputs that fail this (0-byte, truncated, replaced by a folder)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size < 16:
            return False
        with open(path, "rb") as fh:
            head = fh.read(8)
            fh.seek(-12, os.SEEK_END)
            tail = fh.read(12)
    except OSError:
        return False
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if tail != b"\x00\x00\x00\x00IEND\xaeB`\x82":
            return False
        try:
            with Image.open(path) as im:
                im.verify()  # chunk CRCs, without decoding
        except Exception:  # noqa: BLE001 - any complaint means: write it again
            return False
        return True
    if head.startswith(b"\xff\xd8"):
        return tail.endswith(b"\xff\xd9")
    return False


def open_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
               ) -> Image.Image:
    """Open ``path`` lazily (header only) and check its size against ``max_pixels``.

    Raises :class:`DecodeError` for empty, unreadable, unrecognised or too large files.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise DecodeError("broken symbolic link (its target does not exist)") from None
        raise DecodeError("file not found (deleted during the run?)") from None
    except OSError as exc:
        raise DecodeError(f"cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):  # opening a FIFO would block: never open one
        raise DecodeError(f"not a regular file (a {_file_kind(info.st_mode)})")
    if info.st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise DecodeError("not an image Pillow can decode (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"too many pixels ({exc})") from None
    except OSError as exc:
        raise DecodeError(f"corrupt or truncated image ({exc})") from None
    width, height = im.size
    if max_pixels and width * height > max_pixels:
        im.close()
        raise DecodeError(
            f"{width}x{height} = {width * height:,} pixels is over --max-pixels {max_pixels:,} "
            f"(decompression-bomb guard)"
        )
    return im


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block only loses the rotation
        return 1


def oriented_size(im: Image.Image) -> tuple[int, int]:
    """``(width, height)`` after EXIF orientation, from the header alone."""
    width, height = im.size
    if _orientation(im) in (5, 6, 7, 8):
        return height, width
    return width, height


def _composite_on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (see the module docstring for the rules)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.float32)
        top = 65535.0 if (mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
        arr = np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float32))
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        arr = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in im.info
    ):
        return _composite_on_white(im)
    return im.convert("RGB")


@contextlib.contextmanager
def _decoding(im: Image.Image) -> Iterator[None]:
    """Pillow's errors while decoding ``im`` as :class:`DecodeError`; ``im`` closed after."""
    try:
        yield
    except DecodeError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(f"corrupt or truncated image ({exc})") from None
    except MemoryError:
        raise DecodeError("out of memory while decoding") from None
    finally:
        im.close()


def _full_load(im: Image.Image) -> None:
    """Decode every pixel now (errors become :class:`DecodeError` in :func:`_decoding`).

    Must run before anything else touches the pixels: Pillow's ``getexif()`` on a PNG loads the
    image itself, and an error swallowed there leaves a half-filled image that later ``load()``
    calls accept (a corrupt PNG would decode as partly black instead of failing).
    """
    im.load()


def load_rgb(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS, *,
             draft_size: int | None = None, orient: bool = True
             ) -> tuple[Image.Image, tuple[int, int]]:
    """Decode ``path`` to an RGB image, EXIF-oriented unless ``orient=False``.

    Returns ``(image, (width, height))`` where the size is the full (oriented) size of the
    file.  With ``draft_size``, JPEGs are decoded at a reduced DCT scale that keeps both sides
    >= ``draft_size`` (2-8x faster for large photos); the returned image is then smaller than
    the returned size.  Every pixel is decoded or :class:`DecodeError` is raised.
    """
    im = open_image(path, max_pixels)
    with _decoding(im):
        width, height = im.size
        if draft_size and im.format == "JPEG":
            im.draft(None, (draft_size, draft_size))
        _full_load(im)
        rotated = orient and _orientation(im) in (5, 6, 7, 8)
        size = (height, width) if rotated else (width, height)
        oriented = ImageOps.exif_transpose(im) if orient else im
        if oriented is None:  # pragma: no cover - Pillow returns None only when in_place=True
            oriented = im
        rgb = to_rgb(oriented)
        if rgb is im:  # ``im`` is closed below
            rgb = im.copy()
        rgb.load()
        return rgb, size


def load_gray(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
              ) -> np.ndarray:
    """Decode a mask or a saliency map to float32 ``(H, W)`` in [0, 1] (no EXIF rotation:
    masks are label images of the stored pixels).

    1-bit, 8/16/32-bit grey, float, palette and RGB(A) files are accepted: colour is converted
    to luminance (alpha ignored), 16-bit integers are scaled by 65535 (by 255 when no value is
    over 255), float maps are taken as 0..1 (0..255 when their maximum is over 1).  A float map
    with NaN or infinite values raises :class:`DecodeError`.
    """
    arr = _decode_gray(path, max_pixels)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    return arr


def load_gray_uint8(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
                    ) -> np.ndarray:
    """:func:`load_gray` quantised to uint8 0..255 (``floor(p*255 + 0.5)``), without the float
    round trip for files that are 8-bit already (the common case for masks and maps)."""
    arr = _decode_gray(path, max_pixels)
    if arr.dtype == np.uint8:
        return arr
    return (arr * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def _decode_gray(path: str | os.PathLike, max_pixels: int | None) -> np.ndarray:
    """The grey values of a file: uint8 for 1-bit, 8-bit, palette and colour files, float32 in
    [0, 1] for 16/32-bit integer and float files (the rules of :func:`load_gray`)."""
    im = open_image(path, max_pixels)
    with _decoding(im):
        _full_load(im)
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float32)
            top = 65535.0 if arr.max(initial=0) > 255 else 255.0
            return np.clip(arr / top, 0.0, 1.0)
        if mode == "F":
            arr = np.asarray(im, dtype=np.float32)
            if not np.isfinite(arr).all():
                bad = int(np.count_nonzero(~np.isfinite(arr)))
                raise DecodeError(f"float map with {bad:,} NaN or infinite values")
            return np.clip(arr / (255.0 if arr.max(initial=0) > 1.0 else 1.0), 0.0, 1.0)
        if mode == "1":
            return np.asarray(im, dtype=np.uint8) * np.uint8(255)
        if mode in ("RGBA", "PA", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBa"):
            im = im.convert("RGB")
        return np.array(im.convert("L"), dtype=np.uint8)


def _same_aspect(a: tuple[int, int], b: tuple[int, int], tol: float = 0.02) -> bool:
    return abs(a[0] * b[1] - b[0] * a[1]) <= tol * a[1] * b[0]


def _load_pair_image(image_path: str | os.PathLike, mask_path: str | os.PathLike,
                     max_pixels: int | None) -> tuple[Image.Image, np.ndarray]:
    """:func:`load_pair` with the photo as a Pillow image."""
    try:
        mask = load_gray(mask_path, max_pixels)
    except DecodeError as exc:
        raise DecodeError(f"mask {printable(mask_path)}: {exc}") from None
    mask_wh = (mask.shape[1], mask.shape[0])
    try:
        rgb, _ = load_rgb(image_path, max_pixels, orient=False)
        if not _same_aspect(rgb.size, mask_wh):
            rotated, _ = load_rgb(image_path, max_pixels)
            if _same_aspect(rotated.size, mask_wh):
                rgb = rotated
    except DecodeError as exc:
        raise DecodeError(f"image {printable(image_path)}: {exc}") from None
    if not _same_aspect(rgb.size, mask_wh):
        raise DecodeError(f"image {printable(image_path)} is {rgb.size[0]}x{rgb.size[1]} but "
                          f"its mask {printable(mask_path)} is {mask_wh[0]}x{mask_wh[1]}")
    return rgb, mask


def load_pair(image_path: str | os.PathLike, mask_path: str | os.PathLike,
              max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """A training/evaluation pair: uint8 RGB ``(H, W, 3)`` and float32 mask ``(h, w)``.

    The two may differ in resolution but not in shape (aspect ratio within 2 %): both are
    resized to the network's input, so a mask of another shape would be silently misaligned.
    The photo is EXIF-oriented when that is what makes its shape the mask's (a mask drawn on
    the photo as viewers show it), else left as stored.  Raises :class:`DecodeError` naming
    the broken file of the two, or both files when their shapes differ.
    """
    rgb, mask = _load_pair_image(image_path, mask_path, max_pixels)
    return np.asarray(rgb, dtype=np.uint8), mask


def load_pair_for_model(image_path: str | os.PathLike, mask_path: str | os.PathLike, size: int,
                        max_pixels: int | None = DEFAULT_MAX_PIXELS
                        ) -> tuple[np.ndarray, np.ndarray]:
    """A labelled pair for evaluation: the photo of :func:`load_pair` as the network sees it
    (uint8 ``(size, size, 3)``, resized as :func:`load_for_model` does) and its float32 mask
    ``(h, w)`` at the mask's own resolution."""
    rgb, mask = _load_pair_image(image_path, mask_path, max_pixels)
    return _model_input(rgb, size), mask


def _model_input(rgb: Image.Image, size: int) -> np.ndarray:
    """``rgb`` resized to ``size`` x ``size`` with Pillow's bilinear filter, which widens its
    support when shrinking (an anti-aliased bilinear), so large photos do not alias on the way
    down; uint8 ``(size, size, 3)``."""
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def load_for_model(path: str | os.PathLike, size: int,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS, *, draft: bool = True
                   ) -> tuple[np.ndarray, tuple[int, int]]:
    """``(uint8 array (size, size, 3), (width, height) of the original)`` for the network
    (see :func:`_model_input` for the resize)."""
    rgb, orig = load_rgb(path, max_pixels, draft_size=size if draft else None)
    return _model_input(rgb, size), orig


# ---------------------------------------------------------------------------------------------
# Post-processing and output rendering.


def prepare_map(prob: np.ndarray, size: tuple[int, int], *, normalize: bool = False
                ) -> np.ndarray:
    """Network map ``(h, w)`` or ``(h, w, 1)`` -> float32 ``(H, W)`` in [0, 1] at ``size=(W, H)``.

    ``normalize``: the official per-image min-max stretch (before resizing, as in
    ``basnet_test.py``); a constant map becomes all zeros.
    """
    p = np.asarray(prob, dtype=np.float32)
    if p.ndim == 3:
        p = p[..., 0]
    if normalize:
        lo, hi = float(p.min()), float(p.max())
        p = (p - lo) / (hi - lo) if hi > lo else np.zeros_like(p)
    width, height = size
    if (p.shape[1], p.shape[0]) != (width, height):
        p = np.asarray(Image.fromarray(p, "F").resize((width, height),
                                                     Image.Resampling.BILINEAR))
    return np.clip(p, 0.0, 1.0)


def to_uint8(p: np.ndarray) -> np.ndarray:
    return (p * 255.0 + 0.5).astype(np.uint8)


def render(kind: str, prob: np.ndarray, *, photo: Image.Image | None = None,
           threshold: float = 0.5) -> Image.Image:
    """One output image for ``kind`` from a full-size map ``prob`` (H, W) in [0, 1].

    ``mask``: 8-bit soft map; ``binary``: 255 where ``prob >= threshold``; ``cutout``: the photo
    as RGBA with the mask as alpha; ``overlay``: the photo with the mask tinted.
    """
    if kind == "mask":
        return Image.fromarray(to_uint8(prob), "L")
    if kind == "binary":
        return Image.fromarray(np.where(prob >= threshold, 255, 0).astype(np.uint8), "L")
    if photo is None:
        raise ValueError(f"output kind {kind!r} needs the photo")
    if photo.size != (prob.shape[1], prob.shape[0]):
        raise ValueError(f"photo {photo.size} and map {prob.shape[::-1]} differ in size")
    if kind == "cutout":
        rgba = photo.convert("RGBA")
        rgba.putalpha(Image.fromarray(to_uint8(prob), "L"))
        return rgba
    if kind == "overlay":
        weight = Image.fromarray(to_uint8(prob * OVERLAY_ALPHA), "L")
        tint = Image.new("RGB", photo.size, OVERLAY_TINT)
        return Image.composite(tint, photo.convert("RGB"), weight)
    raise ValueError(f"unknown output kind {kind!r}")


def atomic_save(image: Image.Image, path: str | os.PathLike, *, fsync: bool = False) -> None:
    """Write ``image`` to ``path`` (JPEG for ``.jpg``, else PNG) via a hidden temporary file
    and ``os.replace``.

    Readers (and a resumed run) only ever see no file or a complete file; the temporary file is
    removed on any error.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if path.suffix.lower() in (".jpg", ".jpeg"):
                image.convert("RGB").save(fh, format="JPEG", quality=JPEG_QUALITY)
            else:
                image.save(fh, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

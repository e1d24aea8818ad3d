"""Pillow helpers for ``basnet predict``: decode any photo to RGB, render and atomically write maps.

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

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".webp", ".tif",
              ".tiff", ".gif")

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


def open_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
               ) -> Image.Image:
    """Open ``path`` lazily (header only) and check its size against ``max_pixels``.

    Raises :class:`DecodeError` for empty, unreadable, unrecognised or too large files.
    """
    try:
        nbytes = os.path.getsize(path)
    except OSError as exc:
        raise DecodeError(f"cannot read ({exc.strerror or exc})") from None
    if nbytes == 0:
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


def load_rgb(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS, *,
             draft_size: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Decode ``path`` to an EXIF-oriented RGB image.

    Returns ``(image, (width, height))`` where the size is the full, oriented size of the
    file.  With ``draft_size``, JPEGs are decoded at a reduced DCT scale that keeps both sides
    >= ``draft_size`` (2-8x faster for large photos); the returned image is then smaller than
    the returned size.
    """
    im = open_image(path, max_pixels)
    try:
        size = oriented_size(im)
        if draft_size and im.format == "JPEG":
            im.draft(None, (draft_size, draft_size))
        try:
            oriented = ImageOps.exif_transpose(im)
        except (OSError, SyntaxError, ValueError) as exc:
            raise DecodeError(f"corrupt or truncated image ({exc})") from None
        if oriented is None:  # pragma: no cover - Pillow returns None only when in_place=True
            oriented = im
        rgb = to_rgb(oriented)
        rgb.load()
        return rgb, size
    except DecodeError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(f"corrupt or truncated image ({exc})") from None
    except MemoryError:
        raise DecodeError("out of memory while decoding") from None
    finally:
        im.close()


def load_for_model(path: str | os.PathLike, size: int,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS, *, draft: bool = True
                   ) -> tuple[np.ndarray, tuple[int, int]]:
    """``(uint8 array (size, size, 3), (width, height) of the original)`` for the network.

    The resize is Pillow's bilinear filter, which widens its support when shrinking (an
    anti-aliased bilinear), so large photos do not alias on the way down to ``size``.
    """
    rgb, orig = load_rgb(path, max_pixels, draft_size=size if draft else None)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8), orig


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

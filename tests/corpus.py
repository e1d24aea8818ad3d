"""A corpus of bad and odd inputs for the reliability tests (tests/test_reliability.py).

:func:`write_photos` writes photos for ``basnet predict``: each file's name says what it is,
and :data:`Photo.ok` whether a run must process it (odd but valid) or fail it with one line
naming it (broken).  :func:`write_pairs` does the same for image/mask pairs (``train``,
``evaluate``).  Everything is small (at most 96 pixels a side) so the tests stay fast.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Photo:
    path: Path
    ok: bool  # processed (True) or one failure line (False)


def _rgb(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    arr = (rng.random((h, w, 3)) * 80 + 40).astype(np.uint8)
    arr[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = (220, 60, 40)
    return Image.fromarray(arr)


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _corrupt_png_stream(data: bytes) -> bytes:
    """Flip bytes inside the first IDAT chunk's zlib stream (chunk CRC left wrong too)."""
    out = bytearray(data)
    at = out.find(b"IDAT") + 4
    for k in range(at + 40, min(at + 120, len(out) - 16)):
        out[k] ^= 0x5A
    return bytes(out)


def _exif_rotated_jpeg() -> bytes:
    im = _rgb(7, (56, 32))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    return _encode(im, "JPEG", exif=exif.tobytes())


def _png_bomb_header() -> bytes:
    """A PNG whose header claims 100,000 x 100,000 pixels (with almost no data)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _frames(fmt: str) -> bytes:
    frames = [_rgb(s, (40, 40)) for s in (1, 2, 3)]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:])
    return buf.getvalue()


def photo_files() -> list[tuple[str, bytes | None, bool]]:
    """``(name, content, ok)``; ``None`` content marks special files made by :func:`write_photos`.
    """
    rgb = _rgb(0)
    jpg = _encode(rgb, "JPEG", quality=90)
    png = _encode(rgb, "PNG")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.new("L", rgb.size, 128))
    palette_t = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette_t.info["transparency"] = 0
    grey16 = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    floatmap = Image.fromarray(np.asarray(rgb.convert("L"), np.float32) / 255.0)
    good: list[tuple[str, bytes | None, bool]] = [
        ("ok_plain.jpg", jpg, True),
        ("ok_plain.png", png, True),
        ("ok_upper_ext.JPG", jpg, True),
        ("ok_jfif.jfif", jpg, True),
        ("ok_grey.jpg", _encode(rgb.convert("L"), "JPEG"), True),
        ("ok_1bit.png", _encode(rgb.convert("1"), "PNG"), True),
        ("ok_palette_transparent.png", _encode(palette_t, "PNG"), True),
        ("ok_rgba.png", _encode(rgba, "PNG"), True),
        ("ok_la.png", _encode(rgba.convert("LA"), "PNG"), True),
        ("ok_16bit.png", _encode(grey16, "PNG"), True),
        ("ok_float.tif", _encode(floatmap, "TIFF"), True),
        ("ok_cmyk.jpg", _encode(rgb.convert("CMYK"), "JPEG"), True),
        ("ok_exif_rotated.jpg", _exif_rotated_jpeg(), True),
        ("ok_progressive.jpg", _encode(rgb, "JPEG", progressive=True), True),
        ("ok_animated.gif", _frames("GIF"), True),
        ("ok_multipage.tif", _frames("TIFF"), True),
        ("ok_webp.webp", _encode(rgb, "WEBP"), True),
        ("ok_bmp.bmp", _encode(rgb, "BMP"), True),
        ("ok_1x1.png", _encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), True),
        ("ok_wide_96x2.png", _encode(_rgb(3, (96, 2)), "PNG"), True),
        ("ok space café.png", png, True),
        ("ok_[red]markup[bold].png", png, True),
    ]
    bad: list[tuple[str, bytes | None, bool]] = [
        ("bad_empty.jpg", b"", False),
        ("bad_truncated.jpg", jpg[: len(jpg) // 2], False),
        ("bad_truncated.png", png[: len(png) // 2], False),
        ("bad_corrupt_stream.png", _corrupt_png_stream(png), False),
        ("bad_random_bytes.jpg", np.random.default_rng(1).bytes(700), False),
        ("bad_text.png", b"this is not an image\n" * 20, False),
        ("bad_html.jpg", b"<!doctype html><html><body>404</body></html>", False),
        ("bad_png_header_only.png", png[:33], False),
        ("bad_jpeg_header_only.jpg", jpg[:20], False),
        ("bad_truncated.gif", _frames("GIF")[:60], False),
        ("bad_truncated.bmp", _encode(rgb, "BMP")[:400], False),
        ("bad_truncated.webp", _encode(rgb, "WEBP")[:60], False),
        ("bad_truncated.tif", _encode(rgb, "TIFF")[:300], False),
        ("bad_bomb.png", _png_bomb_header(), False),
        ("bad_new\nline.jpg", b"broken", False),
        ("bad_\x1b[31mescape.png", b"broken", False),
        ("bad_\u202ertl.png", b"broken", False),
        ("bad_fifo.jpg", None, False),
        ("bad_broken_link.png", None, False),
    ]
    return good + bad


def write_photos(folder: Path) -> list[Photo]:
    """Write the photo corpus into ``folder`` (plus a link to a good file and a non-UTF-8 name);
    returns every input a run over ``folder`` must account for."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for name, content, ok in photo_files():
        path = folder / name
        if name == "bad_fifo.jpg":
            os.mkfifo(path)
        elif name == "bad_broken_link.png":
            path.symlink_to(folder / "does-not-exist.png")
        else:
            path.write_bytes(content or b"")
        photos.append(Photo(path, ok))
    link = folder / "ok_link_to_plain.png"
    link.symlink_to("ok_plain.png")
    photos.append(Photo(link, True))
    raw = os.fsencode(folder) + b"/bad_latin1_\xe9.jpg"  # not UTF-8
    with open(raw, "wb") as fh:
        fh.write(b"broken")
    photos.append(Photo(Path(os.fsdecode(raw)), False))
    # Not inputs: hidden files and a folder named like a photo are not photos.
    (folder / ".hidden.jpg").write_bytes(b"broken")
    (folder / "a_folder.jpg").mkdir()
    return photos


@dataclass(frozen=True)
class Pair:
    stem: str
    ok: bool
    bad_file: str = ""  # "image" | "mask" | "both" for bad pairs


def write_pairs(root: Path, n_good: int = 12) -> list[Pair]:
    """``root/images`` + ``root/masks``: ``n_good`` good pairs (some with odd but valid masks)
    and one pair per kind of breakage.  Returns the pairs (unmatched files are not pairs)."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    pairs = []

    def mask_for(size: tuple[int, int]) -> Image.Image:
        w, h = size
        arr = np.zeros((h, w), np.uint8)
        arr[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
        return Image.fromarray(arr)

    for i in range(n_good):
        stem = f"good_{i:02d}"
        im = _rgb(100 + i, (64, 64))
        im.save(images / f"{stem}.jpg", quality=92)
        m = mask_for(im.size)
        kind = i % 4
        if kind == 1:  # an RGB mask
            m = m.convert("RGB")
        elif kind == 2:  # a grey-valued (soft) mask
            m = Image.fromarray((np.asarray(m) * 0.7).astype(np.uint8) + 20)
        elif kind == 3:  # 16-bit
            m = Image.fromarray(np.asarray(m, np.uint16) * 257)
        m.save(masks / f"{stem}.png")
        pairs.append(Pair(stem, True))
    jpg = _encode(_rgb(5, (64, 64)), "JPEG")
    mask_png = _encode(mask_for((64, 64)), "PNG")
    broken = {
        "bad_truncated_image": (jpg[: len(jpg) // 2], mask_png, "image"),
        "bad_empty_image": (b"", mask_png, "image"),
        "bad_truncated_mask": (jpg, mask_png[: len(mask_png) // 2], "mask"),
        "bad_corrupt_mask": (jpg, _corrupt_png_stream(mask_png), "mask"),
        "bad_text_mask": (jpg, b"not a mask", "mask"),
        "bad_shape_mismatch": (jpg, _encode(mask_for((64, 32)), "PNG"), "both"),
    }
    for stem, (image_bytes, mask_bytes, which) in broken.items():
        (images / f"{stem}.jpg").write_bytes(image_bytes)
        (masks / f"{stem}.png").write_bytes(mask_bytes)
        pairs.append(Pair(stem, False, which))
    # Unmatched files: reported as such, not as pairs.
    (images / "unmatched_image.jpg").write_bytes(jpg)
    (masks / "unmatched_mask.png").write_bytes(mask_png)
    return pairs

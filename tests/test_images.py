"""The one decoder (basnet_cli.images): every pixel decoded or a DecodeError, never a
half-filled image; pairs name their broken file; finished outputs are recognised."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from basnet_cli import images as imgs
from tests.corpus import _corrupt_png_stream, _exif_rotated_jpeg


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def noisy() -> np.ndarray:
    return (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)


def test_a_png_with_a_corrupt_data_stream_is_refused(tmp_path, noisy):
    # Pillow's getexif() on a PNG loads the pixels and an error swallowed there left a
    # part-black image that later load() calls accepted.
    path = tmp_path / "bad.png"
    path.write_bytes(_corrupt_png_stream(_png(noisy)))
    with pytest.raises(imgs.DecodeError, match="data stream"):
        imgs.load_rgb(path)
    with pytest.raises(imgs.DecodeError, match="data stream"):
        imgs.load_for_model(path, 32)
    with pytest.raises(imgs.DecodeError, match="data stream"):
        imgs.load_gray(path)


def test_truncated_files_of_each_format_are_refused(tmp_path, noisy):
    for fmt in ("PNG", "JPEG", "BMP", "TIFF", "WEBP"):
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, format=fmt)
        path = tmp_path / f"t.{fmt.lower()}"
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        with pytest.raises(imgs.DecodeError):
            imgs.load_rgb(path)


def test_a_fifo_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)  # opening it for reading would block forever
    with pytest.raises(imgs.DecodeError, match="FIFO"):
        imgs.load_rgb(fifo)
    link = tmp_path / "gone.png"
    link.symlink_to(tmp_path / "missing.png")
    with pytest.raises(imgs.DecodeError, match="broken symbolic link"):
        imgs.load_gray(link)


def test_a_nan_float_map_is_refused(tmp_path):
    arr = np.full((8, 8), 0.5, np.float32)
    arr[2, 3] = np.nan
    path = tmp_path / "map.tif"
    Image.fromarray(arr).save(path)
    with pytest.raises(imgs.DecodeError, match="1 NaN"):
        imgs.load_gray(path)


def test_load_gray_scales_each_mask_kind(tmp_path):
    base = np.array([[0, 128], [255, 64]], np.uint8)
    cases = {
        "l.png": Image.fromarray(base),
        "rgb.png": Image.fromarray(np.repeat(base[..., None], 3, axis=2)),
        "i16.png": Image.fromarray(base.astype(np.uint16) * 257),
        "f.tif": Image.fromarray(base.astype(np.float32) / 255.0),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
        np.testing.assert_allclose(imgs.load_gray(tmp_path / name), base / 255.0, atol=1e-6,
                                   err_msg=name)


def test_load_gray_uint8_equals_the_quantised_float_decode(tmp_path):
    """The uint8 fast path (what ``basnet evaluate`` reads) is exactly ``to_uint8(load_gray)``
    for every kind of file, all 256 grey levels included."""
    from basnet_cli.metrics import to_uint8

    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    cases = {
        "l.png": Image.fromarray(levels),
        "rgb.png": Image.fromarray(np.stack([levels, levels[::-1], levels.T], axis=2)),
        "p.png": Image.fromarray(levels).convert("P"),
        "la.png": Image.fromarray(levels).convert("LA"),
        "one.png": Image.fromarray(levels > 100).convert("1"),
        "i16.png": Image.fromarray(levels.astype(np.uint16) * 251),
        "f.tif": Image.fromarray(levels.astype(np.float32) / 255.0 * 0.97),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
        fast = imgs.load_gray_uint8(tmp_path / name)
        assert fast.dtype == np.uint8, name
        np.testing.assert_array_equal(fast, to_uint8(imgs.load_gray(tmp_path / name)),
                                      err_msg=name)


def test_load_pair_names_the_broken_file_and_refuses_other_shapes(tmp_path, noisy):
    image, mask = tmp_path / "a.png", tmp_path / "a_mask.png"
    image.write_bytes(_png(noisy))
    mask.write_bytes(_png(noisy[..., 0])[:50])
    with pytest.raises(imgs.DecodeError, match=r"^mask .*a_mask\.png: "):
        imgs.load_pair(image, mask)
    mask.write_bytes(_png(noisy[:32, :, 0]))
    with pytest.raises(imgs.DecodeError, match="64x64 but its mask .* is 64x32"):
        imgs.load_pair(image, mask)
    mask.write_bytes(_png(noisy[::2, ::2, 0]))  # half resolution, same shape: fine
    rgb, m = imgs.load_pair(image, mask)
    assert rgb.shape == (64, 64, 3) and m.shape == (32, 32)


def test_load_pair_orients_the_photo_only_when_the_mask_says_so(tmp_path):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(_exif_rotated_jpeg())  # stored 56x32, viewed 32x56
    mask = tmp_path / "m.png"
    Image.new("L", (32, 56)).save(mask)
    assert imgs.load_pair(photo, mask)[0].shape == (56, 32, 3)  # oriented, like the mask
    Image.new("L", (56, 32)).save(mask)
    assert imgs.load_pair(photo, mask)[0].shape == (32, 56, 3)  # as stored


def test_output_is_complete(tmp_path, noisy):
    good = tmp_path / "m.png"
    imgs.atomic_save(Image.fromarray(noisy[..., 0]), good)
    assert imgs.output_is_complete(good)
    jpg = tmp_path / "o.jpg"
    imgs.atomic_save(Image.fromarray(noisy), jpg)
    assert imgs.output_is_complete(jpg)
    data = good.read_bytes()
    for name, content in (("empty.png", b""), ("half.png", data[: len(data) // 2]),
                          ("half.jpg", jpg.read_bytes()[:300])):
        (tmp_path / name).write_bytes(content)
        assert not imgs.output_is_complete(tmp_path / name), name
    flipped = bytearray(data)
    flipped[60] ^= 0xFF  # a chunk CRC no longer matches
    (tmp_path / "crc.png").write_bytes(bytes(flipped))
    assert not imgs.output_is_complete(tmp_path / "crc.png")
    (tmp_path / "dir.png").mkdir()
    assert not imgs.output_is_complete(tmp_path / "dir.png")
    assert not imgs.output_is_complete(tmp_path / "missing.png")

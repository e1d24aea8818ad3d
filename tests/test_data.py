"""Training data (:mod:`basnet_cli.data`): pairing, mask decoding, the tf.data and Python
pipelines, the in-memory cache of decoded pairs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from basnet_cli.data import (
    AugmentConfig,
    DatasetError,
    MemoryCache,
    find_pairs,
    load_mask,
    train_dataset,
)
from basnet_cli.errors import UsageError
from basnet_cli.images import IMAGE_EXTS, MAP_EXTS
from tests.conftest import make_pair, write_dataset


def test_discovers_duts_and_plain_layouts(tmp_path):
    duts = write_dataset(tmp_path / "duts", 3, layout="duts")
    plain = write_dataset(tmp_path / "plain", 3, layout="plain")
    a, b = find_pairs(duts), find_pairs(plain)
    assert (a.layout, len(a.pairs)) == ("duts", 3)
    assert (b.layout, len(b.pairs)) == ("plain", 3)
    c = find_pairs(images=plain / "images", masks=plain / "masks")
    assert c.layout == "explicit" and [p[0].stem for p in c.pairs] == ["0000", "0001", "0002"]
    with pytest.raises(DatasetError, match="no dataset layout"):
        find_pairs(tmp_path)


def test_masks_of_every_kind_become_one_channel_in_unit_range(tmp_path):
    grey = np.array([[0, 128], [255, 64]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
    Image.fromarray(grey > 100).save(tmp_path / "bits.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    for name in ("grey", "rgb", "deep"):
        np.testing.assert_allclose(load_mask(tmp_path / f"{name}.png"), grey / 255.0, atol=2e-3)
    np.testing.assert_array_equal(load_mask(tmp_path / "bits.png"), (grey > 100).astype(float))
    # The tf.data decoder agrees for the RGB mask.
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(root / "images" / "a.jpg")
    big = np.kron(grey, np.ones((32, 32), np.uint8))
    Image.fromarray(np.stack([big] * 3, -1)).save(root / "masks" / "a.png")
    ds = train_dataset(find_pairs(root).pairs, batch_size=1, aug=AugmentConfig(64, 64, False),
                       seed=0, epoch=0, n_outputs=1)
    _, (mask,) = next(iter(ds))
    assert mask.shape == (1, 64, 64, 1)
    np.testing.assert_allclose(np.asarray(mask)[0, 16, 16, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(mask)[0, 16, 48, 0], 128 / 255, atol=1e-3)


def test_pipeline_is_deterministic_and_skip_matches(synth_dataset):
    pairs = find_pairs(synth_dataset).pairs
    aug = AugmentConfig(72, 64, True)

    def batches(skip=0, seed=3, epoch=1):
        ds = train_dataset(pairs, batch_size=4, aug=aug, seed=seed, epoch=epoch,
                           skip_batches=skip, n_outputs=1)
        return [np.asarray(x) for x, _ in ds]

    full, again, skipped = batches(), batches(), batches(skip=2)
    assert len(full) == 4
    for a, b in zip(full, again):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(full[2:], skipped):
        np.testing.assert_array_equal(a, b)
    other_epoch = batches(epoch=2)
    assert not np.array_equal(full[0], other_epoch[0])


def test_python_input_pipeline_matches_tfdata_order(synth_dataset):
    from basnet_cli.data import python_train_batches

    pairs = find_pairs(synth_dataset).pairs
    aug = AugmentConfig(72, 64, True)
    py = python_train_batches(pairs, batch_size=4, aug=aug, seed=3, epoch=1, skip_batches=1,
                              n_outputs=2)
    tfd = list(train_dataset(pairs, batch_size=4, aug=aug, seed=3, epoch=1, skip_batches=1,
                             n_outputs=2))
    assert len(py) == len(tfd) == 3
    x, (y1, y2) = py[0]
    assert x.shape == (4, 64, 64, 3) and y1.shape == (4, 64, 64, 1) and y1 is y2
    assert 0.0 <= y1.min() and y1.max() <= 1.0 and x.max() > 100
    # Same pairs in the same order (crops differ): compare mean mask coverage per image.
    tf_cov = np.asarray(tfd[0][1][0]).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(y1.mean(axis=(1, 2, 3)), tf_cov, atol=0.08)


def test_pairs_use_the_projects_extension_lists_jfif_included(tmp_path):
    # Every extension predict reads pairs for training; .jfif (a JPEG) trains like .jpg.
    assert ".jfif" in IMAGE_EXTS and set(IMAGE_EXTS) <= set(MAP_EXTS)
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i, ext in enumerate((".jfif", ".JFIF", ".jpe", ".jpg")):
        image, mask = make_pair(rng, (64, 64))
        Image.fromarray(image).save(root / "images" / f"{i}{ext}", format="JPEG")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    scan = find_pairs(root)
    assert [p.name for p, _ in scan.pairs] == ["0.jfif", "1.JFIF", "2.jpe", "3.jpg"]
    assert scan.unmatched == 0
    ds = train_dataset(scan.pairs, batch_size=4, aug=AugmentConfig(64, 64, False), seed=0,
                       epoch=0, n_outputs=1)
    x, (y,) = next(iter(ds))
    assert x.shape == (4, 64, 64, 3) and float(np.asarray(y).max()) > 0.5


def test_dataset_errors_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="is not a folder"):
        find_pairs(tmp_path / "missing")
    assert issubclass(DatasetError, UsageError) and issubclass(DatasetError, ValueError)


def test_memory_cache_decodes_each_file_once_and_keeps_the_batches(tmp_path):
    root = write_dataset(tmp_path / "data", 12)
    pairs = find_pairs(root).pairs
    aug = AugmentConfig(72, 64, True)

    def batches(epoch, cache=None, skip=0):
        ds = train_dataset(pairs, batch_size=4, aug=aug, seed=5, epoch=epoch, cache=cache,
                           skip_batches=skip, n_outputs=1)
        return [(np.asarray(x), np.asarray(y[0])) for x, y in ds]

    plain = {epoch: batches(epoch) for epoch in (0, 1)}
    cache = MemoryCache()
    cached0 = batches(0, cache)
    # The files are gone: epoch 1 (and a resumed epoch) can only come from the cache.
    shutil.rmtree(root)
    cached1, resumed1 = batches(1, cache), batches(1, cache, skip=1)
    for got, want in ((cached0, plain[0]), (cached1, plain[1]), (resumed1, plain[1][1:])):
        assert len(got) == len(want) > 0
        for (gx, gy), (wx, wy) in zip(got, want):
            np.testing.assert_array_equal(gx, wx)
            np.testing.assert_array_equal(gy, wy)
    assert not np.array_equal(plain[0][0][0], plain[1][0][0])

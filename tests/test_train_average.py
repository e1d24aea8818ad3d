"""Weight averaging and the BatchNorm statistics recomputed for the mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_dataset


def _tiny(seed: int):
    from basnet_cli.runtime import import_keras

    keras = import_keras()
    from basnet_cli.model.basnet import build_basnet
    from basnet_cli.model.config import TINY

    keras.utils.set_random_seed(seed)
    return build_basnet(TINY)


def _save_tiny(tmp_path: Path, seed: int) -> Path:
    model = _tiny(seed)
    # Distinct BatchNorm statistics too, so their mean is checked as well.
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype) ** 2
                       for w in model.get_weights()])
    path = tmp_path / f"s{seed}" / "basnet-tiny.weights.h5"
    path.parent.mkdir()
    model.save_weights(path)
    return path


def test_average_is_the_elementwise_mean_of_every_weight(tmp_path):
    from basnet_cli.train.average import average_weights

    files = [_save_tiny(tmp_path, seed) for seed in (1, 2, 3)]
    mean = average_weights(files).get_weights()
    loaded = []
    for path in files:
        model = _tiny(0)
        model.load_weights(path)
        loaded.append(model.get_weights())
    assert len(mean) == len(loaded[0])
    for i, got in enumerate(mean):
        want = (loaded[0][i] + loaded[1][i] + loaded[2][i]) / 3
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert not np.allclose(mean[0], loaded[0][0])


def test_average_refuses_one_file(tmp_path):
    from basnet_cli.train.average import average_weights

    with pytest.raises(ValueError, match="at least two"):
        average_weights([_save_tiny(tmp_path, 1)])


def test_recompute_sets_the_mean_of_the_batch_statistics():
    """The input conv's BatchNorm ends with the average of its per-batch mean and (biased)
    variance; only BatchNorm statistics change; the momentum is restored."""
    import keras

    from basnet_cli.train.average import recompute_batchnorm

    model = _tiny(4)
    before = {w.path: np.array(w) for w in model.weights}
    rng = np.random.default_rng(0)
    batches = [rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32") for _ in range(3)]
    conv = keras.Model(model.inputs, model.get_layer("inconv").output)
    means, variances = [], []
    for images in batches:
        feat = np.asarray(conv.predict(images, verbose=0))
        means.append(feat.mean(axis=(0, 1, 2)))
        variances.append(feat.var(axis=(0, 1, 2)))

    assert recompute_batchnorm(model, batches) == 3
    bn = model.get_layer("inbn")
    np.testing.assert_allclose(np.asarray(bn.moving_mean), np.mean(means, axis=0), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(np.asarray(bn.moving_variance), np.mean(variances, axis=0),
                               rtol=1e-3, atol=1e-4)
    assert bn.momentum == pytest.approx(0.9)
    for w in model.weights:
        changed = not np.array_equal(np.array(w), before[w.path])
        is_stat = "moving_" in w.path
        assert changed == is_stat, w.path


def test_recompute_refuses_no_batches():
    from basnet_cli.train.average import recompute_batchnorm

    with pytest.raises(ValueError, match="no batches"):
        recompute_batchnorm(_tiny(5), [])


def test_training_crops_are_the_training_pairs_without_the_hold_out(tmp_path):
    from basnet_cli.data import _load_pair_numpy, find_pairs, split_pairs
    from basnet_cli.train.average import training_crops

    root = write_dataset(tmp_path / "d", 20)
    batches = list(training_crops(root, images=50, resize=64, crop=48, batch_size=4,
                                  val_split=0.25))
    # 15 of the 20 pairs train (5 held out): all of them once, in batches of 4, 48x48 crops.
    assert [b.shape for b in batches] == [(4, 48, 48, 3)] * 3 + [(3, 48, 48, 3)]
    assert all(b.dtype == np.float32 for b in batches)

    train, held = split_pairs(find_pairs(root).pairs, 0.25, 0)
    full = [_load_pair_numpy(*pair, 64)[0] for pair in train + held]

    def source(crop: np.ndarray) -> int:
        # The photo (or its mirror) the crop was cut from.
        for i, photo in enumerate(full):
            for view in (photo, photo[:, ::-1]):
                for y in range(17):
                    for x in range(17):
                        if np.array_equal(view[y:y + 48, x:x + 48], crop):
                            return i
        return -1

    found = sorted(source(crop) for batch in batches for crop in batch)
    assert found == list(range(len(train)))

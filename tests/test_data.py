"""Training data: the in-memory cache of decoded pairs."""

from __future__ import annotations

import shutil

import numpy as np

from basnet_cli.data import AugmentConfig, MemoryCache, find_pairs, train_dataset
from tests.conftest import write_dataset


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

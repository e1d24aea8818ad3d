"""Weight averaging along one training lineage, and BatchNorm statistics recomputed for it.

The mean of several snapshots of one run (``basnet train --keep-every N``) is a network no step
of the run produced; its BatchNorm moving statistics, averaged with the weights, are only an
approximation of the statistics that network sees.  :func:`recompute_batchnorm` replaces them
with the plain average of the batch statistics over training crops (as in stochastic weight
averaging, Izmailov et al. 2018).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np


def average_weights(files: list[Path], preset: str | None = None):
    """The training model of ``files``' preset holding the element-wise mean of their weights.

    Each file is loaded as ``--model`` loads it (``.weights.h5`` of ``preset``, or of the preset
    its name or shapes give; or ``.keras``), so all must be of one preset.
    """
    from basnet_cli.model.io import load_training_model, resolve

    if len(files) < 2:
        raise ValueError("averaging needs at least two weight files")
    models = [load_training_model(resolve(str(path), preset=preset)) for path in files]
    shapes = [[w.shape for w in m.get_weights()] for m in models]
    if any(s != shapes[0] for s in shapes[1:]):
        raise ValueError("the files hold different networks; average files of one preset")
    weights = [model.get_weights() for model in models]
    mean = [np.mean(np.stack(group), axis=0).astype(group[0].dtype) for group in zip(*weights)]
    models[0].set_weights(mean)
    return models[0]


def recompute_batchnorm(model, batches: Iterable[np.ndarray]) -> int:
    """Set every BatchNorm layer's moving mean and variance of ``model`` to the average of its
    batch statistics over ``batches`` (photos, ``(B, H, W, 3)`` floats in 0..255).

    Returns the number of batches used.  The other weights are left as they are.
    """
    import warnings

    from basnet_cli.runtime import import_keras

    keras = import_keras()
    layers = [layer for layer in model._flatten_layers(include_self=False)
              if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in layers]
    count = 0
    try:
        with warnings.catch_warnings():
            # Keras notes that a bare array is not its ['image'] input list; same call.
            warnings.filterwarnings("ignore", message="The structure of `inputs`")
            for images in batches:
                count += 1
                # momentum (n-1)/n makes the moving statistic the running mean of the batches'.
                for bn in layers:
                    bn.momentum = (count - 1) / count
                model(images, training=True)
    finally:
        for bn, momentum in zip(layers, saved):
            bn.momentum = momentum
    if count == 0:
        raise ValueError("no batches to recompute the BatchNorm statistics from")
    return count


def training_crops(data: str | Path, *, images: int, resize: int, crop: int, batch_size: int,
                   val_split: float = 0.02, split_seed: int = 0, seed: int = 0
                   ) -> Iterator[np.ndarray]:
    """Batches of ``images`` seeded random training photos of ``data`` (resized to ``resize``,
    a random ``crop`` square, a random flip), leaving out the pairs ``basnet train --val-split
    val_split --seed split_seed`` holds out, so the hold-out stays unseen."""
    from basnet_cli.data import (
        AugmentConfig,
        _augment_numpy,
        _load_pair_numpy,
        find_pairs,
        split_pairs,
    )

    pairs = find_pairs(data).pairs
    if val_split > 0:
        pairs, _ = split_pairs(pairs, val_split, split_seed)
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(pairs))[:images]
    aug = AugmentConfig(resize=resize, crop=crop, flip=True)
    for start in range(0, len(chosen), batch_size):
        batch = []
        for idx in chosen[start:start + batch_size]:
            image, mask = _load_pair_numpy(*pairs[int(idx)], resize)
            image, _ = _augment_numpy(image, mask, rng, aug)
            batch.append(image)
        yield np.stack(batch)

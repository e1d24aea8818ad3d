"""Average the weights of two or more files of one preset into a new `.weights.h5`.

How the bundled `basnet-lite` file of session 9 was made (docs/basnet-lite-history.md): the
plain mean of every weight (BatchNorm statistics included) of the previous bundled file and the
final weights of a fine-tuning stage started from it, kept because it scored better than the
previous file on all ten DUTS-TR hold-out metrics (the stage alone had a worse MAE):

    python docs/average_weights.py runs/old.weights.h5 runs/lite-s9/final.weights.h5 \
        --out runs/avg.weights.h5
    basnet evaluate --images runs/holdout/images --masks runs/holdout/masks \
        --model runs/avg.weights.h5 --size 256 --no-report

How the bundled `basnet-mobile` file of session 14 was made: the mean of the previous file and
the weights a run started from it kept along the way (`basnet train --keep-every 300`):

    python docs/average_weights.py weights/basnet-mobile.weights.h5 \
        runs/mobile-s8/steps/*.weights.h5 runs/mobile-s8/final.weights.h5 --out runs/avg.weights.h5

Averaging only makes sense for weights of one training lineage (one started from the other).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def average(files: list[Path], out: Path, preset: str | None = None) -> Path:
    """Write the element-wise mean of ``files``' weights to ``out`` as a ``.weights.h5``.

    Each file is loaded as ``--model`` loads it (``.weights.h5`` of ``preset``, or of the preset
    its name or shapes give; or ``.keras``), so all must be of one preset.
    """
    from basnet_cli.model.convert import save_weights_atomic
    from basnet_cli.model.io import load_training_model, resolve

    models = [load_training_model(resolve(str(path), preset=preset)) for path in files]
    weights = [model.get_weights() for model in models]
    mean = [np.mean(np.stack(group), axis=0).astype(group[0].dtype) for group in zip(*weights)]
    models[0].set_weights(mean)
    return save_weights_atomic(models[0], out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path,
                        help="two or more .weights.h5 (or .keras) files of one preset")
    parser.add_argument("--out", type=Path, required=True, help="the averaged .weights.h5")
    parser.add_argument("--preset", help="their preset (default: from the file names or shapes)")
    args = parser.parse_args()
    if len(args.files) < 2:
        parser.error("give at least two weight files")
    print(f"averaged {len(args.files)} files -> {average(args.files, args.out, args.preset)}")


if __name__ == "__main__":
    main()

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

`--bn-data DUTS-TR` then replaces the averaged BatchNorm statistics with ones measured on the
averaged network (training crops only; the `--val-split 0.02 --seed 0` hold-out is left out).

Averaging only makes sense for weights of one training lineage (one started from the other).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path,
                        help="two or more .weights.h5 (or .keras) files of one preset")
    parser.add_argument("--out", type=Path, required=True, help="the averaged .weights.h5")
    parser.add_argument("--preset", help="their preset (default: from the file names or shapes)")
    parser.add_argument("--bn-data", type=Path,
                        help="training set to recompute the BatchNorm statistics on")
    parser.add_argument("--bn-images", type=int, default=1024, help="photos for that (1024)")
    parser.add_argument("--bn-resize", type=int, default=256, help="resize before the crop")
    parser.add_argument("--bn-crop", type=int, default=224, help="random crop side")
    parser.add_argument("--bn-batch-size", type=int, default=8, help="batch size (8)")
    args = parser.parse_args()
    if len(args.files) < 2:
        parser.error("give at least two weight files")

    from basnet_cli.model.convert import save_weights_atomic
    from basnet_cli.train.average import average_weights, recompute_batchnorm, training_crops

    model = average_weights(args.files, args.preset)
    if args.bn_data is not None:
        batches = training_crops(args.bn_data, images=args.bn_images, resize=args.bn_resize,
                                 crop=args.bn_crop, batch_size=args.bn_batch_size)
        used = recompute_batchnorm(model, batches)
        print(f"BatchNorm statistics recomputed on {used} batches of {args.bn_data}")
    print(f"averaged {len(args.files)} files -> {save_weights_atomic(model, args.out)}")


if __name__ == "__main__":
    main()

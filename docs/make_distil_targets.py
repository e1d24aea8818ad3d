"""Write a DUTS-style copy of a training set whose masks are distillation targets.

Each training pair's mask becomes ``alpha * GT + (1 - alpha) * teacher``, the teacher being a
model's mirror-TTA map (``basnet predict --tta``) of the photo; the validation split that
``basnet train --val-split F --seed S`` will hold out keeps its ground-truth mask, so the
trainer still validates on real labels, and the pair order (hence the split) is unchanged.
Photos are symlinked, targets written as 8-bit PNGs (``basnet train`` reads grey masks as soft
labels). How stage 7 of the default weights used it: docs/basnet-mobile-history.md.

    python docs/make_distil_targets.py ../shared/data/DUTS-TR runs/distil50 --alpha 0.5
    basnet train runs/distil50 --model basnet-mobile --val-split 0.02 --val-limit 200 ...
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from basnet_cli.data import find_pairs, load_mask, split_pairs
from basnet_cli.images import atomic_save, load_for_model, prepare_map, to_uint8

Predictor = Callable[[np.ndarray], np.ndarray]


def _link(target: Path, link: Path) -> None:
    if not link.exists():
        link.symlink_to(target.resolve())


def _target(gt: np.ndarray, teacher: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha * gt + (1 - alpha) * teacher`` as uint8, the teacher resized to the GT's size."""
    teacher = prepare_map(teacher, (gt.shape[1], gt.shape[0]))
    return to_uint8(alpha * gt + (1.0 - alpha) * teacher)


def main(root: Path, out: Path, teacher: Predictor, *, alpha: float = 0.5, size: int = 256,
         fraction: float = 0.02, seed: int = 0, batch_size: int = 16,
         log: Callable[[str], None] = print) -> tuple[int, int]:
    """Fill ``out`` (``<name>-Image/`` + ``<name>-Mask/``); returns (targets written, GT kept).

    ``teacher`` maps a float32 RGB 0..255 batch ``(B, size, size, 3)`` to probabilities
    ``(B, size, size[, 1])``.  Targets already written are kept, so a stopped run resumes.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    scan = find_pairs(root)
    train, val = split_pairs(scan.pairs, fraction, seed)
    if scan.layout == "duts":
        image_dir, mask_dir = out / scan.image_dir.name, out / scan.mask_dir.name
    else:
        image_dir, mask_dir = out / "images", out / "masks"
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for image, _ in scan.pairs:
        _link(image, image_dir / image.name)
    for _, mask in val:
        _link(mask, mask_dir / mask.name)
    todo = [(i, m) for i, m in train if not (mask_dir / (m.stem + ".png")).exists()]
    t0 = time.perf_counter()
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        photos = np.stack([load_for_model(i, size)[0] for i, _ in chunk]).astype(np.float32)
        maps = np.asarray(teacher(photos), np.float32)
        maps = maps.reshape(len(chunk), size, size)
        for (_, mask), teacher_map in zip(chunk, maps):
            atomic_save(Image.fromarray(_target(load_mask(mask), teacher_map, alpha)),
                        mask_dir / (mask.stem + ".png"))
        done = start + len(chunk)
        if done == len(todo) or (start // batch_size) % 40 == 0:
            log(f"{done}/{len(todo)} targets, {time.perf_counter() - t0:.0f} s")
    return len(todo), len(val)


def _teacher(model: str) -> Predictor:
    """``model``'s mirror-TTA predictor on the CPU (ONNX Runtime when installed)."""
    from basnet_cli.inference import load_predictor, with_tta
    from basnet_cli.inference.runtimes import onnx_available

    runtime = "onnx" if onnx_available() is None else "keras"  # it returns why not, or None
    predictor, _, _ = load_predictor(model, precision="float32", device="cpu",
                                     runtime=runtime)
    return with_tta(predictor, True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the training set (DUTS layout or images/+masks/)")
    parser.add_argument("out", type=Path, help="the folder to fill")
    parser.add_argument("--model", default="basnet-mobile", help="the teacher (basnet-mobile)")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the GT (0.5)")
    parser.add_argument("--size", type=int, default=256, help="teacher input side (256)")
    parser.add_argument("--val-split", type=float, default=0.02,
                        help="the split basnet train will hold out (0.02)")
    parser.add_argument("--seed", type=int, default=0, help="its --seed (0)")
    args = parser.parse_args()
    written, kept = main(args.root, args.out, _teacher(args.model), alpha=args.alpha,
                         size=args.size, fraction=args.val_split, seed=args.seed)
    print(f"{written} targets written, {kept} validation masks kept under {args.out}")

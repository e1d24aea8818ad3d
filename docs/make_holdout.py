"""Link the DUTS-TR hold-out of the bundled weights into images/ + masks/ for `basnet evaluate`.

The 200 pairs that `basnet train --val-split 0.02 --val-limit 200 --seed 0` validates on (and
never trains on); the model card's hold-out table was measured on them:

    python docs/make_holdout.py ../shared/data/DUTS-TR runs/holdout
    basnet evaluate --images runs/holdout/images --masks runs/holdout/masks \
        --model basnet-lite --size 256 --no-report
"""

from __future__ import annotations

import sys
from pathlib import Path

from basnet_cli.data import find_pairs, limit_pairs, split_pairs


def main(root: Path, out: Path, fraction: float = 0.02, limit: int = 200, seed: int = 0) -> int:
    """Link the hold-out pairs (the same selection as `basnet train`'s) under ``out``."""
    _, val = split_pairs(find_pairs(root).pairs, fraction, seed)
    val = limit_pairs(val, limit, seed + 1)  # as train._load_pairs does
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for image, mask in val:
        for sub, path in (("images", image), ("masks", mask)):
            link = out / sub / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
    return len(val)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python docs/make_holdout.py DUTS-TR-FOLDER OUT-FOLDER")
    n = main(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{n} hold-out pairs linked under {sys.argv[2]}")

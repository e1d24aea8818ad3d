"""Draw docs/quickstart.jpg: the example photos (top row) over their masks (bottom row).

    basnet predict examples/ --out masks
    python docs/make_quickstart.py examples masks docs/quickstart.jpg
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

HEIGHT = 180  # each tile's height; widths keep the photo's aspect ratio
GAP = 4


def main(photos: Path, masks: Path, out: Path) -> None:
    pairs = []
    for photo in sorted(photos.glob("*.jpg")):
        mask = masks / f"{photo.stem}.png"
        if not mask.is_file():
            raise SystemExit(f"no mask for {photo.name} in {masks}")
        pairs.append((Image.open(photo).convert("RGB"), Image.open(mask).convert("RGB")))
    if not pairs:
        raise SystemExit(f"no .jpg photos in {photos}")
    widths = [round(p.width * HEIGHT / p.height) for p, _ in pairs]
    canvas = Image.new("RGB", (sum(widths) + GAP * (len(pairs) - 1), 2 * HEIGHT + GAP), "white")
    x = 0
    for (photo, mask), w in zip(pairs, widths):
        canvas.paste(photo.resize((w, HEIGHT), Image.Resampling.LANCZOS), (x, 0))
        canvas.paste(mask.resize((w, HEIGHT), Image.Resampling.BILINEAR), (x, HEIGHT + GAP))
        x += w + GAP
    canvas.save(out, quality=88)
    print(f"{out}: {canvas.width}x{canvas.height}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))

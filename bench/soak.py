#!/usr/bin/env python
"""``make bench`` soak run: many tiny photos through one ``basnet predict``; memory and open
files must stay flat.

Writes ``--count`` (10,000) small PNG photos, runs ``basnet predict`` over them in a subprocess
and samples its resident memory (VmRSS, and the peak VmHWM) and its open file descriptors from
``/proc`` as the outputs appear, recording the samples at 1,000 outputs and at the end.  A leak
(per-image buffers, unclosed files, growing queues) shows as growth between the two.  Writes
``soak.json`` and a section of ``results.md`` beside this file.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
MARK_BEGIN, MARK_END = "<!-- soak:begin -->", "<!-- soak:end -->"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_photos(folder: Path, count: int, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    for i in range(count):
        arr = np.roll(base, i % size, axis=1)
        Image.fromarray(arr).save(folder / f"{i:05d}.png", compress_level=1)


def _proc(pid: int) -> dict[str, int] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    values = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) // 1024  # MiB
    return {"rss_mib": values.get("VmRSS", 0), "peak_rss_mib": values.get("VmHWM", 0),
            "open_fds": fds}


def _count(out: Path) -> int:
    try:
        return sum(1 for e in os.scandir(out) if e.name.endswith(".png"))
    except OSError:
        return 0


def soak(count: int, size: int, model: str, net_size: int, workdir: Path) -> dict:
    photos, out = workdir / "photos", workdir / "out"
    t0 = time.perf_counter()
    write_photos(photos, count, size)
    write_s = time.perf_counter() - t0
    cmd = [sys.executable, "-m", "basnet_cli", "predict", str(photos), "--out", str(out),
           "--model", model, "--size", str(net_size), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[dict] = []
    at_1000 = None
    last = None
    while proc.poll() is None:
        sample = _proc(proc.pid)
        if sample is not None and sample["rss_mib"] > 0:  # 0: the process is exiting
            sample["outputs"] = _count(out)
            last = sample
            samples.append(sample)
            if at_1000 is None and sample["outputs"] >= min(1000, count):
                at_1000 = sample
        time.sleep(0.5)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"basnet predict failed ({proc.returncode}): {stderr[-2000:]}")
    summary = json.loads(stdout)
    return {
        "count": count, "photo_size": size, "model": summary["model"], "size": net_size,
        "processed": summary["processed"], "images_per_s": summary["images_per_s"],
        "at_1000": at_1000 or last, "at_end": last, "samples": len(samples),
        "write_photos_s": round(write_s, 1), "command": " ".join(cmd[1:]),
    }


def _markdown(r: dict) -> str:
    a, b = r["at_1000"], r["at_end"]
    rows = [("resident memory (MiB)", a["rss_mib"], b["rss_mib"]),
            ("peak resident memory (MiB)", a["peak_rss_mib"], b["peak_rss_mib"]),
            ("open file descriptors", a["open_fds"], b["open_fds"])]
    lines = [
        MARK_BEGIN,
        "## Soak: 10,000 photos through one `basnet predict`",
        "",
        f"`python bench/soak.py` on {r['date']}, {r['cpu']} ({r['cores']} CPUs): "
        f"{r['processed']:,} photos of {r['photo_size']}x{r['photo_size']} through "
        f"`{r['model']}` at --size {r['size']}, {r['images_per_s']} images/s. Sampled from "
        f"/proc every 0.5 s; the last sample is taken just before the process exits.",
        "",
        f"| | at {a['outputs']:,} outputs | at {b['outputs']:,} outputs |",
        "|---|---:|---:|",
        *[f"| {name} | {x} | {y} |" for name, x, y in rows],
        MARK_END,
    ]
    return "\n".join(lines) + "\n"


def update_results(section: str, results: Path, begin: str = MARK_BEGIN,
                   end: str = MARK_END) -> None:
    """Replace the section between ``begin`` and ``end`` in ``results`` (or append it)."""
    text = results.read_text() if results.is_file() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    results.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--photo-size", type=int, default=32)
    ap.add_argument("--model", default="basnet-mobile")
    ap.add_argument("--size", type=int, default=64, help="network input side")
    ap.add_argument("--out", type=Path, default=HERE, help="folder for soak.json/results.md")
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="basnet-soak-"))
    try:
        r = soak(args.count, args.photo_size, args.model, args.size, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    r.update(date=_dt.date.today().isoformat(), cpu=_cpu(), cores=os.cpu_count())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(r, indent=2) + "\n")
    section = _markdown(r)
    update_results(section, args.out / "results.md")
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())

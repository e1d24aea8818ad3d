#!/usr/bin/env python
"""``make bench`` oneDNN section: TensorFlow with and without its oneDNN kernels on this CPU.

TensorFlow turns oneDNN on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX; ``basnet``
sets ``TF_ENABLE_ONEDNN_OPTS=1`` unless the environment says otherwise.  This measures why: a
training step (batch 8 at 192, the default model's recipe) and inference (batch 1 at 224) in
float32, each in a fresh subprocess with ``TF_ENABLE_ONEDNN_OPTS=0`` and ``=1``, alternated,
medians over the rounds.  Writes ``onednn.json`` and a section of ``results.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from soak import _cpu, update_results  # noqa: E402

MARK_BEGIN, MARK_END = "<!-- onednn:begin -->", "<!-- onednn:end -->"

_WORKER = r"""
import json, sys, time
import numpy as np
from basnet_cli.runtime import import_keras
keras = import_keras()
from basnet_cli.losses import HybridLoss
from basnet_cli.model.basnet import OUTPUT_NAMES, inference_model
from basnet_cli.model.io import load_training_model, resolve
model_name, steps = sys.argv[1], int(sys.argv[2])
m = load_training_model(resolve(model_name, require_weights=False))
m.compile(optimizer=keras.optimizers.Adam(1e-4), loss=[HybridLoss() for _ in OUTPUT_NAMES])
rng = np.random.default_rng(0)
x = (rng.random((8, 192, 192, 3)) * 255).astype("float32")
y = (rng.random((8, 192, 192, 1)) > 0.5).astype("float32")
for _ in range(2):
    m.train_on_batch(x, [y] * len(OUTPUT_NAMES))
times = []
for _ in range(steps):
    t = time.perf_counter(); m.train_on_batch(x, [y] * len(OUTPUT_NAMES))
    times.append(time.perf_counter() - t)
inf = inference_model(m)
one = (rng.random((1, 224, 224, 3)) * 255).astype("float32")
for _ in range(3):
    inf.predict_on_batch(one)
itimes = []
for _ in range(4 * steps):
    t = time.perf_counter(); inf.predict_on_batch(one); itimes.append(time.perf_counter() - t)
print(json.dumps({"train_images_per_s": 8 / float(np.median(times)),
                  "infer_images_per_s": 1 / float(np.median(itimes))}))
"""


def _run(flag: str, model: str, steps: int) -> dict:
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=flag, TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run([sys.executable, "-c", _WORKER, model, str(steps)], env=env,
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"worker failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16",
                                            "amx_tile") if f in have)
    except OSError:
        pass
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="basnet-mobile")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per round")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    runs: dict[str, list[dict]] = {"0": [], "1": []}
    for _ in range(args.rounds):
        for flag in ("0", "1"):
            runs[flag].append(_run(flag, args.model, args.steps))
    med = {flag: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for flag, rs in runs.items()}
    result = {"date": _dt.date.today().isoformat(), "cpu": _cpu(), "flags": _flags(),
              "cores": os.cpu_count(), "model": args.model, "rounds": args.rounds,
              "median": med, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "onednn.json").write_text(json.dumps(result, indent=2) + "\n")
    off, on = med["0"], med["1"]
    lines = [
        MARK_BEGIN,
        "## TensorFlow's oneDNN kernels on this CPU",
        "",
        f"`python bench/onednn.py` on {result['date']}, {result['cpu']} ({result['cores']} "
        f"CPUs; flags: {result['flags']}), `{args.model}` float32, medians of "
        f"{args.rounds} alternated rounds, each in a fresh process.",
        "",
        "| | TF_ENABLE_ONEDNN_OPTS=0 | =1 (basnet's default) | ratio |",
        "|---|---:|---:|---:|",
        f"| training step, batch 8 at 192 (images/s) | {off['train_images_per_s']:.2f} | "
        f"{on['train_images_per_s']:.2f} | "
        f"{on['train_images_per_s'] / off['train_images_per_s']:.2f}x |",
        f"| inference, batch 1 at 224 (images/s) | {off['infer_images_per_s']:.2f} | "
        f"{on['infer_images_per_s']:.2f} | "
        f"{on['infer_images_per_s'] / off['infer_images_per_s']:.2f}x |",
        MARK_END,
    ]
    section = "\n".join(lines) + "\n"
    update_results(section, args.out / "results.md", MARK_BEGIN, MARK_END)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())

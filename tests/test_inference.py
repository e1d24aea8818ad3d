"""The inference core: loading any ``--model`` as a predictor (Keras weights, exported ONNX and
SavedModel), batching, errors, and the import rules between the modules that use it.

Exported models are built directly (a few ONNX nodes, a one-op SavedModel) instead of exporting a
network: the runtimes and the loader are under test here, not the exporters.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from basnet_cli import inference as inf
from basnet_cli.errors import UsageError
from tests.conftest import REPO

# Keras' save_weights trips a NumPy 2 deprecation inside TensorFlow (not ours).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIZE = 32


def _brightness(batch: np.ndarray) -> np.ndarray:
    """What the exported test models compute: sigmoid((mean RGB - 128) / 16), (B, H, W, 1)."""
    x = np.asarray(batch, np.float32).mean(axis=-1, keepdims=True)
    return (1.0 / (1.0 + np.exp(-(x - 128.0) / 16.0))).astype(np.float32)


def _onnx_model(path: Path, side: int | None = None) -> Path:
    """An ONNX file computing :func:`_brightness`; ``side`` fixes height and width."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    hw = [side, side] if side else ["h", "w"]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[3], keepdims=1),
        helper.make_node("Sub", ["mean", "c128"], ["centred"]),
        helper.make_node("Div", ["centred", "c16"], ["scaled"]),
        helper.make_node("Sigmoid", ["scaled"], ["mask"]),
    ]
    consts = [helper.make_tensor("c128", TensorProto.FLOAT, [], [128.0]),
              helper.make_tensor("c16", TensorProto.FLOAT, [], [16.0])]
    graph = helper.make_graph(
        nodes, "brightness",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", *hw, 3])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["n", *hw, 1])], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def onnx_any_size(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _onnx_model(tmp_path_factory.mktemp("onnx") / "bright.onnx")


@pytest.fixture(scope="module")
def keras_predictor(weights: Path) -> inf.Predictor:
    predictor, precision, device = inf.load_predictor(str(weights), precision="float32",
                                                      device="cpu")
    assert (precision, device) == ("float32", "cpu")
    return predictor


# ---------------------------------------------------------------------------------------------
# Loading.


def test_keras_weights_load_as_a_traced_predictor(keras_predictor, weights: Path) -> None:
    assert isinstance(keras_predictor, inf.KerasPredictor)
    assert str(weights) in keras_predictor.description
    x = np.random.default_rng(0).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    out = keras_predictor(x)
    assert out.shape == (3, SIZE, SIZE, 1) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_allclose(keras_predictor(x[:1]), out[:1], atol=1e-5)  # batch-free
    assert inf.fixed_input_size(keras_predictor) is None


def test_exported_onnx_loads_through_its_runtime(onnx_any_size: Path) -> None:
    predictor, precision, device = inf.load_predictor(str(onnx_any_size), device="cpu")
    assert precision == "exported" and device == "cpu"
    assert isinstance(predictor, inf.ExportedPredictor)
    assert "onnx" in predictor.description and inf.fixed_input_size(predictor) is None
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(predictor(x), _brightness(x), atol=1e-6)


def test_fixed_size_export_refuses_another_size_as_a_usage_error(tmp_path: Path) -> None:
    predictor = inf.load_exported(str(_onnx_model(tmp_path / "fixed.onnx", side=SIZE)))
    assert predictor is not None and inf.fixed_input_size(predictor) == SIZE
    assert predictor(np.zeros((1, SIZE, SIZE, 3), np.float32)).shape == (1, SIZE, SIZE, 1)
    with pytest.raises(inf.InferenceUsageError, match=f"--size {SIZE}"):
        predictor(np.zeros((1, 64, 64, 3), np.float32))


def test_savedmodel_folder_loads(tmp_path: Path) -> None:
    tf = inf.import_tf_quiet()

    class Bright(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
        def serve(self, image):
            mean = tf.reduce_mean(image, axis=-1, keepdims=True)
            return {"mask": tf.sigmoid((mean - 128.0) / 16.0)}

    module = Bright()
    folder = tmp_path / "sm"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    assert inf.exported_kind(folder) == "savedmodel"
    predictor, precision, _ = inf.load_predictor(str(folder), device="cpu")
    assert precision == "exported" and inf.fixed_input_size(predictor) == SIZE
    x = np.full((3, SIZE, SIZE, 3), 140.0, np.float32)
    np.testing.assert_allclose(predictor(x), _brightness(x), atol=1e-6)


def test_load_errors_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(inf.InferenceUsageError, match="no-such-model"):
        inf.load_predictor("no-such-model", device="cpu")
    with pytest.raises(inf.InferenceUsageError, match="no-such-model"):
        inf.check_model_spec("no-such-model")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    pytest.importorskip("onnxruntime")
    with pytest.raises(inf.InferenceUsageError, match="not a loadable ONNX model"):
        inf.load_predictor(str(broken), device="cpu")
    inf.check_model_spec(str(broken))  # an exported file: its runtime judges it when loading
    tfjs = tmp_path / "web"
    tfjs.mkdir()
    (tfjs / "model.json").write_text("{}")
    with pytest.raises(inf.InferenceUsageError, match="TF.js model"):
        inf.load_predictor(str(tfjs), device="cpu")
    assert issubclass(inf.InferenceUsageError, UsageError)


def test_device_and_precision_choices() -> None:
    assert inf.DEVICES == ("auto", "cpu", "gpu")
    assert [p.value for p in inf.Precision] == ["auto", "float32", "bfloat16", "float16"]
    with pytest.raises(inf.InferenceUsageError, match="--device must be one of"):
        inf.configure_device("tpu")
    with pytest.raises(inf.InferenceUsageError, match="--precision must be one of"):
        inf.concrete_precision("float64", "cpu")
    assert inf.concrete_precision("float32", "cpu") == "float32"
    assert inf.concrete_precision("auto", "cpu") in ("float32", "bfloat16")
    assert inf.configure_device("cpu") == "cpu"


# ---------------------------------------------------------------------------------------------
# Batching.


def test_predict_batches_keeps_order_and_batch_size() -> None:
    calls: list[tuple[int, str]] = []

    def predictor(batch: np.ndarray) -> np.ndarray:
        calls.append((len(batch), batch.dtype.name))
        return batch[..., :1] / 100.0  # channel 0 as the "probability", some of it over 1

    images = [(f"k{i}", np.full((4, 4, 3), 20 * i, np.uint8)) for i in range(7)]
    out = list(inf.predict_batches(predictor, iter(images), batch_size=3))
    assert [k for k, _ in out] == [f"k{i}" for i in range(7)]
    assert calls == [(3, "float32"), (3, "float32"), (1, "float32")]
    for i, (_, prob) in enumerate(out):
        assert prob.shape == (4, 4) and prob.dtype == np.float32
        assert prob.max() == pytest.approx(min(1.0, 0.2 * i))  # clipped to [0, 1]
    assert list(inf.predict_batches(predictor, iter([]), batch_size=2)) == []
    with pytest.raises(ValueError):
        list(inf.predict_batches(predictor, iter(images), batch_size=0))


def test_predict_batches_consumes_lazily() -> None:
    pulled: list[int] = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i, np.zeros((2, 2, 3), np.uint8)

    stream = inf.predict_batches(lambda b: np.zeros((len(b), 2, 2, 1)), items(), batch_size=4)
    assert next(stream)[0] == 0 and len(pulled) == 4


def test_keras_predictor_batches_through_the_core(keras_predictor) -> None:
    rng = np.random.default_rng(2)
    images = [(i, rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.uint8)) for i in range(5)]
    got = dict(inf.predict_batches(keras_predictor, images, batch_size=2))
    whole = inf.probabilities(keras_predictor(np.stack([im for _, im in images]).astype(
        np.float32)))
    for i in range(5):
        np.testing.assert_allclose(got[i], whole[i], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Exported models in the commands: predict and evaluate.


def _photos_and_masks(root: Path, n: int = 4) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(3)
    for i in range(n):
        mask = np.zeros((30, 40), np.uint8)
        mask[5 + i:20, 8:30 - i] = 255
        photo = np.clip(mask[..., None] * 0.6 + rng.normal(60, 15, (30, 40, 3)), 0, 255)
        Image.fromarray(photo.astype(np.uint8)).save(root / "images" / f"p{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"p{i}.png")
    return root


def test_evaluate_runs_an_exported_model(onnx_any_size: Path, tmp_path: Path) -> None:
    from basnet_cli.evaluate import evaluate_model

    data = _photos_and_masks(tmp_path / "DS")
    run = evaluate_model(data, model=str(onnx_any_size), size=SIZE, batch_size=3, workers=2,
                         save_maps=tmp_path / "maps")
    reference = evaluate_model(data, predictor=_brightness, size=SIZE, batch_size=3, workers=2,
                               save_maps=tmp_path / "ref")
    got, want = run.methods[0], reference.methods[0]
    assert got.name == "bright" and "onnx" in run.model and got.count == 4
    for key, value in want.metrics.items():
        assert got.metrics[key] == pytest.approx(value, abs=2e-3), key
    for ref in sorted((tmp_path / "ref").glob("*.png")):
        a = np.asarray(Image.open(ref), np.int16)
        b = np.asarray(Image.open(tmp_path / "maps" / ref.name), np.int16)
        assert np.abs(a - b).max() <= 1, ref.name


def test_evaluate_takes_a_fixed_size_export_at_its_size(tmp_path: Path) -> None:
    from basnet_cli.evaluate import EvaluateUsageError, evaluate_model

    model = _onnx_model(tmp_path / "fixed.onnx", side=64)
    data = _photos_and_masks(tmp_path / "DS", n=2)
    assert evaluate_model(data, model=str(model), workers=1).size == 64
    with pytest.raises(EvaluateUsageError, match="--size 64"):
        evaluate_model(data, model=str(model), size=SIZE)


def test_predict_runs_an_exported_model(onnx_any_size: Path, tmp_path: Path) -> None:
    from basnet_cli.predict import PredictOptions, run

    data = _photos_and_masks(tmp_path / "DS", n=3)
    summary = run(PredictOptions(inputs=[str(data / "images")], out=tmp_path / "out",
                                 model=str(onnx_any_size), size=SIZE, device="cpu"))
    assert (summary.processed, summary.failed, summary.precision) == (3, 0, "exported")
    assert Image.open(tmp_path / "out" / "p0.png").size == (40, 30)


# ---------------------------------------------------------------------------------------------
# Import rules over the whole package: one inference core, no command module importing another,
# no import circles between the package's parts (``basnet_cli.X``: a module or a sub-package).

COMMANDS = ("predict", "evaluate", "train", "export", "benchmark")
PACKAGE = REPO / "basnet_cli"


def _imports(path: Path) -> set[str]:
    """The basnet_cli modules ``path`` imports at any depth, except under ``if TYPE_CHECKING``
    (annotations only, never run)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for stmt in node.body for n in ast.walk(stmt)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "basnet_cli":
                found.update(f"basnet_cli.{a.name}" for a in node.names)
            elif node.module.startswith("basnet_cli."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("basnet_cli."))
    return found


def _part(module: str) -> str:
    """``basnet_cli.inference.device`` -> ``inference``."""
    return module.split(".")[1]


def _part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0] if len(rel.parts) > 1 else rel.name


def _files(name: str) -> list[Path]:
    return sorted((PACKAGE / name).rglob("*.py")) if (PACKAGE / name).is_dir() \
        else [PACKAGE / f"{name}.py"]


def _graph() -> dict[str, set[str]]:
    """Which parts of the package each part imports (itself left out)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        part = _part_of(path)
        graph.setdefault(part, set()).update(_part(m) for m in _imports(path))
        graph[part].discard(part)
    return graph


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_import_circle_finder_finds_a_circle() -> None:
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circles_between_the_parts_of_the_package() -> None:
    graph = _graph()
    assert {"inference", "predict", "model", "cli"} <= graph.keys()  # the walk saw the package
    assert _circle(graph) is None, " -> ".join(_circle(graph) or [])


@pytest.mark.parametrize("name", COMMANDS)
def test_no_command_module_imports_another(name: str) -> None:
    files = _files(name)
    assert files and all(f.is_file() for f in files)
    for path in files:
        others = {_part(m) for m in _imports(path)} & set(COMMANDS) - {name}
        assert not others, f"{path.relative_to(REPO)} imports the command core(s) {others}"


@pytest.mark.parametrize("name", ["inference", "inputs", "outputs", "stream", "images", "model",
                                  "metrics", "data", "runtime", "errors", "lazy"])
def test_shared_modules_import_no_command(name: str) -> None:
    for path in _files(name):
        commands = {_part(m) for m in _imports(path)} & (set(COMMANDS) | {"cli", "report"})
        assert not commands, f"{path.relative_to(REPO)} imports {commands}"


def test_the_inference_core_imports_no_other_layer() -> None:
    for path in _files("inference"):
        outside = {_part(m) for m in _imports(path)} - {"inference", "errors", "runtime", "lazy",
                                                         "model"}
        assert not outside, f"{path.relative_to(REPO)} imports {outside}"


def test_no_module_of_the_package_is_over_600_lines() -> None:
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 40
    assert not {k: v for k, v in sizes.items() if v > 600}

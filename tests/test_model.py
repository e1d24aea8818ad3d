"""The BASNet network: official parameter count, outputs, sizes, saving, other backends."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from basnet_cli.model.basnet import OUTPUT_NAMES, build_basnet, inference_model
from basnet_cli.model.config import LITE, PAPER, PRESETS, R18, TINY, BASNetConfig
from basnet_cli.model.flops import count_macs
from tests.conftest import FAST_XLA


def n_trainable(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.slow
def test_paper_preset_has_official_parameter_count():
    assert n_trainable(build_basnet(PAPER)) == 87_060_360


def test_official_structure_without_building_full_model():
    # Structure facts that the paper preset encodes (section 1 of BASNET_FACTS.md).
    assert PAPER.encoder_blocks == (3, 4, 6, 3)
    assert PAPER.encoder_widths == (64, 128, 256, 512)
    assert PAPER.extra_blocks == 3 and PAPER.bridge_dilation == 2 and PAPER.dilate_6d
    assert [w[-1] for w in PAPER.decoder_widths] == [512, 512, 256, 128, 64, 64]
    assert R18.encoder_blocks == (2, 2, 2, 2)


def test_tiny_model_outputs_and_layer_names():
    model = build_basnet(TINY)
    assert list(model.output_names) == list(OUTPUT_NAMES)
    names = {layer.name for layer in model.layers}
    for expected in ("inconv", "inbn", "encoder1_0_conv1", "encoder2_0_downsample_0",
                     "resb5_1_conv1", "convbg_m", "conv6d_m", "outconvb", "outconv1",
                     "refunet_conv0", "refunet_conv_d0"):
        assert expected in names
    # No 7x7 stem, no max-pool before stage 1: stage 1 runs at full resolution.
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 96, 3)).astype("float32")
    outs = model.predict(x, verbose=0)
    assert len(outs) == 8
    for out in outs:
        assert out.shape == (2, 64, 96, 1)
        assert out.min() >= 0.0 and out.max() <= 1.0
    stage1 = keras.Model(model.input, model.get_layer("encoder1_0_out").output)
    assert stage1.predict(x, verbose=0).shape[1:3] == (64, 96)


def test_6d_dilation_and_taper():
    model = build_basnet(TINY)
    assert model.get_layer("conv6d_1").dilation_rate == (1, 1)
    assert model.get_layer("conv6d_m").dilation_rate == (2, 2)
    assert model.get_layer("conv6d_2").dilation_rate == (2, 2)
    assert model.get_layer("convbg_1").dilation_rate == (2, 2)
    assert model.get_layer("conv5d_m").dilation_rate == (1, 1)
    assert not model.get_layer("encoder1_0_conv1").use_bias
    assert model.get_layer("conv4d_1").use_bias


def test_inference_model_returns_refined_map_only():
    model = build_basnet(TINY)
    infer = inference_model(model)
    x = np.full((1, 32, 32, 3), 128.0, dtype="float32")
    out = infer.predict(x, verbose=0)
    assert out.shape == (1, 32, 32, 1)
    np.testing.assert_allclose(out, model.predict(x, verbose=0)[0], atol=1e-6)


def test_lite_preset_is_much_cheaper():
    for size in (288, 320):
        assert count_macs(PAPER, size) >= 5 * count_macs(LITE, size)
        # Published figure for the README: paper 198.4 GMACs at 320.
    assert abs(count_macs(PAPER, 320) / 1e9 - 198.44) < 0.01


def test_save_load_roundtrips(tmp_path):
    model = build_basnet(TINY)
    x = np.random.default_rng(1).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    ref = model.predict(x, verbose=0)[0]
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0)[0], ref, atol=1e-6)
    model.save_weights(tmp_path / "basnet-tiny.weights.h5")
    fresh = build_basnet(TINY)
    fresh.load_weights(tmp_path / "basnet-tiny.weights.h5")
    np.testing.assert_allclose(fresh.predict(x, verbose=0)[0], ref, atol=1e-6)
    # Inference-only model round trip too.
    inference_model(model).save(tmp_path / "inf.keras")
    inf = keras.saving.load_model(tmp_path / "inf.keras", safe_mode=True)
    np.testing.assert_allclose(inf.predict(x, verbose=0), ref, atol=1e-6)


def test_model_io_resolves_presets_and_files(tmp_path, monkeypatch):
    from basnet_cli.model import io

    monkeypatch.setenv("BASNET_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(io.ModelSpecError, match="no bundled weights"):
        io.resolve("basnet-tiny")
    with pytest.raises(io.ModelSpecError, match="neither a preset"):
        io.resolve("no-such-model")
    model = build_basnet(TINY)
    model.save_weights(tmp_path / "basnet-tiny.weights.h5")
    src = io.resolve("basnet-tiny")
    assert src.config == TINY and src.path == tmp_path / "basnet-tiny.weights.h5"
    # A weights file with an uninformative name: the preset is found by trying each.
    (tmp_path / "mine.weights.h5").write_bytes((tmp_path / "basnet-tiny.weights.h5").read_bytes())
    src = io.resolve(str(tmp_path / "mine.weights.h5"))
    assert src.config is None
    loaded = io.load_training_model(src)
    assert src.config == TINY and len(loaded.outputs) == 8


def test_model_io_loading_sets_policy_and_maps_errors():
    from basnet_cli.model import io

    class Failed(Exception):
        pass

    before = keras.mixed_precision.global_policy().name
    with io.loading("m", "bfloat16", Failed):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == before
    with pytest.raises(Failed, match=r"^no such preset$"):
        with io.loading("m", "float16", Failed):
            raise io.ModelSpecError("no such preset")
    with pytest.raises(Failed, match=r"^--model m: cannot load it \(bad header\)$"):
        with io.loading("m", "float16", Failed):
            raise OSError("  bad header\nmore detail")
    with pytest.raises(Failed, match=r"^--model m: cannot load it \(TypeError\)$"):
        with io.loading("m", "float32", Failed):
            raise TypeError()
    assert keras.mixed_precision.global_policy().name == before


def test_corrupt_weights_file_is_a_usage_error_everywhere(tmp_path):
    """predict, export and benchmark load through io.loading: same message, policy restored."""
    from basnet_cli import benchmark as B
    from basnet_cli import export as E
    from basnet_cli import inference as P

    bad = tmp_path / "basnet-tiny.weights.h5"
    bad.write_bytes(b"not an HDF5 file")
    before = keras.mixed_precision.global_policy().name
    message = rf"^--model {re.escape(str(bad))}: not a Keras weights file \("
    with pytest.raises(P.InferenceUsageError, match=message):
        P.load_predictor(str(bad), precision="float32", device="cpu")
    with pytest.raises(E.ExportUsageError, match=message):
        E.load_model(E.ExportOptions(model=str(bad), format="keras"))
    with pytest.raises(B.BenchmarkError, match=message):
        B.load_model(str(bad), precision="float32")
    assert keras.mixed_precision.global_policy().name == before


def test_config_roundtrip():
    for config in PRESETS.values():
        assert BASNetConfig.from_dict(config.to_dict()) == config


_OTHER_BACKEND_SCRIPT = """
import numpy as np, keras
from basnet_cli.model.basnet import build_basnet
from basnet_cli.model.config import PRESETS
from basnet_cli.losses import hybrid_loss
assert keras.backend.backend() == "{backend}", keras.backend.backend()
m = build_basnet(PRESETS["{preset}"])
m.load_weights("{weights}")
x = np.load("{x}")
outs = m.predict(x, verbose=0)
np.save("{out}", np.stack([np.asarray(o) for o in outs]))
loss = keras.ops.convert_to_numpy(hybrid_loss(outs[1] > 0.5, outs[0]))
assert np.all(np.isfinite(loss))
print("ok")
"""


@pytest.mark.parametrize("backend,preset", [("torch", "basnet-tiny"), ("jax", "basnet-tiny"),
                                            ("jax", "basnet-mobile-tiny")])
def test_forward_pass_matches_under_another_backend(tmp_path, backend, preset):
    pytest.importorskip(backend, reason=f"{backend} is not installed")
    model = build_basnet(PRESETS[preset])
    weights = tmp_path / f"{preset}.weights.h5"
    model.save_weights(weights)
    x = np.random.default_rng(2).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    ref = np.stack([keras.ops.convert_to_numpy(o) for o in model(x, training=False)])
    script = _OTHER_BACKEND_SCRIPT.format(backend=backend, preset=preset, weights=weights,
                                          x=tmp_path / "x.npy", out=tmp_path / "out.npy")
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="", **FAST_XLA)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), ref, atol=1e-4)

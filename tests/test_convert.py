"""`basnet convert`: official PyTorch checkpoint -> Keras, and PyTorch/Keras output equivalence.

The PyTorch side is tests/torch_reference.py, an independent PyTorch BASNet with the official
module layout and state_dict key names.  Randomised weights (BN statistics included) are
converted and the 8 outputs of both networks compared: this is the proof that the Keras
architecture is the official one.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch not installed (pip install 'basnet-cli[torch]')"
)

from typer.testing import CliRunner  # noqa: E402

from basnet_cli.runtime import import_keras  # noqa: E402

keras = import_keras()

from basnet_cli.cli import app  # noqa: E402
from basnet_cli.model.basnet import IMAGENET_MEAN, IMAGENET_STD, build_basnet  # noqa: E402
from basnet_cli.model.config import get_preset  # noqa: E402
from basnet_cli.model.convert import (  # noqa: E402
    ConversionError,
    build_from_state_dict,
    guess_presets,
    normalise_state_dict,
)
from tests.torch_reference import TorchBASNet, randomise  # noqa: E402

TOLERANCE = 1e-4


def _said(result) -> str:
    """The command's stdout + stderr with Rich's line wrapping undone."""
    return " ".join(result.output.split())


def _images(size: int, batch: int, seed: int) -> np.ndarray:
    """Random RGB images in 0..255 (the Keras model's input), NHWC float32."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 255.0, (batch, size, size, 3)).astype("float32")


def _to_torch(images: np.ndarray) -> torch.Tensor:
    """The ImageNet-normalised NCHW equivalent that the PyTorch reference expects."""
    mean = np.asarray(IMAGENET_MEAN, dtype="float32")
    std = np.asarray(IMAGENET_STD, dtype="float32")
    x = (images / np.float32(255.0) - mean) / std
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype="float32"))


def _reference(preset: str, sizes: tuple[int, ...], seed: int = 0) -> TorchBASNet:
    """A randomised PyTorch BASNet, BN statistics calibrated on images of ``sizes``."""
    torch.manual_seed(seed)
    calibration = [_to_torch(_images(size, 2, seed=100 + size)) for size in sizes]
    return randomise(TorchBASNet(get_preset(preset)), seed=seed, calibration=calibration)


def _compare(preset: str, sizes: tuple[int, ...], batch: int) -> dict[int, list[float]]:
    """Max abs difference of each of the 8 outputs, per input size."""
    net = _reference(preset, sizes)
    model = build_from_state_dict(normalise_state_dict(net.state_dict()), get_preset(preset))
    diffs = {}
    for size in sizes:
        images = _images(size, batch, seed=size)
        with torch.no_grad():
            expected = [t.numpy().transpose(0, 2, 3, 1) for t in net(_to_torch(images))]
        got = [np.asarray(t) for t in model(images, training=False)]
        assert len(got) == len(expected) == 8
        diffs[size] = []
        for k, (a, b) in enumerate(zip(got, expected)):
            assert a.shape == b.shape == (batch, size, size, 1), (k, a.shape, b.shape)
            # A saturated sigmoid would hide differences: the maps must be informative.
            informative = float(((b > 0.02) & (b < 0.98)).mean())
            assert informative > 0.5, f"output {k} at {size}: only {informative:.0%} unsaturated"
            diffs[size].append(float(np.abs(a - b).max()))
        print(f"{preset} {size}x{size}: max abs diff per output "
              + " ".join(f"{d:.1e}" for d in diffs[size]), file=sys.stderr)
    return diffs


def test_tiny_preset_matches_pytorch() -> None:
    diffs = _compare("basnet-tiny", (64, 96), batch=2)
    for size, per_output in diffs.items():
        assert max(per_output) < TOLERANCE, (size, per_output)


@pytest.mark.slow
def test_paper_preset_matches_pytorch() -> None:
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    diffs = _compare("basnet", (256, 320), batch=1)
    for size, per_output in diffs.items():
        assert max(per_output) < TOLERANCE, (size, per_output)


def test_reference_has_official_keys_and_paper_size() -> None:
    net = TorchBASNet(get_preset("basnet"))
    keys = net.state_dict().keys()
    for key in ("inconv.weight", "inbn.running_var", "encoder1.0.conv1.weight",
                "encoder2.0.downsample.0.weight", "encoder2.0.downsample.1.running_mean",
                "encoder4.2.bn2.bias", "resb5_3.conv2.weight", "resb6_1.bn1.weight",
                "convbg_m.weight", "bnbg_2.bias", "conv6d_m.weight", "bn1d_2.running_mean",
                "outconvb.weight", "outconv6.bias", "outconv1.weight", "refunet.conv0.weight",
                "refunet.bn5.weight", "refunet.conv_d4.weight", "refunet.bn_d1.running_var",
                "refunet.conv_d0.bias"):
        assert key in keys, key
    assert "encoder1.0.downsample.0.weight" not in keys
    assert sum(p.numel() for p in net.parameters()) == 87_060_360
    assert guess_presets(normalise_state_dict(net.state_dict())) == ["basnet"]


def _tiny_state() -> dict:
    return _reference("basnet-tiny", (64,)).state_dict()


def test_unwraps_state_dict_and_dataparallel_prefix() -> None:
    state = _tiny_state()
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    unwrapped = normalise_state_dict(wrapped)
    assert set(unwrapped) == set(state)
    assert np.array_equal(unwrapped["inconv.weight"], state["inconv.weight"].numpy())


def test_missing_and_unexpected_keys_are_listed() -> None:
    state = normalise_state_dict(_tiny_state())
    del state["refunet.conv_d0.weight"]
    del state["bn3d_m.running_var"]
    state["extra_head.weight"] = np.zeros((1, 4, 3, 3), dtype="float32")
    with pytest.raises(ConversionError) as info:
        build_from_state_dict(state, get_preset("basnet-tiny"))
    message = str(info.value)
    assert "unexpected" in message and "extra_head.weight" in message
    assert "missing" in message
    assert "refunet_conv_d0/kernel" in message and "bn3d_m/moving_variance" in message


def test_shape_mismatch_is_listed() -> None:
    state = normalise_state_dict(_tiny_state())
    state["outconv1.weight"] = np.zeros((1, 7, 3, 3), dtype="float32")
    with pytest.raises(ConversionError, match=r"shape mismatch.*outconv1\.weight"):
        build_from_state_dict(state, get_preset("basnet-tiny"))


def test_cli_convert_writes_loadable_weights(tmp_path) -> None:
    net = _reference("basnet-tiny", (64,))
    checkpoint = tmp_path / "basnet-tiny.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
               checkpoint)
    out = tmp_path / "sub" / "basnet-tiny.weights.h5"
    result = CliRunner().invoke(
        app, ["convert", str(checkpoint), "--out", str(out), "--preset", "basnet-tiny"]
    )
    assert result.exit_code == 0, result.output
    assert "converted" in _said(result)
    assert out.is_file()
    assert not [p for p in out.parent.iterdir() if p != out], "temporary file left behind"

    model = build_basnet(get_preset("basnet-tiny"))
    model.load_weights(out)
    kernel = model.get_layer("encoder2_0_downsample_0").get_weights()[0]
    expected = net.state_dict()["encoder2.0.downsample.0.weight"].numpy().transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(kernel, expected)
    moving_var = model.get_layer("refunet_bn_d1").get_weights()[3]
    np.testing.assert_array_equal(moving_var, net.state_dict()["refunet.bn_d1.running_var"])


def test_cli_convert_rejects_wrong_preset(tmp_path) -> None:
    checkpoint = tmp_path / "tiny.pth"
    torch.save(_tiny_state(), checkpoint)
    out = tmp_path / "basnet.weights.h5"
    result = CliRunner().invoke(app, ["convert", str(checkpoint), "--out", str(out),
                                      "--preset", "basnet-lite"])
    assert result.exit_code == 2
    assert "shape mismatch" in _said(result)
    assert "try --preset basnet-tiny" in _said(result)
    assert not out.exists() and not list(tmp_path.glob("*.weights.h5"))


def test_cli_convert_usage_errors(tmp_path) -> None:
    checkpoint = tmp_path / "tiny.pth"
    torch.save(_tiny_state(), checkpoint)
    runner = CliRunner()
    missing = runner.invoke(app, ["convert", str(tmp_path / "nope.pth"), "--out",
                                  str(tmp_path / "x.weights.h5")])
    assert missing.exit_code == 2 and "not found" in _said(missing)
    bad_out = runner.invoke(app, ["convert", str(checkpoint), "--out", str(tmp_path / "x.h5")])
    assert bad_out.exit_code == 2 and ".weights.h5" in _said(bad_out)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    bad_ckpt = runner.invoke(app, ["convert", str(garbage), "--out",
                                   str(tmp_path / "x.weights.h5")])
    assert bad_ckpt.exit_code == 2 and "cannot read" in _said(bad_ckpt)


def test_cli_convert_without_torch(tmp_path, monkeypatch) -> None:
    checkpoint = tmp_path / "tiny.pth"
    checkpoint.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    result = CliRunner().invoke(app, ["convert", str(checkpoint), "--out",
                                      str(tmp_path / "x.weights.h5")])
    assert result.exit_code == 2
    assert "pip install 'basnet-cli[torch]'" in _said(result)
    assert "torch==2.13.0" in _said(result)

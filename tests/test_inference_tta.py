"""Mirror test-time augmentation (``--tta``): the logit-space mean, the wrapper around any
predictor, and predict / evaluate wrapping the model they load (and only that)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from basnet_cli.inference.tta import FlipAverage, logit, mean_in_logit_space, sigmoid, with_tta
from tests.conftest import write_dataset

SIZE = 32


def _ramp(batch: np.ndarray) -> np.ndarray:
    """A predictor that ignores the photo: probability rising from left to right."""
    b, h, w, _ = np.asarray(batch).shape
    row = np.linspace(0.05, 0.95, w, dtype=np.float32)
    return np.broadcast_to(row[None, None, :, None], (b, h, w, 1)).copy()


def _brightness(batch: np.ndarray) -> np.ndarray:
    """A per-pixel predictor (so mirroring commutes with it): sigmoid((mean RGB - 128) / 16)."""
    x = np.asarray(batch, np.float32).mean(axis=-1, keepdims=True)
    return (1.0 / (1.0 + np.exp(-(x - 128.0) / 16.0))).astype(np.float32)


def test_logit_mean_of_agreeing_maps_is_the_map_and_the_surer_view_wins() -> None:
    p = np.array([0.0, 1e-3, 0.2, 0.5, 0.9, 1.0], np.float32)
    np.testing.assert_allclose(mean_in_logit_space(p, p), np.clip(p, 1e-6, 1 - 1e-6),
                               atol=1e-6)
    np.testing.assert_allclose(sigmoid(logit(p)), np.clip(p, 1e-6, 1 - 1e-6), atol=1e-6)
    mixed = mean_in_logit_space(np.float32(0.99), np.float32(0.3))
    assert mixed == pytest.approx(0.867, abs=1e-3)  # a probability mean would give 0.645
    assert mean_in_logit_space(np.float32(0.8), np.float32(0.2)) == pytest.approx(0.5)
    assert np.isfinite(sigmoid(np.array([-1e4, 1e4], np.float32))).all()


def test_flip_average_mirrors_the_second_view_back() -> None:
    calls: list[tuple[int, ...]] = []

    def recorded(batch: np.ndarray) -> np.ndarray:
        calls.append(np.asarray(batch).shape)
        return _ramp(batch)

    x = np.random.default_rng(0).uniform(0, 255, (3, 8, 12, 3)).astype(np.float32)
    out = FlipAverage(recorded)(x)
    assert out.shape == (3, 8, 12, 1) and out.dtype == np.float32
    assert calls == [(3, 8, 12, 3)] * 2  # two calls at the caller's batch size
    # The ramp and its mirror image average to a map symmetric about the centre column.
    np.testing.assert_allclose(out, out[:, :, ::-1], atol=1e-6)
    assert np.abs(out - _ramp(x)).max() > 0.3

    # A per-pixel predictor commutes with mirroring: the same map as one pass.
    np.testing.assert_allclose(FlipAverage(_brightness)(x), _brightness(x), atol=1e-5)


def test_with_tta_keeps_name_and_fixed_size() -> None:
    class Fixed:
        description = "m.tflite"
        input_size = (64, 64)

        def __call__(self, batch: np.ndarray) -> np.ndarray:
            return _ramp(batch)

    inner = Fixed()
    assert with_tta(inner, False) is inner
    wrapped = with_tta(inner, True)
    assert wrapped.description == "m.tflite + mirror TTA" and wrapped.input_size == (64, 64)


def test_evaluate_wraps_the_model_it_loads(tmp_path: Path, weights: Path) -> None:
    from basnet_cli.evaluate import evaluate_model

    data = write_dataset(tmp_path / "DS", 3, layout="plain", size=(30, 40))
    kw = {"size": SIZE, "batch_size": 2, "workers": 1}
    with_flip = evaluate_model(data, model=str(weights), tta=True,
                               save_maps=tmp_path / "tta", **kw).methods[0]
    plain = evaluate_model(data, model=str(weights), tta=False,
                           save_maps=tmp_path / "plain", **kw).methods[0]
    assert with_flip.source.endswith("+ mirror TTA")
    assert not plain.source.endswith("+ mirror TTA")
    # An untrained network is not mirror-symmetric: the two settings write different maps.
    differ = [np.abs(np.asarray(Image.open(tmp_path / "tta" / f"{i:04d}.png"), np.int16)
                     - np.asarray(Image.open(tmp_path / "plain" / f"{i:04d}.png"), np.int16))
              .max() for i in range(3)]
    assert max(differ) > 0, differ

    # A given predictor is used as it is, whatever tta says.
    given = evaluate_model(data, predictor=_ramp, tta=True, **kw).methods[0]
    reference = evaluate_model(data, predictor=_ramp, tta=False, **kw).methods[0]
    assert given.metrics == reference.metrics


def test_predict_records_tta_in_its_summary(tmp_path: Path, weights: Path) -> None:
    from basnet_cli.predict import PredictOptions, run

    data = write_dataset(tmp_path / "DS", 3, layout="plain", size=(30, 40))
    for tta in (True, False):
        summary = run(PredictOptions(inputs=[str(data / "images")], out=tmp_path / f"o{tta}",
                                     model=str(weights), size=SIZE, tta=tta, runtime="keras",
                                     precision="float32", device="cpu"))
        assert summary.processed == 3 and summary.exit_code == 0
        assert summary.tta is tta and summary.to_dict()["tta"] is tta
        assert summary.model.endswith("+ mirror TTA") is tta
    a = np.asarray(Image.open(tmp_path / "oTrue" / "0000.png"), np.int16)
    b = np.asarray(Image.open(tmp_path / "oFalse" / "0000.png"), np.int16)
    assert np.abs(a - b).max() > 0

"""Metrics on hand-derived cases: input conventions (metrics.sample), MAE, F-measure and the suite.

PySODMetrics parity: test_metrics_parity.py; relaxed boundary F-measure: test_metrics_relaxed.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from basnet_cli import metrics as M

# ---------------------------------------------------------------------------------------------
# Hand-derived values


def _two_level_case() -> tuple[np.ndarray, np.ndarray]:
    """10x10: GT = top half; pred 255 on the GT, 100 elsewhere (min-max -> 1 and 0)."""
    gt = np.zeros((10, 10), np.uint8)
    gt[:5] = 255
    pred = np.where(gt > 0, 255, 100).astype(np.uint8)
    return pred, gt


def test_mae_constant_prediction() -> None:
    gt = np.zeros((10, 10), np.uint8)
    gt[:5] = 255
    m = M.MAE()
    m.step(np.zeros_like(gt), gt)  # constant: not stretched, stays 0
    assert m.get_results()["mae"] == pytest.approx(0.5)


def test_fmeasure_hand_derived() -> None:
    pred, gt = _two_level_case()
    fm = M.FMeasure()
    fm.step(pred, gt)
    r = fm.get_results()
    f0 = 1.3 * 0.5 * 1.0 / (0.3 * 0.5 + 1.0)  # threshold 0: everything positive
    assert r["curve"][0] == pytest.approx(f0)
    assert np.allclose(r["curve"][1:], 1.0)
    assert r["max"] == pytest.approx(1.0)
    assert r["mean"] == pytest.approx((f0 + 255) / 256)
    assert r["adaptive"] == pytest.approx(1.0)  # mean 0.5 -> threshold 1.0 -> the GT half
    assert r["precision"][0] == pytest.approx(0.5) and r["recall"][0] == pytest.approx(1.0)


def test_fmeasure_dataset_vs_image_curves() -> None:
    pred_a, gt_a = _two_level_case()
    gt_b = np.zeros((10, 10), np.uint8)
    gt_b[:, :2] = 255  # 20 px
    pred_b = np.zeros((10, 10), np.uint8)
    pred_b[:, :4] = 255  # 40 px: P = 0.5, R = 1 at every threshold >= 1
    img, ds = M.FMeasure(curve="image"), M.FMeasure(curve="dataset")
    for m in (img, ds):
        m.step(pred_a, gt_a)
        m.step(pred_b, gt_b)
    f_half = 1.3 * 0.5 / (0.3 * 0.5 + 1.0)
    # threshold 1: image A has P=R=1 (F=1), image B has P=.5, R=1
    assert img.get_results()["curve"][1] == pytest.approx((1.0 + f_half) / 2)
    p, r = 0.75, 1.0
    assert ds.get_results()["curve"][1] == pytest.approx(1.3 * p * r / (0.3 * p + r))
    with pytest.raises(ValueError):
        M.FMeasure(curve="pixels")


def test_perfect_prediction_values() -> None:
    gt = np.zeros((30, 40), np.uint8)
    gt[8:20, 10:31] = 255
    suite = M.MetricSuite()
    values = suite.step(gt.copy(), gt)
    n = gt.size
    assert values["mae"] == 0.0
    assert values["max_f"] == pytest.approx(1.0)
    assert values["s_measure"] == pytest.approx(1.0)
    # PySODMetrics' E-measure divides the enhanced-alignment sum by (N - 1)
    assert values["adaptive_e"] == pytest.approx(n / (n - 1))
    assert values["weighted_f"] == pytest.approx(1.0, abs=1e-9)
    assert values["relaxed_f"] == pytest.approx(1.0)


def test_empty_gt_conventions() -> None:
    gt = np.zeros((20, 20), np.uint8)
    suite = M.MetricSuite()
    values = suite.step(np.zeros_like(gt), gt)
    assert values["s_measure"] == pytest.approx(1.0)  # 1 - mean(pred)
    assert values["weighted_f"] == 0.0
    assert values["relaxed_f"] == 1.0  # no boundary anywhere: nothing to get wrong


def test_float_input_is_quantised_like_saved_masks() -> None:
    rng = np.random.default_rng(3)
    gt = (rng.random((24, 32)) > 0.6).astype(np.uint8) * 255
    pred = rng.random((24, 32)).astype(np.float32)
    a, b = M.MetricSuite(), M.MetricSuite()
    va = a.step(pred, gt)
    vb = b.step(M.to_uint8(pred), gt)
    assert va == vb
    assert M.to_uint8(np.array([0.0, 0.5 / 255, 1.0, 1.5], np.float32)).tolist() == [0, 1, 255,
                                                                                   255]


def test_gt_binarisation_rule() -> None:
    assert M.binarize_gt(np.array([128, 129], np.uint8)).tolist() == [False, True]
    assert M.binarize_gt(np.array([128 / 255, 129 / 255], np.float32)).tolist() == [False, True]


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="Shape mismatch"):
        M.prepare(np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8))


def _blobs(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """1-3 random rectangles with 3 % of the pixels flipped."""
    m = np.zeros(shape, bool)
    for _ in range(rng.integers(1, 4)):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        h, w = rng.integers(1, shape[0] // 2 + 2), rng.integers(1, shape[1] // 2 + 2)
        m[y:y + h, x:x + w] = True
    m ^= rng.random(shape) < 0.03
    return m


def test_truth_reused_across_predictions() -> None:
    rng = np.random.default_rng(11)
    gt = _blobs(rng, (40, 50)).astype(np.uint8) * 255
    truth = M.Truth(gt)
    for k in range(4):  # several methods against one mask: mask-only work done once
        pred = np.clip(gt * 0.6 + rng.normal(40 * k, 30, gt.shape), 0, 255).astype(np.uint8)
        assert M.MetricSuite().step(pred, truth) == M.MetricSuite().step(pred, gt)

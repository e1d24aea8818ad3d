"""Metrics on synthetic cases: hand-derived values, and PySODMetrics parity (always run)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from basnet_cli import metrics as M

# The histogram/closed-form implementation sums in another order than PySODMetrics' pixel
# passes: results agree to a few 1e-16 (measured), not bit for bit.
TOL = 1e-12


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


# ---------------------------------------------------------------------------------------------
# Relaxed boundary F-measure: hand-derived cases


def _square(shape: tuple[int, int], top: int, left: int, side: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top:top + side, left:left + side] = True
    return m


def test_boundary_is_one_pixel_ring() -> None:
    b = M.boundary(_square((20, 20), 5, 5, 10))
    assert b.sum() == 36  # 10x10 minus its 8x8 interior
    assert M.boundary(np.ones((5, 5), bool)).sum() == 16  # outside the image is background


@pytest.mark.parametrize("shift, expected", [(0, 1.0), (2, 1.0), (3, 1.0), (4, 2 / 3)])
def test_relaxed_f_shifted_squares(shift: int, expected: float) -> None:
    # Rings of 36 px. Shift 3: every pixel still within rho = 3. Shift 4: on each ring the far
    # edge (10 px) and the two middle pixels of the near edge (2 px) are 4-5 px from the other
    # ring, so P = R = 24/36.
    gt = _square((20, 24), 5, 5, 10)
    pred = _square((20, 24), 5, 5 + shift, 10)
    f, p, r = M.relaxed_boundary_f(pred, gt, rho=3)
    assert p == pytest.approx(expected)
    assert r == pytest.approx(expected)
    assert f == pytest.approx(expected)


def test_relaxed_f_thin_lines() -> None:
    gt = np.zeros((20, 20), bool)
    gt[10, 2:18] = True  # a 1-px line is its own boundary (16 px)
    near = np.zeros_like(gt)
    near[13, 2:18] = True  # 3 px away: all matched
    far = np.zeros_like(gt)
    far[14, 2:18] = True  # 4 px away: nothing matched
    assert M.relaxed_boundary_f(near, gt)[0] == pytest.approx(1.0)
    assert M.relaxed_boundary_f(far, gt)[:3] == (0.0, 0.0, 0.0)
    half = np.zeros_like(gt)
    half[10, 2:10] = True  # 8 px, all on the GT line; GT cols 2..12 lie within 3 px of it
    f, p, r = M.relaxed_boundary_f(half, gt)
    assert p == pytest.approx(1.0)  # precision counts predicted pixels (not swapped)
    assert r == pytest.approx(11 / 16)
    assert f == pytest.approx(1.3 * p * r / (0.3 * p + r))


def test_relaxed_f_empty_cases() -> None:
    gt = _square((12, 12), 2, 2, 6)
    empty = np.zeros_like(gt)
    assert M.relaxed_boundary_f(empty, gt)[0] == 0.0
    assert M.relaxed_boundary_f(gt, empty)[0] == 0.0
    assert M.relaxed_boundary_f(empty, empty)[0] == 1.0


def test_relaxed_metric_binarises_at_half() -> None:
    gt = np.zeros((20, 20), np.uint8)
    gt[5:15, 5:15] = 255
    pred = np.zeros((20, 20), np.uint8)
    pred[5:15, 5:15] = 128  # normalised: 128 -> 1.0 (max), so >= 0.5
    pred[0, 0] = 0
    m = M.RelaxedBoundaryFMeasure()
    m.step(pred, gt)
    assert m.get_results()["relax_f"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Pure-NumPy distance transform == scipy's (values and the nearest-pixel tie rule)


def _blobs(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, bool)
    for _ in range(rng.integers(1, 4)):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        h, w = rng.integers(1, shape[0] // 2 + 2), rng.integers(1, shape[1] // 2 + 2)
        m[y:y + h, x:x + w] = True
    m ^= rng.random(shape) < 0.03
    return m


def test_numpy_edt_matches_scipy() -> None:
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy is the reference here")
    rng = np.random.default_rng(0)
    for _ in range(60):
        shape = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
        feat = _blobs(rng, shape)
        if not feat.any():
            continue
        ref = ndimage.distance_transform_edt(~feat)
        assert np.allclose(M._edt_numpy(feat), ref, atol=1e-9)


def test_weighted_f_numpy_path_matches_scipy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("scipy.ndimage", reason="scipy is the reference here")
    rng = np.random.default_rng(1)
    for _ in range(25):
        shape = (int(rng.integers(8, 50)), int(rng.integers(8, 50)))
        gt = _blobs(rng, shape)
        pred = np.clip(gt * 0.7 + rng.random(shape) * 0.5, 0, 1)
        monkeypatch.setattr(M, "_USE_SCIPY", True)
        a = M.weighted_f_measure(pred, gt)
        monkeypatch.setattr(M, "_USE_SCIPY", False)
        b = M.weighted_f_measure(pred, gt)
        assert a == pytest.approx(b, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Parity with PySODMetrics on synthetic pairs (edge cases included)


def _synthetic_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(42)
    pairs = []
    for k in range(24):
        shape = (int(rng.integers(20, 48)), int(rng.integers(20, 48)))
        gt = _blobs(rng, shape).astype(np.uint8) * 255
        kind = k % 6
        if kind == 0:
            pred = rng.integers(0, 256, shape).astype(np.uint8)
        elif kind == 1:
            pred = np.clip(gt * 0.8 + rng.normal(0, 30, shape), 0, 255).astype(np.uint8)
        elif kind == 2:
            pred = np.roll(gt, (2, -3), axis=(0, 1)) // 2 + 40
        elif kind == 3:
            pred = np.full(shape, 77, np.uint8)  # constant map
        elif kind == 4:
            pred = (255 - gt).astype(np.uint8)
        else:
            pred = np.clip(gt * 0.5 + rng.integers(0, 120, shape), 0, 255).astype(np.uint8)
        pairs.append((pred.astype(np.uint8), gt))
    z = np.zeros((16, 16), np.uint8)
    pairs.append((np.full((16, 16), 200, np.uint8), z))  # empty GT
    pairs.append((z.copy(), np.full((16, 16), 255, np.uint8)))  # full GT
    return pairs


def reference_results(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, object]:
    psm = pytest.importorskip("py_sod_metrics", reason="pysodmetrics (dev extra) is the oracle")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mae, fm, sm = psm.MAE(), psm.Fmeasure(beta=0.3), psm.Smeasure()
        em, wfm = psm.Emeasure(), psm.WeightedFmeasure()
        for p, g in pairs:
            for m in (mae, fm, sm, em, wfm):
                m.step(p, g)
    f = fm.get_results()
    e = em.get_results()["em"]
    return {
        "mae": mae.get_results()["mae"], "max_f": f["fm"]["curve"].max(),
        "mean_f": f["fm"]["curve"].mean(), "adaptive_f": f["fm"]["adp"],
        "s_measure": sm.get_results()["sm"], "max_e": e["curve"].max(),
        "mean_e": e["curve"].mean(), "adaptive_e": e["adp"],
        "weighted_f": wfm.get_results()["wfm"],
        "f_curve": f["fm"]["curve"][::-1], "e_curve": e["curve"][::-1],
        "precision": f["pr"]["p"][::-1], "recall": f["pr"]["r"][::-1],
    }


def assert_parity(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Compare every shared metric (and curve) with PySODMetrics; returns the max abs diffs."""
    ref = reference_results(pairs)
    suite, ds = M.MetricSuite(), M.FMeasure(curve="dataset")
    for p, g in pairs:
        sample = M.prepare(p, g)
        suite.update(sample)
        ds.update(sample)
    out = suite.get_results()
    diffs = {k: abs(out["metrics"][k] - ref[k]) for k in M.METRIC_NAMES if k in ref}
    curves = out["curves"]
    diffs["f_curve"] = float(np.abs(curves["f"] - ref["f_curve"]).max())
    diffs["e_curve"] = float(np.abs(curves["e"] - ref["e_curve"]).max())
    diffs["precision"] = float(np.abs(curves["precision"] - ref["precision"]).max())
    diffs["recall"] = float(np.abs(curves["recall"] - ref["recall"]).max())
    # dataset convention: F from PySODMetrics' mean precision and recall curves
    p, r = ref["precision"], ref["recall"]
    f_ds = np.where(p * r == 0, 0.0, 1.3 * p * r / np.where(p * r == 0, 1, 0.3 * p + r))
    diffs["max_f_dataset"] = abs(ds.get_results()["max"] - f_ds.max())
    bad = {k: v for k, v in diffs.items() if not v <= TOL}
    assert not bad, f"differences above {TOL}: {bad}"
    return diffs


def test_parity_synthetic() -> None:
    assert_parity(_synthetic_pairs())


def test_parity_synthetic_numpy_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(M, "_USE_SCIPY", False)
    assert_parity(_synthetic_pairs())


# ---------------------------------------------------------------------------------------------
# Parity with PySODMetrics on real ECSSD masks (perturbed copies as predictions)

ECSSD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ECSSD"
N_ECSSD = 40


def ecssd_pairs(n: int = N_ECSSD, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` ECSSD masks with blurred / noised / shifted / rescaled / low-contrast copies."""
    from PIL import Image, ImageFilter

    files = sorted((ECSSD / "masks").glob("*.png"))[:n]
    rng = np.random.default_rng(seed)
    pairs = []
    for k, path in enumerate(files):
        with Image.open(path) as im:
            g_img = im.convert("L")
        g = np.asarray(g_img, dtype=np.uint8)
        kind = k % 5
        if kind == 0:  # blurred
            p = np.asarray(g_img.filter(ImageFilter.GaussianBlur(2 + k % 4)), np.float32)
        elif kind == 1:  # noised
            p = g.astype(np.float32) * 0.85 + rng.normal(20, 25, g.shape)
        elif kind == 2:  # shifted and blurred
            p = np.roll(np.asarray(g_img.filter(ImageFilter.GaussianBlur(1)), np.float32),
                        (k % 9 - 4, 6 - k % 13), axis=(0, 1))
        elif kind == 3:  # low resolution, like a network map resized back
            small = g_img.resize((g.shape[1] // 8, g.shape[0] // 8), Image.Resampling.BILINEAR)
            p = np.asarray(small.resize(g_img.size, Image.Resampling.BILINEAR), np.float32)
        else:  # low contrast plus speckle
            p = g.astype(np.float32) * 0.4 + 60 + rng.normal(0, 10, g.shape)
        pairs.append((np.clip(p, 0, 255).astype(np.uint8), g))
    return pairs


@pytest.mark.skipif(not (ECSSD / "masks").is_dir(),
                    reason=f"ECSSD masks not found at {ECSSD} (../shared is absent)")
def test_parity_ecssd() -> None:
    pairs = ecssd_pairs()
    assert len(pairs) == N_ECSSD
    diffs = assert_parity(pairs)
    print("max abs diff vs PySODMetrics on", len(pairs), "ECSSD pairs:", diffs)


@pytest.mark.skipif(not (ECSSD / "masks").is_dir(),
                    reason=f"ECSSD masks not found at {ECSSD} (../shared is absent)")
def test_parity_ecssd_numpy_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(M, "_USE_SCIPY", False)
    assert_parity(ecssd_pairs(10, seed=1))


# ---------------------------------------------------------------------------------------------
# Per-image parity, including the branches where the exact pixel computation is used


def reference_per_image(p: np.ndarray, g: np.ndarray, normalize: bool = True) -> dict[str, object]:
    psm = pytest.importorskip("py_sod_metrics", reason="pysodmetrics (dev extra) is the oracle")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mae, fm, sm = psm.MAE(), psm.Fmeasure(beta=0.3), psm.Smeasure()
        em, wfm = psm.Emeasure(), psm.WeightedFmeasure()
        for m in (mae, fm, sm, em, wfm):
            m.step(p, g, normalize)
    f = fm.get_results()["fm"]
    e = em.get_results()["em"]
    return {"mae": mae.get_results()["mae"], "adaptive_f": f["adp"],
            "s_measure": sm.get_results()["sm"], "adaptive_e": e["adp"],
            "weighted_f": wfm.get_results()["wfm"], "_f": f["curve"][::-1],
            "_e": e["curve"][::-1]}


def assert_parity_per_image(pairs: list[tuple[np.ndarray, np.ndarray]],
                            normalize: bool = True) -> None:
    for i, (p, g) in enumerate(pairs):
        sample = M.prepare(p, g, normalize)
        ours: dict[str, object] = {}
        for m in (M.MAE(), M.FMeasure(), M.SMeasure(), M.EMeasure(), M.WeightedFMeasure()):
            ours.update(m.compute(sample))
        ref = reference_per_image(p, g, normalize)
        for key, value in ref.items():
            diff = float(np.max(np.abs(np.asarray(ours[key]) - np.asarray(value))))
            assert diff <= TOL, f"pair {i}, {key}: differs by {diff}"


def test_parity_per_image_synthetic() -> None:
    assert_parity_per_image(_synthetic_pairs())


def test_parity_per_image_not_normalized() -> None:
    rng = np.random.default_rng(7)
    pairs = [(np.clip(p / 255.0 + rng.normal(0, 0.02, p.shape), 0, 1), g > 128)
             for p, g in _synthetic_pairs()]
    assert_parity_per_image(pairs, normalize=False)


def test_adaptive_threshold_on_a_map_value_uses_the_pixel_mean() -> None:
    # mean 0.5 -> threshold exactly 1.0, a value of the map: the exact mean decides `>=`
    pred, gt = _two_level_case()
    sample = M.prepare(pred, gt)
    assert sample.adaptive_threshold() == 1.0
    assert_parity_per_image([(pred, gt)])
    # 10 px at 102 (0.4), 2 at 255, 18 at 0: 2*mean = 0.4, again a value of the map, inexact
    # in binary
    pred3 = np.zeros((3, 10), np.uint8)
    pred3[0] = 102
    pred3[1, :2] = 255
    gt3 = np.zeros_like(pred3)
    gt3[0, 3:] = 255
    gt3[1, :4] = 255
    sample = M.prepare(pred3, gt3)
    assert abs(sample.adaptive_threshold() - sample.lut[102]) < 1e-15
    assert_parity_per_image([(pred3, gt3), (pred3, 255 - gt3), (pred3, np.roll(gt3, 4))])


def test_constant_quadrants_follow_pysodmetrics() -> None:
    # GT in the top-left corner: the other quadrants hold no GT; a constant map there makes
    # PySODMetrics' SSIM hang on the rounding of np.mean of the constant pixels
    pairs = []
    for value in (1, 77, 128, 200, 254):
        gt = np.zeros((37, 53), np.uint8)
        gt[2:9, 3:12] = 255
        pred = np.full(gt.shape, value, np.uint8)
        pred[:12, :16] = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
        pairs.append((pred, gt))
    assert_parity_per_image(pairs)


def test_truth_reused_across_predictions() -> None:
    rng = np.random.default_rng(11)
    gt = _blobs(rng, (40, 50)).astype(np.uint8) * 255
    truth = M.Truth(gt)
    for k in range(4):  # several methods against one mask: mask-only work done once
        pred = np.clip(gt * 0.6 + rng.normal(40 * k, 30, gt.shape), 0, 255).astype(np.uint8)
        assert M.MetricSuite().step(pred, truth) == M.MetricSuite().step(pred, gt)


@pytest.mark.skipif(not (ECSSD / "masks").is_dir(),
                    reason=f"ECSSD masks not found at {ECSSD} (../shared is absent)")
def test_parity_per_image_ecssd() -> None:
    assert_parity_per_image(ecssd_pairs(15, seed=2))


def test_benchmark_smoke(tmp_path: Path) -> None:
    pytest.importorskip("py_sod_metrics", reason="pysodmetrics (dev extra) is the oracle")
    from PIL import Image

    from basnet_cli.evaluate import benchmark

    rng = np.random.default_rng(3)
    for k in range(4):
        Image.fromarray(_blobs(rng, (30, 40)).astype(np.uint8) * 255).save(tmp_path / f"{k}.png")
    out = benchmark(tmp_path, limit=4, workers=1, rounds=2)
    assert out["pairs"] == 4
    for key in ("ours", "ours_all_metrics", "pysodmetrics"):
        assert out[f"{key}_maps_per_s"] > 0 and out[f"{key}_cpu_maps_per_s"] > 0
    assert out["speedup"] > 0 and out["speedup_cpu"] > 0

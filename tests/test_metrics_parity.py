"""Metrics against PySODMetrics (the oracle) on synthetic and real ECSSD pairs, per dataset and
per image, including the branches where the exact pixel computation is used."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from basnet_cli import metrics as M
from tests.conftest import SHARED_DATA
from tests.test_metrics import _blobs, _two_level_case

# The histogram/closed-form implementation sums in another order than PySODMetrics' pixel
# passes: results agree to a few 1e-16 (measured), not bit for bit.
TOL = 1e-12

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


# ---------------------------------------------------------------------------------------------
# Parity with PySODMetrics on real ECSSD masks (perturbed copies as predictions)

ECSSD = SHARED_DATA / "ECSSD"
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


def test_weighted_f_measure_function() -> None:
    # the array-level function (float pred, bool gt) against the oracle on random blobs
    rng = np.random.default_rng(1)
    for _ in range(25):
        shape = (int(rng.integers(8, 50)), int(rng.integers(8, 50)))
        gt = _blobs(rng, shape)
        pred = np.clip(gt * 0.7 + rng.random(shape) * 0.5, 0, 1)
        ref = reference_per_image(pred, gt, normalize=False)["weighted_f"]
        assert M.weighted_f_measure(pred, gt) == pytest.approx(ref, abs=TOL)


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
    # the real command ran on the written maps and scored every one of them
    assert out["ours_pipeline_maps_per_s"] > 0 and out["ours_command_maps_per_s"] > 0
    assert out["pipeline_workers"] == 1

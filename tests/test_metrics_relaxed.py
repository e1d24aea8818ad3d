"""Relaxed boundary F-measure (metrics.relaxed) on hand-derived cases."""

from __future__ import annotations

import numpy as np
import pytest

from basnet_cli import metrics as M


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

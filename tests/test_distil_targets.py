"""docs/make_distil_targets.py: soft targets for training pairs, GT kept for the held-out split."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from basnet_cli.data import find_pairs, load_mask, split_pairs
from tests.conftest import write_dataset

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("make_distil_targets",
                                                  ROOT / "docs" / "make_distil_targets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _left_half_teacher(batch: np.ndarray) -> np.ndarray:
    """A stand-in teacher: 0.9 on the left half of each photo, 0.1 on the right."""
    b, h, w, _ = batch.shape
    out = np.full((b, h, w, 1), 0.1, np.float32)
    out[:, :, : w // 2] = 0.9
    return out


def test_targets_mix_gt_and_teacher_and_keep_the_validation_gt(tmp_path):
    src = write_dataset(tmp_path / "src", 12, size=(40, 40))
    out = tmp_path / "distil"
    written, kept = _script().main(src, out, _left_half_teacher, alpha=0.25, size=40,
                                   fraction=0.25, seed=0, batch_size=5, log=lambda _: None)
    assert (written, kept) == (9, 3)
    train, val = split_pairs(find_pairs(src).pairs, 0.25, 0)
    copy = find_pairs(out)
    assert [p[0].name for p in copy.pairs] == [p[0].name for p in find_pairs(src).pairs]
    assert split_pairs(copy.pairs, 0.25, 0)[1] == [
        (out / "SYN-Image" / i.name, out / "SYN-Mask" / m.name) for i, m in val]
    for _, mask in val:
        assert (out / "SYN-Mask" / mask.name).resolve() == mask.resolve()
    for _, mask in train:
        gt = load_mask(mask)
        teacher = np.where(np.arange(40) < 20, 0.9, 0.1)[None, :] * np.ones((40, 1))
        expected = np.floor((0.25 * gt + 0.75 * teacher) * 255 + 0.5) / 255
        np.testing.assert_allclose(load_mask(out / "SYN-Mask" / mask.name), expected,
                                   atol=1.5 / 255)
    # A second call finds every target written and writes none.
    again = _script().main(src, out, _left_half_teacher, alpha=0.25, size=40, fraction=0.25,
                           seed=0, log=lambda _: None)
    assert again == (0, 3)


def test_alpha_outside_zero_one_is_refused(tmp_path):
    src = write_dataset(tmp_path / "src", 4, size=(40, 40))
    with pytest.raises(ValueError, match="alpha"):
        _script().main(src, tmp_path / "out", _left_half_teacher, alpha=1.5, size=40)

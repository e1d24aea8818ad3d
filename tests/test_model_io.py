"""--model files that are not models: one clear reason, before any model is built."""

from __future__ import annotations

import zipfile

import h5py
import numpy as np
import pytest

from basnet_cli.model.io import ModelSpecError, resolve


def test_foreign_and_broken_model_files_say_what_is_wrong(tmp_path):
    foreign = tmp_path / "data.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    cases = {
        foreign: "HDF5 file without Keras weights .*entries: x",
        tmp_path / "text.weights.h5": "not a Keras weights file .*HDF5",
        tmp_path / "cut.keras": "not a .keras model .*not a zip archive",
        tmp_path / "empty.keras": "zip archive without config.json",
    }
    (tmp_path / "text.weights.h5").write_text("hello")
    (tmp_path / "cut.keras").write_bytes(b"PK\x03\x04cut")
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as z:
        z.writestr("metadata.json", "{}")
    for path, message in cases.items():
        with pytest.raises(ModelSpecError, match=message):
            resolve(str(path))
    (tmp_path / "folder.keras").mkdir()
    with pytest.raises(ModelSpecError, match="is a folder"):
        resolve(str(tmp_path / "folder.keras"))

"""``bench/peers.py``: the u2netp peer table (structure and rembg's processing, never speed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, write_dataset

spec = importlib.util.spec_from_file_location("peers", REPO / "bench" / "peers.py")
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)


def _fake_u2netp(path: Path) -> Path:
    """An ONNX model with u2netp's interface: NCHW (1, 3, 320, 320) in, seven (1, 1, 320, 320)
    maps out; the first is the red channel, so the map is easy to predict by hand."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    outputs = [helper.make_tensor_value_info(f"d{i}", TensorProto.FLOAT, [1, 1, 320, 320])
               for i in range(7)]
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [1])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["d0"])]
    nodes += [helper.make_node("Identity", ["d0"], [f"d{i}"]) for i in range(1, 7)]
    graph = helper.make_graph(nodes, "fake_u2netp", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [1, 3, 320, 320])], outputs, [starts, ends, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_u2netp_map_follows_rembg_processing(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from PIL import Image

    session = ort.InferenceSession(str(_fake_u2netp(tmp_path / "u2netp.onnx")),
                                   providers=["CPUExecutionProvider"])
    photo = np.zeros((60, 90, 3), np.uint8)
    photo[:, 45:] = (200, 10, 10)  # red right half
    out = peers.u2netp_map(session, Image.fromarray(photo))
    assert out.mode == "L" and out.size == (90, 60)  # back at the photo's size
    arr = np.asarray(out, np.float64)
    # Min-max normalised: the black half is 0, the red half bright (below 255 where the
    # LANCZOS overshoot at the edge took the maximum).
    assert arr[:, :35].max() < 5 and arr[:, 55:].min() > 200


def test_peer_table_scores_every_row_together(tmp_path: Path, weights: Path) -> None:
    pytest.importorskip("onnxruntime")
    data = write_dataset(tmp_path / "ecssd", 4, layout="plain", size=(64, 96))
    model = _fake_u2netp(tmp_path / "u2netp.onnx")
    out = tmp_path / "out"
    with_tta = f"{weights} --tta"  # a --models entry may carry predict options
    assert peers.main(["--ecssd", str(data), "--images", "3", "--models", str(weights),
                       with_tta, "--u2netp", str(model), "--repeats", "1",
                       "--out", str(out)]) == 0
    result = json.loads((out / "peers.json").read_text())
    assert result["images"] == 3 and result["u2netp_skipped"] is None
    assert set(result["rows"]) == {str(weights), with_tta, "u2netp"}
    for row in result["rows"].values():
        assert row["count"] == 3
        assert 0.0 <= row["metrics"]["mae"] <= 1.0 and 0.0 <= row["metrics"]["max_f"] <= 1.0
        assert row["images_per_s"] > 0
    assert result["rows"]["u2netp"]["speed_vs_u2netp"] == pytest.approx(1.0)
    # The red disc on a grey background: a red-channel "u2netp" finds it well.
    assert result["rows"]["u2netp"]["metrics"]["max_f"] > 0.8
    table = (out / "peers.md").read_text()
    assert "| u2netp |" in table and "python bench/peers.py" in table


def test_u2netp_missing_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    path, reason = peers.find_u2netp(str(tmp_path / "nope.onnx"))
    assert path is None and "does not exist" in reason

"""bench/soak.py: the soak run's samples and its results.md section (a tiny run)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _soak():
    spec = importlib.util.spec_from_file_location("soak", BENCH / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_soak_samples_memory_and_files_and_updates_its_section(weights, tmp_path):
    soak = _soak()
    results = tmp_path / "results.md"
    results.write_text("# Results\n\nearlier text\n")
    assert soak.main(["--count", "40", "--photo-size", "16", "--model", str(weights),
                      "--size", "32", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "soak.json").read_text())
    assert data["processed"] == 40
    for key in ("at_1000", "at_end"):
        sample = data[key]
        assert sample["rss_mib"] > 50 and sample["open_fds"] >= 3, sample
        assert sample["peak_rss_mib"] >= sample["rss_mib"]
    text = results.read_text()
    assert text.startswith("# Results\n\nearlier text\n") and text.count(soak.MARK_BEGIN) == 1
    soak.update_results(soak._markdown(data), results)  # replaced, not appended
    assert results.read_text().count(soak.MARK_BEGIN) == 1
    assert "earlier text" in results.read_text()

"""`basnet evaluate`: maps mode, model mode (fake predictor), reports, plots and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from basnet_cli import metrics as M
from basnet_cli.cli import app
from basnet_cli.evaluate import EvaluateUsageError, evaluate_maps, evaluate_model, read_gray
from basnet_cli.report import PALETTE, method_notes, write_reports

H, W = 36, 48


def _mask(k: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[4 + k % 5:22 + k % 7, 6 + k % 9:30 + k % 11] = 255
    return m


def _pred(k: int, rng: np.random.Generator) -> np.ndarray:
    p = _mask(k).astype(np.float32) * 0.8 + rng.normal(25, 20, (H, W))
    return np.clip(p, 0, 255).astype(np.uint8)


@pytest.fixture()
def maps_case(tmp_path: Path) -> dict[str, object]:
    """GT 0..5; method A misses 3, has an extra, has 4 at half size; B is complete."""
    rng = np.random.default_rng(0)
    gt_dir, a_dir, b_dir = tmp_path / "gt", tmp_path / "methodA", tmp_path / "methodB"
    for d in (gt_dir, a_dir, b_dir):
        d.mkdir()
    arrays = {}
    for k in range(6):
        stem = f"img{k}"
        Image.fromarray(_mask(k)).save(gt_dir / f"{stem}.png")
        pa, pb = _pred(k, rng), _pred(k + 1, rng)
        arrays[stem] = (pa, pb)
        if k != 3:
            im = Image.fromarray(pa)
            if k == 4:
                im = im.resize((W // 2, H // 2), Image.Resampling.BILINEAR)
            im.save(a_dir / f"{stem}.png")
        Image.fromarray(pb).save(b_dir / f"{stem}.jpg", quality=95)
    Image.fromarray(_pred(9, rng)).save(a_dir / "stray.png")
    return {"gt": gt_dir, "a": a_dir, "b": b_dir, "arrays": arrays, "root": tmp_path}


def test_maps_mode_missing_extra_and_resize(maps_case: dict) -> None:
    run = evaluate_maps([maps_case["a"], maps_case["b"]], maps_case["gt"])
    a, b = run.methods
    assert (a.name, b.name) == ("methodA", "methodB")
    assert a.count == 5 and a.missing == ["img3"] and a.extra == ["stray"]
    assert a.resized == 1 and not a.failed
    assert b.count == 6 and not b.missing and not b.extra and b.resized == 0
    assert run.evaluated == 11

    # numbers equal a direct MetricSuite over the same (resized) arrays, in the same order
    suite = M.MetricSuite()
    for k in range(6):
        if k == 3:
            continue
        gt = read_gray(maps_case["gt"] / f"img{k}.png")
        pred = read_gray(maps_case["a"] / f"img{k}.png")
        if pred.shape != gt.shape:
            pred = np.asarray(Image.fromarray(pred).resize((W, H), Image.Resampling.BILINEAR))
        suite.step(pred, gt)
    ref = suite.get_results()["metrics"]
    for key, value in ref.items():
        assert a.metrics[key] == pytest.approx(value, abs=1e-12), key
    assert [row["name"] for row in a.per_image] == ["img0", "img1", "img2", "img4", "img5"]
    # method B reuses each mask's cached work (metrics.Truth) and still equals a fresh suite
    suite_b = M.MetricSuite()
    for k in range(6):
        suite_b.step(read_gray(maps_case["b"] / f"img{k}.jpg"),
                     read_gray(maps_case["gt"] / f"img{k}.png"))
    for key, value in suite_b.get_results()["metrics"].items():
        assert b.metrics[key] == pytest.approx(value, abs=1e-12), key


def test_maps_mode_unreadable_file_is_reported(maps_case: dict) -> None:
    (maps_case["a"] / "img0.png").write_bytes(b"not a png")
    errors = []
    run = evaluate_maps([maps_case["a"]], maps_case["gt"],
                        on_error=lambda m, s, r: errors.append((m, s)))
    assert run.methods[0].count == 4
    assert [s for s, _ in run.methods[0].failed] == ["img0"]
    assert errors == [("methodA", "img0")]


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_maps_mode_in_processes_equals_one_thread(maps_case: dict, method: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Several processes (forced even for 6 images) give the same numbers, rows, order and
    failure reports as one thread, with either start method (forkserver: what a process that
    has loaded TensorFlow/JAX gets)."""
    import multiprocessing as mp

    from basnet_cli.evaluate import maps as maps_module

    if method not in mp.get_all_start_methods():
        pytest.skip(f"no {method} start method on this platform")
    (maps_case["a"] / "img1.png").write_bytes(b"not a png")
    dirs = [maps_case["a"], maps_case["b"]]
    one = evaluate_maps(dirs, maps_case["gt"], workers=1)
    started: list[str] = []
    monkeypatch.setattr(maps_module, "MIN_IMAGES_PER_PROCESS", 1)
    monkeypatch.setattr(maps_module, "_start_method",
                        lambda: started.append(method) or mp.get_context(method))
    errors: list[tuple[str, str]] = []
    many = evaluate_maps(dirs, maps_case["gt"], workers=2,
                         on_error=lambda m, s, r: errors.append((m, s)))
    assert started == [method]  # the pool path ran
    assert errors == [("methodA", "img1")]
    for a, b in zip(one.methods, many.methods):
        assert a.per_image == b.per_image
        assert a.metrics == b.metrics
        assert a.failed == b.failed and a.resized == b.resized
        for key in a.curves:
            np.testing.assert_array_equal(a.curves[key], b.curves[key])


def test_small_runs_and_one_worker_stay_in_process(maps_case: dict,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from basnet_cli.evaluate import maps as maps_module

    def no_pool() -> None:
        raise AssertionError("a process pool was started")

    monkeypatch.setattr(maps_module, "_start_method", no_pool)
    assert evaluate_maps([maps_case["b"]], maps_case["gt"], workers=8).methods[0].count == 6
    monkeypatch.setattr(maps_module, "MIN_IMAGES_PER_PROCESS", 1)
    assert evaluate_maps([maps_case["b"]], maps_case["gt"], workers=1).methods[0].count == 6


def test_maps_mode_usage_errors(maps_case: dict, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvaluateUsageError, match="no map"):
        evaluate_maps([empty], maps_case["gt"])
    with pytest.raises(EvaluateUsageError, match="not a folder"):
        evaluate_maps([tmp_path / "nope"], maps_case["gt"])
    with pytest.raises(EvaluateUsageError, match="--curve"):
        evaluate_maps([maps_case["a"]], maps_case["gt"], curve="pixel")


def test_dataset_curve_option(maps_case: dict) -> None:
    img = evaluate_maps([maps_case["b"]], maps_case["gt"], curve="image").methods[0]
    ds = evaluate_maps([maps_case["b"]], maps_case["gt"], curve="dataset").methods[0]
    p, r = img.curves["precision"], img.curves["recall"]
    f = np.where(p * r == 0, 0, 1.3 * p * r / np.maximum(0.3 * p + r, 1e-300))
    assert ds.metrics["max_f"] == pytest.approx(f.max())
    assert ds.metrics["mae"] == img.metrics["mae"]


# ---------------------------------------------------------------------------------------------
# Model mode with a fake predictor (no TensorFlow)


def _fake_predictor(batch: np.ndarray) -> np.ndarray:
    """Brightness as saliency: a deterministic stand-in for the network."""
    assert batch.dtype == np.float32 and batch.shape[1:] == (64, 64, 3)
    return (batch.mean(axis=-1, keepdims=True) / 255.0).astype(np.float32)


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "TOY"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for k in range(5):
        m = _mask(k)
        photo = np.clip(m[..., None] * 0.7 + rng.normal(40, 20, (H, W, 3)), 0, 255)
        Image.fromarray(photo.astype(np.uint8)).save(root / "images" / f"p{k}.jpg")
        Image.fromarray(m).save(root / "masks" / f"p{k}.png")
    Image.fromarray(_mask(0)).save(root / "masks" / "orphan.png")
    return root


def test_model_mode_matches_maps_mode_on_saved_maps(dataset: Path, tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    run = evaluate_model(dataset, predictor=_fake_predictor, size=64, batch_size=2,
                         save_maps=maps, workers=2)
    res = run.methods[0]
    assert run.mode == "model" and run.dataset == "TOY" and run.size == 64
    assert res.count == 5 and res.extra == ["orphan"] and res.resized == 5
    saved = sorted(p.name for p in maps.glob("*.png"))
    assert saved == [f"p{k}.png" for k in range(5)]
    assert Image.open(maps / "p0.png").size == (W, H)
    again = evaluate_maps([maps], dataset / "masks").methods[0]
    for key, value in res.metrics.items():
        assert again.metrics[key] == pytest.approx(value, abs=1e-12), key


def test_model_mode_usage_errors(dataset: Path) -> None:
    with pytest.raises(EvaluateUsageError, match="multiple of 32"):
        evaluate_model(dataset, predictor=_fake_predictor, size=50)
    with pytest.raises(EvaluateUsageError):
        evaluate_model(dataset / "nothing-here", predictor=_fake_predictor, size=64)
    with pytest.raises(EvaluateUsageError, match="no-such-model"):
        evaluate_model(dataset, model="no-such-model", size=64)


# ---------------------------------------------------------------------------------------------
# Reports and plots


def _curve_pixels(path: Path, color: tuple[int, int, int]) -> int:
    arr = np.asarray(Image.open(path).convert("RGB")).astype(int)
    # inside the plot frame, above the legend (which sits in the lower left corner)
    box = arr[52:455, 82:770]
    return int((np.abs(box - np.array(color)).sum(axis=-1) < 40).sum())


def test_reports_exist_and_parse(maps_case: dict, tmp_path: Path) -> None:
    run = evaluate_maps([maps_case["a"], maps_case["b"]], maps_case["gt"])
    paths = write_reports(run, tmp_path / "report")
    assert {p.name for p in paths.values()} == {"metrics.json", "metrics.md", "per_image.csv",
                                                "pr_curve.png", "f_threshold.png"}
    data = json.loads(paths["json"].read_text())
    assert data["mode"] == "maps" and data["curve"] == "image"
    assert [m["name"] for m in data["methods"]] == ["methodA", "methodB"]
    a = data["methods"][0]
    assert a["images"] == 5 and a["missing_files"] == ["img3"] and a["extra_files"] == ["stray"]
    assert a["metrics"]["max_f"] == pytest.approx(run.methods[0].metrics["max_f"])
    assert len(a["curves"]["f"]) == 256 and len(a["curves"]["precision"]) == 256
    assert "conventions" in data and data["conventions"]["f_beta2"] == 0.3

    md = paths["markdown"].read_text()
    assert "| Method | Images | maxF |" in md and "| methodA | 5 |" in md
    assert ("- methodA: 1 masks without a map, 1 maps without a mask, "
            "1 maps resized to the GT size") in md
    # the CLI summary says the same, naming the first files
    assert method_notes("maps", run.methods[0], names=5) == [
        "1 masks without a map (img3)", "1 maps without a mask (stray)",
        "1 maps resized to the GT size"]

    with open(paths["per_image"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 11
    a_rows = [r for r in rows if r["method"] == "methodA"]
    f_values = [float(r["max_f"]) for r in a_rows]
    assert f_values == sorted(f_values)  # worst first
    assert {"mae", "max_f", "s_measure", "weighted_f", "relaxed_f"} <= set(rows[0])

    for key in ("pr_curve", "f_threshold"):
        with Image.open(paths[key]) as im:
            im.verify()
        with Image.open(paths[key]) as im:
            assert im.format == "PNG" and im.size == (800, 600)
        assert _curve_pixels(paths[key], PALETTE[0]) > 100, key  # method A's curve
        assert _curve_pixels(paths[key], PALETTE[1]) > 100, key  # method B's curve


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_maps_mode_table_and_json(maps_case: dict, tmp_path: Path) -> None:
    runner = CliRunner()
    report = tmp_path / "rep"
    result = runner.invoke(app, ["evaluate", "--pred", str(maps_case["a"]), "--pred",
                                 str(maps_case["b"]), "--gt", str(maps_case["gt"]),
                                 "--report", str(report), "-q"])
    assert result.exit_code == 0, result.output
    assert "maxF" in result.output and "methodA" in result.output
    assert "1 masks without a map" in result.output
    assert (report / "metrics.json").is_file()

    result = runner.invoke(app, ["evaluate", "--pred", str(maps_case["b"]), "--gt",
                                 str(maps_case["gt"]), "--json", "--no-report", "--curve",
                                 "dataset"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["curve"] == "dataset" and data["methods"][0]["images"] == 6
    assert "curves" not in data["methods"][0]


def test_cli_exit_codes(maps_case: dict, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["evaluate"]).exit_code == 2
    assert runner.invoke(app, ["evaluate", "--pred", str(maps_case["a"])]).exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["evaluate", "--pred", str(empty), "--gt", str(maps_case["gt"]),
                              "--no-report"])
    assert res.exit_code == 2
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "img0.png").write_bytes(b"junk")
    res = runner.invoke(app, ["evaluate", "--pred", str(broken), "--gt", str(maps_case["gt"]),
                              "--no-report", "-q"])
    assert res.exit_code == 1  # nothing could be evaluated
    res = runner.invoke(app, ["evaluate", "--pred", str(maps_case["a"]), "--gt",
                              str(maps_case["gt"]), "--curve", "pixel"])
    assert res.exit_code == 2 and "--curve must be one of image, dataset" in res.stderr
    res = runner.invoke(app, ["evaluate", "--data", str(tmp_path), "--gt", str(tmp_path)])
    assert res.exit_code == 2 and "not both" in res.stderr
    res = runner.invoke(app, ["evaluate", "--pred", str(maps_case["a"]), "--gt",
                              str(maps_case["gt"]), "--tta", "--no-report"])
    assert res.exit_code == 2 and "model mode" in " ".join(res.stderr.split())


def test_empty_plot_has_no_curve_pixels(tmp_path: Path) -> None:
    from basnet_cli.report import line_plot

    path = line_plot([], tmp_path / "empty.png", title="t", xlabel="x", ylabel="y")
    assert _curve_pixels(path, PALETTE[0]) == 0 and _curve_pixels(path, PALETTE[1]) == 0


def test_cli_prints_bracketed_names_literally(maps_case: dict, tmp_path: Path) -> None:
    """Folder and file names are user data: '[bold]' in a name is printed, not styled."""
    method = maps_case["root"] / "run[bold]v2"
    maps_case["a"].rename(method)
    (method / "img0.png").rename(method / "img0[red].png")  # now a map without a mask
    result = CliRunner().invoke(app, ["evaluate", "--pred", str(method), "--gt",
                                      str(maps_case["gt"]), "--no-report", "-q"])
    assert result.exit_code == 0, result.output
    assert "run[bold]v2" in result.output
    assert "img0[red]" in result.output


def test_mode_and_report_folder_are_decided_in_the_core(tmp_path: Path) -> None:
    from basnet_cli.evaluate import default_report_dir, evaluation_mode

    assert evaluation_mode(pred=["a"], gt="g", data=None, images=None, masks=None) == "maps"
    assert evaluation_mode(pred=None, gt=None, data=None, images="i", masks="m") == "model"
    for kwargs, message in [({}, "nothing to evaluate"), ({"pred": ["a"]}, "needs both"),
                            ({"gt": "g", "data": "d"}, "not both")]:
        args = {"pred": None, "gt": None, "data": None, "images": None, "masks": None, **kwargs}
        with pytest.raises(EvaluateUsageError, match=message):
            evaluation_mode(**args)
    weights = tmp_path / "runs" / "final.weights.h5"
    weights.parent.mkdir()
    weights.write_bytes(b"")
    assert default_report_dir("model", "DUTS TE", str(weights)) == weights.parent / "eval-DUTS_TE"
    assert default_report_dir("model", "ECSSD", "basnet-lite") == Path("eval-ECSSD-basnet-lite")
    assert default_report_dir("maps", "ECSSD", "basnet-lite") == Path("eval-ECSSD")


# ---------------------------------------------------------------------------------------------
# --shard K/N and --merge


def _shard_of(stem: str, n: int) -> int:
    from basnet_cli.inputs import shard_index

    return shard_index(stem, n)


def test_sharded_reports_merge_to_the_numbers_of_one_run(maps_case: dict, tmp_path: Path) -> None:
    runner = CliRunner()
    preds = ["--pred", str(maps_case["a"]), "--pred", str(maps_case["b"]),
             "--gt", str(maps_case["gt"])]
    (maps_case["a"] / "img5.png").write_bytes(b"junk")  # one unreadable map, in some shard
    whole = tmp_path / "whole"
    res = runner.invoke(app, ["evaluate", *preds, "--report", str(whole), "-q"])
    assert res.exit_code == 1, res.output  # the unreadable map
    stems = [f"img{k}" for k in range(6)]
    assert len({_shard_of(s, 2) for s in stems}) == 2  # both shards have images
    folders = []
    for k in range(2):
        folder = tmp_path / f"r{k}"
        res = runner.invoke(app, ["evaluate", *preds, "--shard", f"{k}/2", "--report",
                                  str(folder), "-q"])
        assert res.exit_code == (1 if _shard_of("img5", 2) == k else 0), res.output
        shard = json.loads((folder / "metrics.json").read_text())
        assert shard["shard"] == [k, 2]
        assert shard["methods"][1]["images"] == sum(_shard_of(s, 2) == k for s in stems)
        folders += ["--merge", str(folder)]
    merged = tmp_path / "merged"
    res = runner.invoke(app, ["evaluate", *folders, "--report", str(merged), "-q"])
    assert res.exit_code == 1, res.output  # still the one unreadable map
    one = json.loads((whole / "metrics.json").read_text())
    got = json.loads((merged / "metrics.json").read_text())
    assert got["merged_from"] == [str(tmp_path / "r0"), str(tmp_path / "r1")]
    assert got["gt_files"] == one["gt_files"] == 6
    for a, b in zip(one["methods"], got["methods"]):
        assert a["name"] == b["name"] and a["images"] == b["images"]
        for key in ("missing_files", "extra_files", "failed_files", "resized"):
            assert a[key] == b[key], key
        for key, value in a["metrics"].items():
            assert b["metrics"][key] == pytest.approx(value, abs=1e-12), key
        for key, curve in a["curves"].items():
            np.testing.assert_allclose(b["curves"][key], curve, rtol=0, atol=1e-12)
    rows = lambda folder: sorted((folder / "per_image.csv").read_text().splitlines()[1:])  # noqa: E731
    assert rows(merged) == rows(whole)


def test_merge_refuses_reports_that_do_not_belong_together(maps_case: dict,
                                                           tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["evaluate", "--pred", str(maps_case["b"]), "--gt", str(maps_case["gt"]), "-q"]
    for args, name in ((["--shard", "0/2"], "s0"), (["--shard", "1/2"], "s1"),
                       (["--shard", "0/3"], "t0"), ([], "whole"),
                       (["--shard", "1/2", "--curve", "dataset"], "d1")):
        assert runner.invoke(app, [*base, *args, "--report", str(tmp_path / name)]
                             ).exit_code == 0
    merge = lambda *names: runner.invoke(  # noqa: E731
        app, ["evaluate", "-q", "--no-report",
              *[a for n in names for a in ("--merge", str(tmp_path / n))]])
    cases = {("s0", "s0"): "given twice", ("s0", "t0"): "split the set differently",
             ("s0", "whole"): "not a --shard", ("s0", "d1"): "--curve",
             ("s0", "nope"): "not a folder"}
    for names, message in cases.items():
        res = merge(*names)
        assert res.exit_code == 2 and message in res.output, (names, res.output)
    res = merge("s0")  # a shard missing: the numbers are partial, and the exit code says so
    assert res.exit_code == 1 and "no report of shard 1 of 2" in res.output, res.output
    assert merge("s1", "s0").exit_code == 0
    res = runner.invoke(app, ["evaluate", "--merge", str(tmp_path / "s0"), "--pred",
                              str(maps_case["b"])])
    assert res.exit_code == 2


def test_model_mode_shards_partition_the_pairs(dataset: Path) -> None:
    runs = [evaluate_model(dataset, predictor=_fake_predictor, size=64, shard=(k, 2))
            for k in range(2)]
    whole = evaluate_model(dataset, predictor=_fake_predictor, size=64).methods[0]
    names = [[row["name"] for row in run.methods[0].per_image] for run in runs]
    assert sorted(names[0] + names[1]) == [row["name"] for row in whole.per_image]
    assert all(_shard_of(n, 2) == k for k in range(2) for n in names[k])
    assert sorted(runs[0].methods[0].extra + runs[1].methods[0].extra) == ["orphan"]
    assert [run.shard for run in runs] == [(0, 2), (1, 2)]

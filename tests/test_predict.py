"""`basnet predict`: inputs, outputs, resume, atomic writes, bad files, path safety, exit codes.

One tiny random-weight model (``basnet-tiny``, the session fixture ``weights`` of conftest) is
loaded once for the whole module; most tests call :func:`basnet_cli.predict.run` with that
predictor, a few go through the CLI.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from basnet_cli import images as imgs
from basnet_cli import inference as inf
from basnet_cli import inputs as ins
from basnet_cli import outputs as outs
from basnet_cli import predict as P
from basnet_cli import stream as st

SIZE = 32

# Keras' save_weights trips a NumPy 2 deprecation inside TensorFlow (not ours).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# ---------------------------------------------------------------------------------------------
# Fixtures.


@pytest.fixture(scope="module")
def predictor(weights: Path) -> inf.Predictor:
    pred, precision, device = inf.load_predictor(str(weights), precision="float32", device="cpu")
    assert (precision, device) == ("float32", "cpu")
    return pred


def _photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic photo: gradient background and a bright disc."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    base = np.stack([xx / w * 200, yy / h * 200, np.full_like(xx, 60.0)], -1)
    disc = (np.hypot(xx - w / 2, yy - h / 2) < min(w, h) / 3)[..., None]
    arr = np.where(disc, 230.0, base) + rng.normal(0, 5, (h, w, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def _save(path: Path, w: int = 40, h: int = 56, seed: int = 0, **params) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_photo(w, h, seed)).save(path, **params)
    return path


def _huge_png(path: Path, w: int = 100_000, h: int = 100_000) -> Path:
    """A PNG header claiming w x h pixels (a decompression bomb), only a few bytes long."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def _opts(inputs, out, **kw) -> P.PredictOptions:
    kw.setdefault("size", SIZE)
    kw.setdefault("batch_size", 4)
    kw.setdefault("workers", 2)
    return P.PredictOptions(inputs=[str(i) for i in inputs], out=str(out), **kw)


def _run(predictor, inputs, out, **kw) -> tuple[P.PredictSummary, list[outs.Failure]]:
    lines: list[outs.Failure] = []
    summary = P.run(_opts(inputs, out, **kw), predictor=predictor, on_failure=lines.append)
    return summary, lines


def _tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# Decoding (no model).


def test_decode_modes_to_rgb(tmp_path: Path) -> None:
    # RGBA: fully transparent pixels become white (composited on white, documented).
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2, :, :] = (10, 20, 30, 255)
    out = np.asarray(imgs.to_rgb(Image.fromarray(rgba, "RGBA")))
    assert (out[:2] == (10, 20, 30)).all() and (out[2:] == 255).all()
    # 16-bit grey: full scale maps to 255, not clipped white for everything above 255.
    g16 = Image.fromarray(np.array([[0, 32896, 65535]], np.uint16))
    assert g16.mode.startswith("I;16")
    assert np.asarray(imgs.to_rgb(g16))[0, :, 0].tolist() == [0, 128, 255]
    # Palette with a transparent index -> white there.
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0
    assert np.asarray(imgs.to_rgb(pal)).tolist() == [[[255, 255, 255], [200, 0, 0]]]
    # CMYK and grayscale.
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))
    assert tuple(np.asarray(imgs.to_rgb(cmyk))[0, 0]) == (255, 0, 0)
    assert imgs.to_rgb(Image.new("L", (3, 3), 7)).mode == "RGB"


def test_exif_orientation_and_draft(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = _save(tmp_path / "rot.jpg", w=40, h=56, exif=exif.tobytes())
    arr, size = imgs.load_for_model(path, SIZE)
    assert arr.shape == (SIZE, SIZE, 3) and arr.dtype == np.uint8
    assert size == (56, 40)  # displayed width x height
    rgb, size = imgs.load_rgb(path)
    assert rgb.size == (56, 40) == size
    big = _save(tmp_path / "big.jpg", w=640, h=480)
    drafted, size = imgs.load_rgb(big, draft_size=64)
    assert size == (640, 480) and drafted.size[0] < 640 and min(drafted.size) >= 64


@pytest.mark.parametrize("name, content, reason", [
    ("empty.jpg", b"", "empty file"),
    ("text.jpg", b"this is not an image\n", "not an image"),
])
def test_decode_errors(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(imgs.DecodeError, match=reason):
        imgs.load_for_model(path, SIZE)


def test_decode_truncated_and_bomb(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_photo(64, 64)).save(buf, "JPEG")
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(imgs.DecodeError, match="truncated"):
        imgs.load_for_model(trunc, SIZE)
    with pytest.raises(imgs.DecodeError, match="pixels"):
        imgs.open_image(_huge_png(tmp_path / "huge.png"))
    with pytest.raises(imgs.DecodeError, match="max-pixels 100"):
        imgs.open_image(_save(tmp_path / "small.png"), max_pixels=100)


def test_prepare_map_and_render() -> None:
    prob = np.linspace(0.2, 0.6, 16, dtype=np.float32).reshape(4, 4, 1)
    raw = imgs.prepare_map(prob, (4, 4))
    assert raw.min() == pytest.approx(0.2) and raw.max() == pytest.approx(0.6)
    norm = imgs.prepare_map(prob, (4, 4), normalize=True)
    assert norm.min() == 0.0 and norm.max() == pytest.approx(1.0)
    assert imgs.prepare_map(np.full((4, 4), 0.3), (4, 4), normalize=True).max() == 0.0
    full = imgs.prepare_map(prob, (7, 5))
    assert full.shape == (5, 7)
    photo = Image.new("RGB", (7, 5), (0, 0, 255))
    assert np.asarray(imgs.render("mask", full)).max() <= 153
    assert set(np.unique(imgs.render("binary", full, threshold=0.4))) <= {0, 255}
    cut = imgs.render("cutout", full, photo=photo)
    assert cut.mode == "RGBA" and cut.size == (7, 5)
    assert imgs.render("overlay", full, photo=photo).mode == "RGB"


# ---------------------------------------------------------------------------------------------
# Discovery, sharding, output planning, path safety.


def test_discover_files_folders_globs(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    for rel in ("a.jpg", "b.PNG", "sub/c.jpg", "sub/deep/d.webp", ".hidden.jpg", "notes.txt",
                ".cache/e.jpg"):
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    items, roots = ins.discover([str(src)])
    assert [i.rel for i in items] == ["a.jpg", "b.PNG", "sub/c.jpg", "sub/deep/d.webp"]
    assert roots == [src]
    items, _ = ins.discover([str(src)], recursive=False)
    assert [i.rel for i in items] == ["a.jpg", "b.PNG"]
    items, roots = ins.discover([str(src / "sub" / "*.jpg"), str(src / "a.jpg")])
    assert [i.rel for i in items] == ["c.jpg", "a.jpg"] and roots == [src / "sub", src]
    items, _ = ins.discover([str(src / "**" / "*.jpg")])
    assert [i.rel for i in items] == ["a.jpg", "sub/c.jpg"]
    items, _ = ins.discover([str(src / "notes.txt")])  # named files are always tried
    assert [i.rel for i in items] == ["notes.txt"]
    items, _ = ins.discover([str(src), str(src / "a.jpg")])  # the same file once
    assert len(items) == 4
    with pytest.raises(inf.InferenceUsageError, match="does not exist"):
        ins.discover([str(tmp_path / "missing")])


def test_shards_partition_stably() -> None:
    items = [ins.InputItem(Path(f"/x/{i}.jpg"), f"d{i % 7}/{i}.jpg", Path("/x"))
             for i in range(300)]
    shards = [ins.in_shard(items, (k, 3)) for k in range(3)]
    rels = [{i.rel for i in s} for s in shards]
    assert sum(len(r) for r in rels) == 300 and set().union(*rels) == {i.rel for i in items}
    assert all(len(r) > 60 for r in rels)  # roughly balanced
    assert ins.in_shard(reversed(items), (1, 3)) == list(reversed(shards[1]))  # order-free
    assert ins.shard_index("d1/1.jpg", 1000) == ins.shard_index("d1/1.jpg", 1000)
    assert ins.parse_shard("2/4") == (2, 4) and ins.parse_shard(None) is None
    for bad in ("4/4", "-1/4", "1", "a/b", "0/0"):
        with pytest.raises(inf.InferenceUsageError):
            ins.parse_shard(bad)


def test_plan_outputs_mirror_and_collisions(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    items = [ins.InputItem(Path("/in/a.jpg"), "a.jpg", Path("/in")),
             ins.InputItem(Path("/in/a.png"), "a.png", Path("/in")),
             ins.InputItem(Path("/in/s/b.jpg"), "s/b.jpg", Path("/in")),
             ins.InputItem(Path("/other/s/b.jpg"), "s/b.jpg", Path("/other"))]
    jobs, failures = outs.plan_jobs(items, out, ["mask"])
    assert [j.outputs["mask"].relative_to(out).as_posix() for j in jobs] == [
        "a.jpg.png", "a.png.png", "s/b.jpg.png"]
    assert len(failures) == 1 and "already the output of /in/s/b.jpg" in failures[0].reason
    jobs, _ = outs.plan_jobs(items[2:3], out, ["mask", "cutout"])
    assert {k: v.relative_to(out).as_posix() for k, v in jobs[0].outputs.items()} == {
        "mask": "mask/s/b.png", "cutout": "cutout/s/b.png"}


def test_output_paths_never_escape(tmp_path: Path) -> None:
    out = (tmp_path / "out").resolve()
    outside = tmp_path / "outside"
    outside.mkdir()
    out.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    for parts in (["..", "x.png"], ["a", "..", "..", "x.png"], ["/etc", "x.png"], ["a/b"],
                  ["link", "x.png"], [""]):
        with pytest.raises(outs.UnsafePathError):
            outs.safe_output_path(out, parts)
    assert outs.safe_output_path(out, ["a", "x.png"]) == out / "a" / "x.png"
    # A crafted relative path from an input item is refused, not written.
    jobs, failures = outs.plan_jobs([ins.InputItem(Path("/in/x.jpg"), "../x.jpg", Path("/in"))],
                                 out, ["mask"])
    assert not jobs and "refused" in failures[0].reason


def test_symlinked_subfolder_in_out_is_refused(tmp_path: Path, predictor) -> None:
    src = tmp_path / "in"
    _save(src / "ok.jpg")
    _save(src / "sub" / "x.jpg")
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(outside, target_is_directory=True)
    summary, lines = _run(predictor, [src], out)
    assert summary.processed == 1 and summary.failed == 1
    assert "x.jpg" in lines[0].path and "symlink" in lines[0].reason
    assert list(outside.iterdir()) == []


def test_out_inside_input_refused_unless_allowed(tmp_path: Path, predictor) -> None:
    src = tmp_path / "in"
    _save(src / "a.jpg")
    _save(src / "b.png", w=33, h=70)
    with pytest.raises(P.PredictUsageError, match="inside the input folder"):
        _run(predictor, [src], src / "masks")
    with pytest.raises(P.PredictUsageError, match="inside the input folder"):
        _run(predictor, [src], src)
    summary, _ = _run(predictor, [src], src / "masks", allow_inside_input=True)
    assert summary.processed == 2 and (src / "masks" / "a.png").exists()
    # The outputs are not picked up as inputs on the next run.
    summary, _ = _run(predictor, [src], src / "masks", allow_inside_input=True)
    assert (summary.found, summary.skipped, summary.processed) == (2, 2, 0)
    # Writing next to the inputs never replaces an input with its own mask.
    side = tmp_path / "side"
    _save(side / "a.jpg")
    _save(side / "b.png", w=33, h=70)
    before = (side / "b.png").read_bytes()
    summary, lines = _run(predictor, [side], side, allow_inside_input=True, overwrite=True)
    assert (side / "b.png").read_bytes() == before
    assert (summary.processed, summary.failed) == (1, 1)
    assert "overwrite the input" in lines[0].reason and (side / "a.png").exists()


# ---------------------------------------------------------------------------------------------
# End to end through run() with the shared tiny model.


def _formats(root: Path) -> dict[str, tuple[int, int]]:
    """Write one file per input kind; returns rel path -> expected (width, height)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(root / "rgb.jpg", 40, 56)
    _save(root / "rgb.png", 33, 70, seed=1)
    _save(root / "rgb.bmp", 41, 37, seed=2)
    _save(root / "rgb.webp", 50, 45, seed=3)
    _save(root / "sub" / "rgb.tiff", 35, 48, seed=4)
    _save(root / "sub" / "rot.jpg", 40, 56, exif=exif.tobytes())
    Image.fromarray(_photo(44, 39)[..., 0]).save(root / "sub" / "gray.png")
    Image.fromarray(_photo(36, 52)).convert("P", palette=Image.Palette.ADAPTIVE).save(
        root / "sub" / "palette.gif")
    (root / "sub" / "deep").mkdir(parents=True)
    rgba = np.dstack([_photo(47, 34), np.full((34, 47), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "sub" / "deep" / "rgba.png")
    Image.fromarray(_photo(38, 42)).convert("CMYK").save(root / "sub" / "deep" / "cmyk.jpg")
    Image.fromarray(_photo(45, 33)[..., 1].astype(np.uint16) * 257).save(
        root / "sub" / "deep" / "g16.png")
    return {"rgb.jpg.png": (40, 56), "rgb.png.png": (33, 70), "rgb.bmp.png": (41, 37),
            "rgb.webp.png": (50, 45), "sub/rgb.png": (35, 48), "sub/rot.png": (56, 40),
            "sub/gray.png": (44, 39), "sub/palette.png": (36, 52),
            "sub/deep/rgba.png": (47, 34), "sub/deep/cmyk.png": (38, 42),
            "sub/deep/g16.png": (45, 33)}


@pytest.fixture(scope="module")
def formats_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("formats")
    return root, _formats(root)


def test_every_input_kind_gives_a_mask_of_its_size(tmp_path: Path, predictor, formats_dir
                                                    ) -> None:
    src, expected = formats_dir
    out = tmp_path / "out"
    summary, lines = _run(predictor, [src], out)
    assert not lines and summary.exit_code == 0
    assert (summary.processed, summary.skipped, summary.failed) == (len(expected), 0, 0)
    assert summary.files_written == len(expected)
    written = {p.relative_to(out).as_posix(): p for p in out.rglob("*.png")}
    assert set(written) == set(expected)
    for rel, size in expected.items():
        with Image.open(written[rel]) as im:
            assert im.mode == "L" and im.size == size, rel
    assert not _tmp_files(out)


def test_no_recursive_and_glob_and_file_inputs(tmp_path: Path, predictor, formats_dir) -> None:
    src, _ = formats_dir
    summary, _ = _run(predictor, [src], tmp_path / "flat", recursive=False)
    assert summary.processed == 4
    summary, _ = _run(predictor, [src / "sub" / "*.png", src / "rgb.bmp"], tmp_path / "g")
    assert summary.processed == 2
    assert {p.name for p in (tmp_path / "g").iterdir()} == {"gray.png", "rgb.png"}


def test_output_kinds(tmp_path: Path, predictor) -> None:
    src = tmp_path / "in"
    _save(src / "p.jpg", 40, 56)
    _save(src / "q.png", 33, 70)
    out = tmp_path / "out"
    summary, _ = _run(predictor, [src], out, kinds=["mask", "binary", "cutout", "overlay"],
                      threshold=0.5)
    assert summary.processed == 2 and summary.files_written == 8
    for stem, size in (("p", (40, 56)), ("q", (33, 70))):
        mask = Image.open(out / "mask" / f"{stem}.png")
        binary = Image.open(out / "binary" / f"{stem}.png")
        cutout = Image.open(out / "cutout" / f"{stem}.png")
        overlay = Image.open(out / "overlay" / f"{stem}.jpg")
        assert (mask.mode, binary.mode, cutout.mode, overlay.mode) == ("L", "L", "RGBA", "RGB")
        assert mask.size == binary.size == cutout.size == overlay.size == size
        m = np.asarray(mask)
        assert set(np.unique(binary)) <= {0, 255}
        assert (np.asarray(binary) == np.where(m >= 128, 255, 0)).mean() > 0.99
        assert np.array_equal(np.asarray(cutout)[..., 3], m)
        photo = np.asarray(Image.open(src / f"{stem}.{'jpg' if stem == 'p' else 'png'}"))
        assert np.array_equal(np.asarray(cutout)[..., :3], photo)
    assert overlay.format == "JPEG"
    # Raw probability vs the official min-max normalisation (a SIZE x SIZE photo: no resize).
    _save(tmp_path / "n" / "s.png", SIZE, SIZE)
    _run(predictor, [tmp_path / "n"], tmp_path / "raw")
    _run(predictor, [tmp_path / "n"], tmp_path / "norm", normalize=True)
    raw = np.asarray(Image.open(tmp_path / "raw" / "s.png")).astype(np.float32)
    norm = np.asarray(Image.open(tmp_path / "norm" / "s.png")).astype(np.float32)
    assert (norm.min(), norm.max()) == (0, 255) and raw.max() - raw.min() < 255
    expected = (raw - raw.min()) / (raw.max() - raw.min()) * 255
    assert np.abs(norm - expected).max() <= 255 / (raw.max() - raw.min()) + 1


def test_predictor_matches_model_and_batches(predictor) -> None:
    x = np.stack([_photo(SIZE, SIZE, s) for s in range(3)]).astype(np.float32)
    full = predictor(x)
    assert full.shape == (3, SIZE, SIZE, 1) and full.dtype == np.float32
    assert ((full >= 0) & (full <= 1)).all()
    np.testing.assert_allclose(predictor(x[1:2]), full[1:2], atol=1e-5)


def test_resume_overwrite_and_atomic_writes(tmp_path: Path, predictor, monkeypatch) -> None:
    src = tmp_path / "in"
    for i in range(5):
        _save(src / f"{i}.jpg", 40 + i, 56, seed=i)
    out = tmp_path / "out"
    s1, _ = _run(predictor, [src], out)
    assert (s1.processed, s1.skipped) == (5, 0)
    stamp = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "3.png").unlink()  # as if the first run had been interrupted
    s2, _ = _run(predictor, [src], out)
    assert (s2.processed, s2.skipped) == (1, 4)
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items() if p.name != "3.png")
    s3, _ = _run(predictor, [src], out, overwrite=True)
    assert (s3.processed, s3.skipped) == (5, 0)
    assert not _tmp_files(out)

    # A write that fails half-way leaves neither a temporary file nor a changed output.
    before = (out / "0.png").read_bytes()
    real_save = Image.Image.save

    def broken_save(self, fp, *args, **kwargs):
        if hasattr(fp, "write"):
            fp.write(b"partial")
            raise OSError("disk full")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", broken_save)
    s4, lines = _run(predictor, [src / "0.jpg"], out, overwrite=True)
    assert s4.failed == 1 and "disk full" in lines[0].reason and "0.jpg" in lines[0].path
    assert (out / "0.png").read_bytes() == before
    assert not _tmp_files(out)


def test_bad_files_are_reported_and_the_run_continues(tmp_path: Path, predictor) -> None:
    src = tmp_path / "in"
    _save(src / "good1.jpg")
    _save(src / "sub" / "good2.png", 33, 70)
    buf = io.BytesIO()
    Image.fromarray(_photo(64, 64)).save(buf, "JPEG")
    (src / "truncated.jpg").write_bytes(buf.getvalue()[:300])
    (src / "zero.jpg").write_bytes(b"")
    (src / "text.jpg").write_text("hello, I am not a JPEG\n")
    _huge_png(src / "huge.png")
    _save(src / "big.png", 200, 150)
    out = tmp_path / "out"
    summary, lines = _run(predictor, [src], out, max_pixels=20_000)
    assert (summary.processed, summary.failed, summary.exit_code) == (2, 5, 1)
    reasons = {Path(f.path).name: f.reason for f in lines}
    assert set(reasons) == {"truncated.jpg", "zero.jpg", "text.jpg", "huge.png", "big.png"}
    assert "truncated" in reasons["truncated.jpg"]
    assert "empty" in reasons["zero.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert "max-pixels" in reasons["huge.png"] and "max-pixels" in reasons["big.png"]
    assert all("\n" not in f.line() for f in lines)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "good1.png", "sub/good2.png"]
    # The default limit (Pillow's) refuses the 10-gigapixel header; 0 lifts the limit.
    summary, lines = _run(predictor, [src / "huge.png", src / "big.png"], tmp_path / "o2")
    assert (summary.processed, summary.failed) == (1, 1) and "max-pixels" in lines[0].reason
    summary, _ = _run(predictor, [src / "big.png"], tmp_path / "o3", max_pixels=0)
    assert summary.processed == 1


def test_model_loads_lazily_and_progress_counts_everything(tmp_path: Path, weights,
                                                          monkeypatch) -> None:
    src = tmp_path / "in"
    _save(src / "a.jpg")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded when no image decodes")

    class Progress:
        total = advanced = stopped = 0

        def start(self, total: int) -> None:
            self.total = total

        def advance(self, n: int) -> None:
            self.advanced += n

        def stop(self) -> None:
            self.stopped += 1

    out = tmp_path / "out"
    out.mkdir()
    Image.new("L", (8, 8)).save(out / "a.png")  # a finished output of an earlier run
    monkeypatch.setattr(P, "load_predictor", no_model)
    progress = Progress()
    summary = P.run(_opts([src], out, model=str(weights), device="cpu"), progress=progress)
    assert (summary.processed, summary.skipped, summary.failed) == (0, 1, 1)
    assert (progress.total, progress.advanced, progress.stopped) == (2, 2, 1)
    assert summary.load_s == 0.0 and summary.to_dict()["exit_code"] == 1


def test_shard_runs_cover_everything_once(tmp_path: Path, predictor) -> None:
    src = tmp_path / "in"
    for i in range(9):
        _save(src / f"d{i % 2}" / f"{i}.png", 33, 40, seed=i)
    out = tmp_path / "out"
    seen: list[str] = []
    for k in range(3):
        before = set(out.rglob("*.png")) if out.exists() else set()
        summary, _ = _run(predictor, [src], out, shard=(k, 3))
        new = set(out.rglob("*.png")) - before
        assert summary.processed == len(new) == summary.in_shard and summary.found == 9
        seen += [p.relative_to(out).as_posix() for p in new]
    assert sorted(seen) == sorted(f"d{i % 2}/{i}.png" for i in range(9))
    again, _ = _run(predictor, [src], out, shard=(1, 3))
    assert again.processed == 0 and again.skipped == again.in_shard


def test_measure_pipeline(tmp_path: Path, formats_dir) -> None:
    src, expected = formats_dir
    paths = [p for p in sorted(src.rglob("*")) if p.is_file()]
    stats = st.measure_pipeline(paths, size=SIZE, batch_size=4, workers=2,
                               kinds=("mask", "cutout"), out_dir=tmp_path / "bench")
    assert stats["images"] == len(expected) and stats["files"] == 2 * len(expected)
    assert stats["decode_images_per_s"] > 0 and stats["encode_images_per_s"] > 0


# ---------------------------------------------------------------------------------------------
# The command line: exit codes, --json, messages.


@pytest.fixture()
def cli(monkeypatch, predictor):
    """Invoke ``basnet`` in-process; the model loader returns the shared tiny predictor."""
    from typer.testing import CliRunner

    from basnet_cli.cli import app

    monkeypatch.setattr(P, "load_predictor",
                        lambda spec, **kw: (predictor, "float32", "cpu"))
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, ["predict", *map(str, args)])

    return invoke


def test_cli_exit_codes_and_json(tmp_path: Path, cli, weights) -> None:
    src = tmp_path / "in"
    _save(src / "a.jpg")
    _save(src / "b.png", 33, 70)
    m = str(weights)
    ok = cli(src, "--out", tmp_path / "o", "-m", m, "-s", SIZE, "--json")
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert (data["processed"], data["failed"], data["exit_code"]) == (2, 0, 0)
    assert data["kinds"] == ["mask"] and data["size"] == SIZE
    assert data["tta"] is False and not data["model"].endswith("mirror TTA")
    flip = cli(src, "--out", tmp_path / "o", "-m", m, "-s", SIZE, "--json", "--tta",
               "--overwrite")
    assert flip.exit_code == 0, flip.output
    flipped = json.loads(flip.stdout)
    assert flipped["tta"] is True and flipped["model"].endswith("+ mirror TTA")
    assert flipped["processed"] == 2

    (src / "bad.jpg").write_text("nope")
    res = cli(src, "--out", tmp_path / "o", "-m", m, "-s", SIZE, "--kind", "mask")
    assert res.exit_code == 1
    assert "2 skipped, 1 failed" in res.stdout
    assert res.stderr.count("bad.jpg") == 1 and "not an image" in res.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "file").write_text("x")
    usage = {
        "no inputs": cli(empty, "--out", tmp_path / "o2", "-m", m),
        "missing input": cli(tmp_path / "nope", "--out", tmp_path / "o2", "-m", m),
        "unknown model": cli(src, "--out", tmp_path / "o2", "-m", "no-such-model"),
        "out is a file": cli(src, "--out", tmp_path / "file", "-m", m),
        "unwritable out": cli(src, "--out", tmp_path / "file" / "sub", "-m", m),
        "bad size": cli(src, "--out", tmp_path / "o2", "-m", m, "-s", 100),
        "bad kind": cli(src, "--out", tmp_path / "o2", "-m", m, "-k", "mask,sparkles"),
        "bad shard": cli(src, "--out", tmp_path / "o2", "-m", m, "--shard", "3/3"),
        "inside input": cli(src, "--out", src / "masks", "-m", m),
        "bad precision": cli(src, "--out", tmp_path / "o2", "-m", m, "--precision", "float64"),
        "bad device": cli(src, "--out", tmp_path / "o2", "-m", m, "--device", "tpu"),
    }
    err = {}
    for what, res in usage.items():
        assert res.exit_code == 2, (what, res.output)
        err[what] = " ".join(res.stderr.split())  # Rich may wrap long messages
        assert err[what].startswith("error:"), what
    assert "no input images" in err["no inputs"]
    assert "no-such-model" in err["unknown model"]
    assert "not writable" in err["unwritable out"]
    assert "--allow-inside-input" in err["inside input"]
    assert "--precision must be one of auto, float32, bfloat16, float16" in err["bad precision"]
    assert "--device must be one of auto, cpu, gpu" in err["bad device"]
    assert not (tmp_path / "o2").exists()


def test_cli_default_preset_without_weights(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from basnet_cli.cli import app

    monkeypatch.setenv("BASNET_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    _save(tmp_path / "in" / "a.jpg")
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "in"), "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 2
    err = " ".join(res.stderr.split())
    assert "basnet-mobile" in err and "no bundled weights" in err


def test_cli_end_to_end_real_loader(tmp_path: Path, weights) -> None:
    """One run through the real model loader and the text summary (no monkeypatching)."""
    from typer.testing import CliRunner

    from basnet_cli.cli import app

    _save(tmp_path / "in" / "x.webp", 50, 45)
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "in"), "-o", str(tmp_path / "o"),
                                   "-m", str(weights), "-s", str(SIZE), "--precision",
                                   "float32", "--device", "cpu", "-k", "mask,overlay"])
    assert res.exit_code == 0, res.output
    assert "1 processed, 0 skipped, 0 failed" in res.stdout
    assert Image.open(tmp_path / "o" / "overlay" / "x.jpg").size == (50, 45)


def test_cli_help_explains_options() -> None:
    from typer.testing import CliRunner

    from basnet_cli.cli import app

    res = CliRunner().invoke(app, ["predict", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for needle in ("--normalize", "min-max", "--shard", "--max-pixels", "--kind",
                   "--allow-inside-input", "--precision", "--device", "Exit codes"):
        assert needle in text, needle


def test_tf_data_pipeline_survives_errors_in_any_position(tmp_path: Path) -> None:
    paths = []
    for i in range(7):
        p = tmp_path / f"{i}.jpg"
        if i % 3 == 0:
            p.write_bytes(b"garbage")
        else:
            _save(p, 40, 30 + i, seed=i)
        paths.append(p)
    errors: list[tuple[int, str]] = []
    ds = st.decode_dataset(paths, size=SIZE, batch_size=2, max_pixels=None, draft=True,
                          workers=2, on_error=lambda i, r: errors.append((i, r)))
    got = {}
    for idx, images, hw in ds:
        assert images.dtype.name == "uint8" and tuple(images.shape[1:]) == (SIZE, SIZE, 3)
        for i, s in zip(idx.numpy(), hw.numpy()):
            got[int(i)] = tuple(int(v) for v in s)
    assert sorted(i for i, _ in errors) == [0, 3, 6]
    assert got == {i: (30 + i, 40) for i in (1, 2, 4, 5)}
    assert os.path.exists(paths[0])


@pytest.mark.slow
def test_keras_predictor_splits_batches_across_replicas(weights: Path) -> None:
    """tf.distribute path (several GPUs) checked with two logical CPU devices, in a subprocess
    because logical devices must be configured before TensorFlow starts."""
    import subprocess
    import sys

    code = f"""
import numpy as np
from basnet_cli.runtime import import_tf
tf = import_tf()
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from basnet_cli.inference import KerasPredictor
from basnet_cli.model.io import load_inference_model, resolve
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = load_inference_model(resolve({str(weights)!r}))
single, multi = KerasPredictor(model), KerasPredictor(model, strategy=strategy)
x = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
assert multi.strategy.num_replicas_in_sync == 2
for batch in (x, x[:1]):
    a, b = single(batch), multi(batch)
    assert a.shape == b.shape == (len(batch), 32, 32, 1), (a.shape, b.shape)
    assert np.abs(a - b).max() < 1e-5
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-2000:]


def test_a_fifo_or_broken_link_named_directly_is_an_input_that_fails(tmp_path: Path,
                                                                      predictor) -> None:
    (tmp_path / "in").mkdir()
    fifo, link = tmp_path / "in" / "pipe.jpg", tmp_path / "in" / "gone.png"
    os.mkfifo(fifo)
    link.symlink_to(tmp_path / "missing.png")
    items, _ = ins.discover([str(fifo), str(link)])
    assert [i.path for i in items] == [fifo, link]
    summary, lines = _run(predictor, [fifo, link], tmp_path / "out")
    assert (summary.processed, summary.failed) == (0, 2)
    reasons = sorted(f.reason for f in lines)
    assert "broken symbolic link" in reasons[0] and "FIFO" in reasons[1]

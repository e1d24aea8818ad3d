"""The run folder of ``basnet train``: where it goes, what it holds, and how it is written.

Files are written atomically (a temporary name, then ``os.replace``), so a run killed at any
moment leaves the previous complete version of each.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from basnet_cli.train.options import TrainOptions

LOG_FIELDS = ["epoch", "step", "loss", "mae", "maxf", "lr", "images_per_s"]
# The sub-folder of the weights kept every --keep-every steps.
KEPT_DIR = "steps"


@dataclass
class RunState:
    """What the trainer reports to its caller (and the progress display)."""

    run_dir: Path
    batch_size: int = 8
    train_size: int = 0
    val_size: int = 0
    steps_per_epoch: int = 0
    total_steps: int = 0
    global_step: int = 0
    epoch: int = 0
    loss: float = float("nan")
    images_per_s: float = 0.0
    best_mae: float = float("inf")
    best_maxf: float = 0.0
    best_epoch: int = -1
    precision: str = "float32"
    stopped: str | None = None  # "signal" | "nan" | None
    stop_signal: str | None = None  # "SIGINT" / "SIGTERM" when stopped by a signal
    history: list[dict] = field(default_factory=list)
    unmatched: str = ""
    bad_pairs: list[dict] = field(default_factory=list)  # skipped: unreadable, corrupt
    check_done: int = 0
    check_total: int = 0
    resumed_from_step: int | None = None
    already_done: bool = False  # resumed a run that had already reached its last step


def next_run_dir(base: Path = Path("runs")) -> Path:
    """``runs/train-1``, ``runs/train-2``, ... (first free number)."""
    n = 1
    while (base / f"train-{n}").exists():
        n += 1
    return base / f"train-{n}"


def create_run_dir(run_dir: Path, *, numbered: bool) -> tuple[Path, list[Path]]:
    """Create ``run_dir`` and its missing parents; returns the folder (a ``numbered`` one,
    ``runs/train-N``, moves on to the next free N if another run took it meanwhile) and the
    folders this call created, deepest first (for :func:`remove_unused`)."""
    while True:
        created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            run_dir.mkdir(exist_ok=not numbered)
        except FileExistsError:
            run_dir = next_run_dir(run_dir.parent)
            continue
        return run_dir, created


def remove_unused(run_dir: Path, created: list[Path]) -> None:
    """Delete ``run_dir`` when this run created it (it is in ``created``) and it holds nothing
    but a config (the run never trained), then the parents in ``created`` left empty."""
    if run_dir not in created:
        return
    try:
        names = {p.name for p in run_dir.iterdir()}
    except OSError:
        return
    if names <= {"config.json"}:
        for name in names:
            (run_dir / name).unlink(missing_ok=True)
        for folder in created:  # run_dir first, then its parents
            try:
                folder.rmdir()
            except OSError:  # not empty, or not ours to remove
                return


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_model_atomic(model, path: Path) -> None:
    """The model with its optimizer state (``last.keras``, what ``--resume`` loads)."""
    tmp = path.with_name(f"{path.stem}-tmp{path.suffix}")
    model.save(tmp)
    os.replace(tmp, path)


def save_weights_atomic(model, path: Path) -> None:
    """The model's weights alone.  A compiled model's ``save_weights`` also writes the optimizer
    state (with Adam three times the size); the state for ``--resume`` lives in
    ``last.keras``."""
    from basnet_cli.model.convert import save_weights_atomic as save

    bare = type(model).from_config(model.get_config())  # uncompiled (clone_model compiles)
    bare.set_weights(model.get_weights())
    save(bare, path)


def write_config(state: RunState, opts: TrainOptions, preset: dict | None) -> None:
    """``config.json``: every option (what ``--resume`` reads back), the preset, the data."""
    cfg = {"options": asdict(opts), "preset": preset,
           "train_size": state.train_size, "val_size": state.val_size,
           "steps_per_epoch": state.steps_per_epoch, "total_steps": state.total_steps,
           "precision": state.precision, "keras_backend": os.environ.get("KERAS_BACKEND"),
           "unmatched": state.unmatched, "bad_pairs": state.bad_pairs}
    atomic_write_text(state.run_dir / "config.json", json.dumps(cfg, indent=2))


def update_config(run_dir: Path, config: dict, opts: TrainOptions, total_steps: int) -> None:
    """Record the options a ``--resume`` changed in ``config.json``, so that the next
    ``--resume`` goes on with them."""
    config["options"] = asdict(opts)
    config["total_steps"] = total_steps
    atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2))


def write_state(state: RunState) -> None:
    """``state.json``: the step, the epoch and the best validation metrics so far."""
    best = state.best_epoch >= 0
    atomic_write_text(state.run_dir / "state.json", json.dumps({
        "global_step": state.global_step, "epoch": state.epoch,
        "best_mae": state.best_mae if best else None,
        "best_maxf": state.best_maxf if best else None,
        "best_epoch": state.best_epoch if best else None}, indent=2))


def read_state(state: RunState) -> None:
    """The best metrics of a resumed run's ``state.json`` into ``state``, and its log rows."""
    state.history = read_log(state.run_dir / "log.csv")
    path = state.run_dir / "state.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("best_epoch") is not None:
            state.best_mae = float(saved["best_mae"])
            state.best_maxf = float(saved["best_maxf"])
            state.best_epoch = int(saved["best_epoch"])


def append_log(run_dir: Path, row: dict) -> None:
    """One epoch's row of ``log.csv`` (the header first in a new file)."""
    path = run_dir / "log.csv"
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def read_log(path: Path) -> list[dict]:
    """The per-epoch rows of log.csv (earlier legs of a resumed run), numbers as numbers."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict = {}
            for key, value in raw.items():
                if value in (None, ""):
                    continue
                try:
                    row[key] = int(value) if key in ("epoch", "step") else float(value)
                except ValueError:
                    row[key] = value
            rows.append(row)
    return rows


def write_summary(state: RunState, batch_size: int, elapsed: float) -> dict:
    """``summary.json`` (and ``state.json``) at the end of a run; returns the summary."""
    st = state
    summary = {
        "run_dir": str(st.run_dir), "stopped": st.stopped,
        "global_step": st.global_step, "total_steps": st.total_steps,
        "epochs_done": st.global_step / st.steps_per_epoch if st.steps_per_epoch else 0,
        "images_seen": st.global_step * batch_size,
        "train_size": st.train_size, "val_size": st.val_size,
        "bad_pairs": st.bad_pairs,
        "precision": st.precision, "elapsed_s": round(elapsed, 1),
        "images_per_s": round(st.images_per_s, 3),
        "best": {"mae": st.best_mae if math.isfinite(st.best_mae) else None,
                 "maxf": st.best_maxf if st.best_epoch >= 0 else None,
                 "epoch": st.best_epoch if st.best_epoch >= 0 else None},
        "resumed_from_step": st.resumed_from_step,
        "history": st.history,
    }
    write_state(st)
    atomic_write_text(st.run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary

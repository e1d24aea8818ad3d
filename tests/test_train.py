"""`basnet train` (:mod:`basnet_cli.train.trainer`, :mod:`~basnet_cli.train.prepare`): unmatched
and strict data, the run folder of a real run, resume after kill -9, signals, strategies, NaN,
backends and encoder weights."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from basnet_cli.data import AugmentConfig, DatasetError, find_pairs
from basnet_cli.train import NonFiniteLoss, RunState, Trainer, TrainError, TrainOptions
from tests.conftest import FAST_XLA, write_dataset

TINY_OPTS = {"model": "basnet-tiny", "resize": 72, "crop": 64, "batch_size": 4,
             "precision": "float32", "log_every": 1000}


def test_unmatched_files_are_reported_and_strict_fails(tmp_path):
    root = write_dataset(tmp_path / "d", 4)
    Image.new("RGB", (8, 8)).save(root / "SYN-Image" / "lonely.jpg")
    Image.new("L", (8, 8)).save(root / "SYN-Mask" / "orphan.png")
    scan = find_pairs(root)
    assert len(scan.pairs) == 4 and scan.unmatched == 2
    text = scan.describe_unmatched()
    assert "lonely.jpg" in text and "orphan.png" in text
    opts = TrainOptions(data=str(root), out=str(tmp_path / "run"), strict=True, steps=1,
                        **TINY_OPTS)
    with pytest.raises(DatasetError, match="unmatched"):
        Trainer(opts).run()


def test_shuffle_seed_changes_the_order_but_not_the_validation_split(synth_dataset, tmp_path):
    from basnet_cli.train.prepare import load_pairs, train_data

    base = TrainOptions(data=str(synth_dataset), val_split=0.25, seed=2, **TINY_OPTS)
    same = TrainOptions(data=str(synth_dataset), val_split=0.25, seed=2, shuffle_seed=2,
                        **TINY_OPTS)
    other = TrainOptions(data=str(synth_dataset), val_split=0.25, seed=2, shuffle_seed=9,
                         **TINY_OPTS)
    assert (base.data_seed(), other.data_seed()) == (2, 9)
    splits = [load_pairs(o, RunState(run_dir=tmp_path), print) for o in (base, same, other)]
    assert splits[0] == splits[1] == splits[2]  # the hold-out stays put
    train_pairs = splits[0][0]
    aug = AugmentConfig(72, 64, True)

    def first_batch(opts):
        x, _ = next(iter(train_data(train_pairs, opts, aug, epoch=0, skip=0, strategy=None)))
        return np.asarray(x)

    np.testing.assert_array_equal(first_batch(base), first_batch(same))
    assert not np.array_equal(first_batch(base), first_batch(other))


# Most training tests run every tf.function eagerly (tf.config.run_functions_eagerly), here
# and in the `basnet` subprocesses (_EAGER_BASNET): they take a handful of steps of the tiny
# model, where tracing its train step would be nearly all the time (about 50 CPU-s per process
# against ~2 s per eager step), and what they check (run folder, resume, signals, NaN stop)
# lives in the Python trainer, identical in both modes.  The traced path stays covered by the
# MirroredStrategy and JAX training runs below and by test_losses' overfit run (model.fit with
# the hybrid loss on all 8 outputs).
_EAGER_BASNET = ("import sys, tensorflow as tf; tf.config.run_functions_eagerly(True); "
                 "from basnet_cli.cli import main; sys.argv[0] = 'basnet'; main()")


def _basnet(*args: object, eager: bool = False) -> list[str]:
    head = ["-c", _EAGER_BASNET] if eager else ["-m", "basnet_cli"]
    return [sys.executable, *head, *map(str, args)]


def _train_cmd(data: Path, run: Path, *extra: str, batch: int = 4, eager: bool = False,
               quiet: bool = True) -> list[str]:
    return _basnet("train", data, "--model", "basnet-tiny", "--resize", "72", "--crop", "64",
                   "--batch-size", batch, "--precision", "float32", "--out", run,
                   *(["--quiet"] if quiet else []), *extra, eager=eager)


@contextlib.contextmanager
def _eagerly():
    from basnet_cli.runtime import import_tf

    tf = import_tf()
    tf.config.run_functions_eagerly(True)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Even though the `tf.config.experimental_"
                                    "run_functions_eagerly` option is set")
            yield
    finally:
        tf.config.run_functions_eagerly(False)


@pytest.fixture
def eager():
    """tf.functions run eagerly in this process for the test."""
    with _eagerly():
        yield


# The run of test_trains_on_synthetic_set_and_writes_run_folder, also the uninterrupted
# reference of the kill -9 test (which trains the same thing through the command line): the
# 16 pairs split 8/8, validation limited to 2 of the 8, 2 epochs of 2 steps (batches of 4).
SHARED_RUN = {"val_split": 0.5, "val_limit": 2, "epochs": 2, "lr": 3e-3, "seed": 5}


@pytest.fixture(scope="module")
def trained_run(synth_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    with _eagerly():
        state = Trainer(TrainOptions(data=str(synth_dataset), out=str(run), **SHARED_RUN,
                                     **TINY_OPTS)).run()
    return run, state


def test_trains_on_synthetic_set_and_writes_run_folder(trained_run):
    run, state = trained_run
    assert state.global_step == 2 * (8 // 4)
    for name in ("config.json", "last.keras", "best.weights.h5", "final.weights.h5",
                 "log.csv", "summary.json", "state.json"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_size"] == 8 and summary["val_size"] == 2
    assert summary["best"]["mae"] is not None and 0 <= summary["best"]["maxf"] <= 1
    log = (run / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step,loss,mae,maxf") and len(log) == 3
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["crop"] == 64 and config["preset"]["name"] == "basnet-tiny"
    # best/final hold the model alone (the optimizer state is last.keras' business)
    for name in ("best.weights.h5", "final.weights.h5"):
        with h5py.File(run / name, "r") as f:
            assert "optimizer" not in f and "layers" in f, (name, list(f))


def test_keep_every_keeps_the_weights_alone_at_those_steps(synth_dataset, tmp_path):
    run = tmp_path / "run"
    state = Trainer(TrainOptions(data=str(synth_dataset), out=str(run), steps=4, keep_every=2,
                                 save_every=0, seed=2, **TINY_OPTS)).run()
    assert state.global_step == 4
    kept = sorted(p.name for p in (run / "steps").iterdir())
    assert kept == ["step-000002.weights.h5", "step-000004.weights.h5"]
    for name in kept:
        with h5py.File(run / "steps" / name, "r") as f:
            assert "optimizer" not in f and "layers" in f, (name, list(f))
    # Each holds the model of its step: step 4's is the run's final model, step 2's is not.
    _, step2, step4, final = _weights(run / "steps" / kept[0], run / "steps" / kept[1],
                                      run / "final.weights.h5", seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(step4, final))
    assert any(not np.array_equal(a, b) for a, b in zip(step2, step4))


def _weights(*paths: Path, seed: int) -> list[list[np.ndarray]]:
    """The initial weights of the tiny model for ``seed``, then those of each saved file."""
    import keras

    from basnet_cli.model.basnet import build_basnet
    from basnet_cli.model.config import TINY

    keras.utils.set_random_seed(seed)
    m = build_basnet(TINY)
    out = [[np.asarray(w) for w in m.weights]]
    for path in paths:
        m.load_weights(path)
        out.append([np.asarray(w) for w in m.weights])
    return out


@pytest.mark.skipif(os.name != "posix", reason="kill -9 needs POSIX signals")
def test_kill_9_then_resume_continues_at_the_right_step(synth_dataset, trained_run, tmp_path):
    # The shared run through the command line with a checkpoint every step, killed with
    # SIGKILL once the checkpoint of step 1 exists: the resumed run starts inside epoch 1
    # (skipping the batch already seen) and then crosses into epoch 2.
    ref, _ = trained_run
    run = tmp_path / "run"
    options = [f"--{k.replace('_', '-')}={v}" for k, v in SHARED_RUN.items()]
    proc = subprocess.Popen(_train_cmd(synth_dataset, run, *options, "--save-every", "1",
                                       eager=True))
    deadline = time.time() + 300
    step = 0
    while time.time() < deadline and proc.poll() is None:
        state = run / "state.json"
        if state.is_file():
            step = json.loads(state.read_text())["global_step"]
            if step >= 1:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= step < 4, f"could not kill mid-run (step {step})"
    resumed = subprocess.run(_basnet("train", "--resume", run, "--json", eager=True),
                             check=True, timeout=600, capture_output=True, text=True)
    summary = json.loads(resumed.stdout)
    assert 1 <= summary["resumed_from_step"] < 4 and summary["global_step"] == 4
    # Same initial weights, data order and optimizer state: the resumed run ends where the
    # reference did, up to float round-off that Adam amplifies a little (far below how far the
    # weights moved during training; measured: bit-identical, gap 0).
    init_w, ref_w, run_w = _weights(ref / "final.weights.h5", run / "final.weights.h5",
                                    seed=SHARED_RUN["seed"])
    moved = np.mean([float(np.abs(a - b).mean()) for a, b in zip(ref_w, init_w)])
    gap = np.mean([float(np.abs(a - b).mean()) for a, b in zip(ref_w, run_w)])
    assert moved > 1e-4, "the reference run did not train"
    assert gap < 0.05 * moved, (gap, moved)


def test_resume_with_steps_extends_a_finished_run_and_keeps_its_history(trained_run, tmp_path,
                                                                        eager):
    ref, _ = trained_run
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    before = json.loads((run / "summary.json").read_text())
    # Without a new length the finished run is left as it was, summary included.
    state = Trainer(TrainOptions(), resume=run).run()
    assert state.already_done and state.global_step == 4
    assert json.loads((run / "summary.json").read_text()) == before
    # --steps 6: one more epoch of 2 steps from the saved optimizer state.
    state = Trainer(TrainOptions(steps=6), resume=run, given={"steps"}).run()
    assert not state.already_done and state.resumed_from_step == 4 and state.global_step == 6
    summary = json.loads((run / "summary.json").read_text())
    assert [row["step"] for row in summary["history"]] == [2, 4, 6]
    assert summary["history"][:2] == before["history"]
    assert len((run / "log.csv").read_text().splitlines()) == 4
    # The new length is the run's from now on: a plain --resume has nothing left to do.
    assert json.loads((run / "config.json").read_text())["options"]["steps"] == 6
    assert Trainer(TrainOptions(), resume=run).run().already_done


def test_resume_refuses_options_it_would_ignore(trained_run, tmp_path):
    from typer.testing import CliRunner

    from basnet_cli.cli import app

    run, _ = trained_run
    # The run's own values may be repeated (a re-used command line); other values may not.
    Trainer(TrainOptions(lr=SHARED_RUN["lr"], out=str(run)), resume=run, given={"lr", "out"})
    with pytest.raises(TrainError, match=r"--lr 0.5 \(the run has 0.003\)"):
        Trainer(TrainOptions(lr=0.5), resume=run, given={"lr"})
    res = CliRunner().invoke(app, ["train", "--resume", str(run), "--crop", "96",
                                   "--batch-size", "4"])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "--crop 96 (the run has 64)" in text, text
    assert "--batch-size" not in text and "last.keras" in text


def test_sigterm_saves_a_checkpoint_and_exits_143(synth_dataset, tmp_path):
    run = tmp_path / "run"
    # 16 pairs in batches of 2: 8 steps per epoch, no periodic checkpoint (--save-every 0).
    proc = subprocess.Popen(_train_cmd(synth_dataset, run, "--steps", "400", "--save-every",
                                       "0", batch=2, eager=True, quiet=False),
                            stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    lines = []
    try:
        # The trainer prints "training ..." once its signal handlers are installed.
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("training "):
                break
        proc.send_signal(signal.SIGTERM)
        lines.append(proc.communicate(timeout=300)[1])
    finally:
        watchdog.cancel()
    assert proc.returncode == 143, "".join(lines)[-2000:]  # 128 + SIGTERM
    state = json.loads((run / "state.json").read_text())
    # Stopped inside the first epoch: the checkpoint is the one the SIGTERM path wrote.
    assert 0 < state["global_step"] < 8
    assert (run / "last.keras").is_file()


def test_training_state_is_built_before_the_first_trace():
    # Variables created inside a tf.function force a second trace of the train step; after
    # build_training_state, one fit step must create none (optimizer, loss trackers).
    import keras
    import tensorflow as tf

    from basnet_cli.losses import HybridLoss
    from basnet_cli.model.basnet import OUTPUT_NAMES, build_basnet
    from basnet_cli.model.config import PRESETS
    from basnet_cli.train.prepare import build_training_state

    model = build_basnet(PRESETS["basnet-tiny"], (None, None, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=[HybridLoss(name=f"{n}_loss") for n in OUTPUT_NAMES])

    def count() -> int:
        return (len(model.variables) + len(model.optimizer.variables)
                + sum(len(m.variables) for m in model.metrics))

    before = count()
    build_training_state(model)
    built = count()
    assert built > before and model.optimizer.built
    assert all(float(np.asarray(m.result())) == 0.0 for m in model.metrics)  # reset again
    rng = np.random.default_rng(0)
    x = rng.random((2, 64, 64, 3), np.float32)
    y = (rng.random((2, 64, 64, 1)) > 0.5).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, (y,) * 8)).batch(2)
    history = model.fit(ds, epochs=1, verbose=0)
    assert count() == built and np.isfinite(history.history["loss"][-1])


def test_two_logical_cpu_devices_with_mirrored_strategy(synth_dataset, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run(_train_cmd(synth_dataset, run, "--steps", "3", "--cpu-devices", "2",
                                     "--json"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["global_step"] == 3
    assert np.isfinite(summary["history"][-1]["loss"])


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for sock in socks:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def _h5_arrays(path: Path) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: found.__setitem__(name, np.array(obj))
                     if isinstance(obj, h5py.Dataset) else None)
    return found


def test_two_workers_on_loopback_end_with_identical_weights(synth_dataset, tmp_path):
    """A real 2-process MultiWorkerMirroredStrategy run (TF_CONFIG, gRPC on loopback): both
    workers train the same steps and save the same model, batch-norm statistics included."""
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        cmd = _train_cmd(synth_dataset, tmp_path / f"worker{index}", "--steps", "3", "--json")
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    try:
        outs = [proc.communicate(timeout=600) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (_, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-2000:]
    summaries = [json.loads(out) for out, _ in outs]
    assert [s["global_step"] for s in summaries] == [3, 3]
    assert summaries[0]["history"][-1]["loss"] == summaries[1]["history"][-1]["loss"]
    first, second = (_h5_arrays(tmp_path / f"worker{i}" / "final.weights.h5") for i in range(2))
    assert first.keys() == second.keys() and len(first) > 100
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    # Batch norm was synchronized for training only: the checkpoint loads on any backend.
    with zipfile.ZipFile(tmp_path / "worker0" / "last.keras") as archive:
        config = archive.read("config.json").decode()
    assert '"synchronized": false' in config and '"synchronized": true' not in config


def test_nan_loss_stops_with_a_clear_message(synth_dataset, tmp_path, eager):
    opts = TrainOptions(data=str(synth_dataset), out=str(tmp_path / "run"), steps=30,
                        lr=1e30, save_every=1, **TINY_OPTS)
    with pytest.raises(NonFiniteLoss, match="loss became"):
        Trainer(opts).run()
    # The last checkpoint on disk is from before the NaN step.
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["global_step"] >= 0


def test_cli_usage_errors(tmp_path):
    from typer.testing import CliRunner

    from basnet_cli.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["train", str(tmp_path)])  # messages wrap after long tmp paths
    assert res.exit_code == 2 and "no dataset layout" in " ".join(res.output.split())
    res = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert res.exit_code == 2 and "config.json" in " ".join(res.output.split())


def test_trains_under_jax_with_the_python_pipeline(synth_dataset, tmp_path):
    pytest.importorskip("jax", reason="jax is not installed (make install-jax)")
    run = tmp_path / "run"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", **FAST_XLA)
    proc = subprocess.run(_train_cmd(synth_dataset, run, "--steps", "3", "--val-split", "0.25",
                                     "--input-pipeline", "python", "--json"),
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["global_step"] == 3 and summary["best"]["mae"] is not None
    config = json.loads((run / "config.json").read_text())
    assert config["keras_backend"] == "jax"


def test_backbone_weights_from_a_torchvision_style_checkpoint(synth_dataset, tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed (make install-torch)")
    from basnet_cli.model.basnet import build_basnet
    from basnet_cli.model.config import TINY
    from basnet_cli.model.convert import load_backbone_weights
    from tests.torch_reference import TorchBASNet

    net = TorchBASNet(TINY)
    state = {k.replace("encoder", "layer", 1): v for k, v in net.state_dict().items()
             if k.startswith("encoder")}
    state["conv1.weight"] = torch.zeros(4, 3, 7, 7)  # torchvision's stem: ignored
    state["fc.weight"] = torch.zeros(10, 4)
    ckpt = tmp_path / "resnet-tiny.pth"
    torch.save(state, ckpt)
    model = build_basnet(TINY)
    n = load_backbone_weights(model, ckpt)
    assert n == sum(1 for k in state if k.startswith("layer") and "num_batches" not in k)
    w = net.state_dict()["encoder2.0.conv1.weight"].numpy().transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(np.asarray(model.get_layer("encoder2_0_conv1").kernel), w)
    # A checkpoint of the wrong width is a clear error, before any training.
    opts = TrainOptions(data=str(synth_dataset), out=str(tmp_path / "run"), steps=1,
                        **{**TINY_OPTS, "model": "basnet-lite"}, backbone_weights=str(ckpt))
    from basnet_cli.train import TrainError

    with pytest.raises(TrainError, match="shape mismatch"):
        Trainer(opts).run()


def test_a_run_puts_the_global_dtype_policy_back(synth_dataset, tmp_path):
    """An in-process run under bfloat16 must not leave mixed precision to the models built
    after it (it once made later float32 parity tests compare bfloat16 outputs)."""
    from basnet_cli.runtime import import_keras

    keras = import_keras()
    before = keras.mixed_precision.global_policy().name
    opts = TrainOptions(data=str(synth_dataset), out=str(tmp_path / "run"), steps=1,
                        save_every=0, **{**TINY_OPTS, "precision": "bfloat16"})
    assert Trainer(opts).run().precision == "bfloat16"
    assert keras.mixed_precision.global_policy().name == before == "float32"

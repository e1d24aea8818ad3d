"""`basnet train`: the paper's recipe, resumable, mixed precision, multi-device.

Run folder layout (``--out``):
- ``config.json``   every option, the dataset sizes, the preset config;
- ``last.keras``    model + optimizer state (the step is the optimizer's iteration count),
                    written atomically every ``--save-every`` steps, each epoch and on
                    Ctrl-C/SIGTERM (+ ``state.json``: step, epoch, best metrics);
- ``best.weights.h5`` weights with the best validation MAE;
- ``log.csv``       one row per epoch: loss, validation MAE / max F, lr, images/s;
- ``summary.json``  written at the end: data, recipe, time, images/s, best metrics.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.util
import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from basnet_cli.data import AugmentConfig, DatasetError, find_pairs, limit_pairs, split_pairs
from basnet_cli.model.config import DEFAULT_PRESET

SCHEDULES = ("constant", "cosine", "step")
CACHE_MODES = ("none", "memory")
PIPELINES = ("auto", "tfdata", "python")
COSINE_FINAL = 0.01  # --schedule cosine ends at this fraction of --lr
# What ``--resume`` may change: how long the run goes on and how it reports.  Everything else
# (data, model, optimiser, augmentation) is fixed by the run's config.json.
RESUME_ADJUSTABLE = ("steps", "epochs", "save_every", "log_every", "tensorboard")
_PATH_OPTIONS = ("data", "images", "masks", "val", "model", "init", "backbone_weights", "out")


class TrainError(RuntimeError):
    """Training cannot start or had to stop (message is for the user)."""


class NonFiniteLoss(TrainError):
    """The loss became NaN or infinite."""


@dataclass
class TrainOptions:
    """Every option of ``basnet train`` (written to ``config.json``)."""

    data: str | None = None
    images: str | None = None
    masks: str | None = None
    val: str | None = None
    val_split: float = 0.0
    val_limit: int = 500
    strict: bool = False
    model: str = DEFAULT_PRESET
    init: str | None = None
    backbone_weights: str | None = None
    out: str | None = None
    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 8
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: str = "constant"
    step_size: int = 0
    gamma: float = 0.1
    warmup_steps: int = 0
    resize: int = 256
    crop: int = 224
    flip: bool = True
    cache: str = "none"
    seed: int = 0
    shuffle_seed: int | None = None
    precision: str = "auto"
    save_every: int = 200
    log_every: int = 50
    cpu_devices: int = 0
    tensorboard: bool = False
    input_pipeline: str = "auto"

    def validate(self) -> None:
        if self.epochs is None and self.steps is None:
            self.epochs = 1
        if self.epochs is not None and self.epochs < 1:
            raise TrainError("--epochs must be at least 1")
        if self.steps is not None and self.steps < 1:
            raise TrainError("--steps must be at least 1")
        if self.schedule not in SCHEDULES:
            raise TrainError(f"--schedule must be one of {', '.join(SCHEDULES)}")
        if self.cache not in CACHE_MODES and not self.cache.startswith("file:"):
            raise TrainError("--cache must be none, memory or file:PATH")
        if self.crop % 32:
            raise TrainError(f"--crop must be a multiple of 32 (BASNet halves 5 times), "
                             f"got {self.crop}")
        if self.batch_size < 1:
            raise TrainError("--batch-size must be at least 1")
        if self.input_pipeline not in PIPELINES:
            raise TrainError(f"--input-pipeline must be one of {', '.join(PIPELINES)}")

    def data_seed(self) -> int:
        """The seed of the training order and augmentation: ``--shuffle-seed`` when given, else
        ``--seed``. A new stage started from earlier weights with the same ``--seed`` (so the
        same validation split) would otherwise see the same images first again."""
        return self.seed if self.shuffle_seed is None else self.shuffle_seed

    def pipeline(self) -> str:
        """The concrete input pipeline (``auto`` resolved on this machine)."""
        if self.input_pipeline != "auto":
            return self.input_pipeline
        from basnet_cli.data import tensorflow_available

        return "tfdata" if tensorflow_available() else "python"


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


# ---------------------------------------------------------------------------------- helpers


def next_run_dir(base: Path = Path("runs")) -> Path:
    """``runs/train-1``, ``runs/train-2``, ... (first free number)."""
    n = 1
    while (base / f"train-{n}").exists():
        n += 1
    return base / f"train-{n}"


def _bad_pair_reason(exc: BaseException) -> str | None:
    """The decoder's one-line reason inside a tf.data error, or None for any other error."""
    from basnet_cli.data import BAD_PAIR_MARK

    text = str(exc)
    at = text.find(BAD_PAIR_MARK)
    if at < 0:
        return None
    return text[at + len(BAD_PAIR_MARK):].splitlines()[0].strip()


def _remove_if_unused(run_dir: Path) -> None:
    """Delete ``run_dir`` when it holds nothing but a config (a run that never trained)."""
    try:
        names = {p.name for p in run_dir.iterdir()}
    except OSError:
        return
    if names <= {"config.json"}:
        for name in names:
            (run_dir / name).unlink(missing_ok=True)
        try:
            run_dir.rmdir()
        except OSError:
            pass


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _save_model_atomic(model, path: Path) -> None:
    tmp = path.with_name(f"{path.stem}-tmp{path.suffix}")
    model.save(tmp)
    os.replace(tmp, path)


def _save_weights_atomic(model, path: Path) -> None:
    """The model's weights alone.  A compiled model's ``save_weights`` also writes the optimizer
    state (with Adam three times the size: 52 MB instead of 18 for ``basnet-lite``); the state
    for ``--resume`` lives in ``last.keras``."""
    from basnet_cli.convert import save_weights_atomic

    bare = type(model).from_config(model.get_config())  # uncompiled (clone_model compiles)
    bare.set_weights(model.get_weights())
    save_weights_atomic(bare, path)


def _load_pairs(opts: TrainOptions, state: RunState, warn: Callable[[str], None],
                on_progress: Callable[[int, int], None] | None = None):
    scan = find_pairs(opts.data, images=opts.images, masks=opts.masks)
    if scan.unmatched:
        state.unmatched = scan.describe_unmatched()
        if opts.strict:
            raise DatasetError(f"unmatched files (--strict): {state.unmatched}")
        warn(f"skipping unmatched files: {state.unmatched}")
    if not scan.pairs:
        raise DatasetError(f"no image/mask pairs found in {scan.image_dir} + {scan.mask_dir}")
    train_pairs = scan.pairs
    val_pairs: list = []
    if opts.val:
        vscan = find_pairs(opts.val)
        val_pairs = vscan.pairs
        if vscan.unmatched:
            warn(f"validation: skipping unmatched files: {vscan.describe_unmatched()}")
    elif opts.val_split > 0:
        train_pairs, val_pairs = split_pairs(train_pairs, opts.val_split, opts.seed)
    val_pairs = limit_pairs(val_pairs, opts.val_limit, opts.seed + 1)
    # Bad pairs are dropped after the split, so the hold-out stays the same pairs.
    return _drop_bad_pairs(train_pairs, val_pairs, opts, state, warn, on_progress)


def _drop_bad_pairs(train_pairs, val_pairs, opts: TrainOptions, state: RunState,
                    warn: Callable[[str], None], on_progress):
    from basnet_cli.data import check_pairs

    def on_bad(bad) -> None:
        warn(f"skipping a bad pair: {bad.reason}")

    everything = train_pairs + val_pairs
    good, bad = check_pairs(everything, on_bad=on_bad, on_progress=on_progress)
    state.bad_pairs = [{"image": str(b.image), "mask": str(b.mask), "reason": b.reason}
                       for b in bad]
    if bad and opts.strict:
        raise DatasetError(f"{len(bad)} bad image/mask pair(s) (--strict); see above")
    keep = set(good)
    return ([p for p in train_pairs if p in keep], [p for p in val_pairs if p in keep])


def _load_backbone(model, source, path: str) -> int:
    """ImageNet weights into the encoder: EfficientNet-Lite0 for the mobile presets, a
    torchvision ResNet for the others.  Returns the tensors loaded."""
    from basnet_cli.convert import ConversionError, load_backbone_weights
    from basnet_cli.model.pretrained import BackboneWeightsError, load_lite0_weights

    encoder = source.config.encoder if source.config is not None else "resnet"
    try:
        if encoder == "efficientnet-lite0":
            return load_lite0_weights(model, path)
        return load_backbone_weights(model, path)
    except ImportError:
        raise TrainError("--backbone-weights reads a PyTorch .pth file: install the torch "
                         "extra (pip install 'basnet-cli[torch]' or make install-torch)") from None
    except (BackboneWeightsError, ConversionError, OSError) as exc:
        raise TrainError(f"--backbone-weights: {exc}") from None


def _make_lr(opts: TrainOptions, total_steps: int):
    from basnet_cli.runtime import import_keras

    keras = import_keras()
    if opts.schedule == "cosine":
        decay = max(1, total_steps - opts.warmup_steps)
        if opts.warmup_steps:
            return keras.optimizers.schedules.CosineDecay(
                0.0, decay_steps=decay, alpha=COSINE_FINAL, warmup_target=opts.lr,
                warmup_steps=opts.warmup_steps)
        return keras.optimizers.schedules.CosineDecay(opts.lr, decay_steps=decay,
                                                      alpha=COSINE_FINAL)
    if opts.schedule == "step":
        step_size = opts.step_size or max(1, total_steps // 3)
        return keras.optimizers.schedules.ExponentialDecay(
            opts.lr, decay_steps=step_size, decay_rate=opts.gamma, staircase=True)
    return opts.lr


def _make_optimizer(opts: TrainOptions, total_steps: int):
    from basnet_cli.runtime import import_keras

    keras = import_keras()
    lr = _make_lr(opts, total_steps)
    common = {"learning_rate": lr, "beta_1": opts.beta1, "beta_2": opts.beta2,
              "epsilon": opts.eps}
    if opts.weight_decay > 0:
        return keras.optimizers.AdamW(weight_decay=opts.weight_decay, **common)
    return keras.optimizers.Adam(**common)


def _current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    try:
        return float(np.asarray(lr))
    except (TypeError, ValueError):
        return float(np.asarray(lr(optimizer.iterations)))


def _make_strategy(opts: TrainOptions):
    """A tf.distribute strategy, or None (single device / non-TF backend)."""
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return None
    from basnet_cli.runtime import import_tf

    tf = import_tf()
    if opts.cpu_devices and opts.cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * opts.cpu_devices)
        except RuntimeError:
            pass  # already initialised (e.g. second run in one process)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][: opts.cpu_devices]
        return tf.distribute.MirroredStrategy(devices=devices)
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return None


def _build_training_state(model) -> None:
    """Create the optimizer's and the loss trackers' variables before ``fit``.

    Without a distribution strategy, Keras' TensorFlow trainer creates them inside the first
    trace of the train step, and a ``tf.function`` that creates variables is traced twice: the
    first step then costs two full traces (about 80 instead of 50 s for basnet-lite on two
    CPU cores). One eager forward pass on a 32x32 image and one loss evaluation build them."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    x = np.zeros((1, 32, 32, 3), "float32")
    y_pred = model(x, training=False)
    y = tuple(np.zeros((1, 32, 32, 1), "float32") for _ in y_pred)
    model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
    model.reset_metrics()  # the loss trackers saw the zero batch


def validate_model(model, val_pairs, size: int, batch_size: int,
                   pipeline: str = "tfdata") -> dict[str, float]:
    """MAE and max F (beta^2 = 0.3) of the refined map on ``val_pairs`` at ``size``."""
    from basnet_cli.data import eval_dataset, python_eval_batches
    from basnet_cli.metrics import MAE, FMeasure
    from basnet_cli.model.basnet import inference_model

    infer = inference_model(model)
    mae, fm = MAE(), FMeasure()
    batches = (eval_dataset(val_pairs, size=size, batch_size=batch_size)
               if pipeline == "tfdata" else
               python_eval_batches(val_pairs, size=size, batch_size=batch_size))
    for images, masks in batches:
        preds = np.asarray(infer.predict_on_batch(images), dtype=np.float32)
        gts = np.asarray(masks, dtype=np.float32)
        for p, g in zip(preds[..., 0], gts[..., 0]):
            mae.step(p, g)
            fm.step(p, g)
    f = fm.get_results()
    return {"mae": float(mae.get_results()["mae"]), "maxf": float(f["max"])}


# ---------------------------------------------------------------------------------- trainer


class _StepCallback:
    """Keras callback factory (built lazily so keras is imported only when training)."""

    @staticmethod
    def make(trainer: Trainer):
        from basnet_cli.runtime import import_keras

        keras = import_keras()

        class StepCallback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                trainer._after_step(self.model, logs or {})

        return StepCallback()


class Trainer:
    """Runs one training job; ``on_event(kind, state)`` reports progress to the CLI."""

    def __init__(self, opts: TrainOptions, *, resume: Path | None = None,
                 given: Iterable[str] = (),
                 on_event: Callable[[str, RunState], None] | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        """``given``: the options the user set explicitly; with ``resume`` those in
        RESUME_ADJUSTABLE replace the run's own (``--steps``/``--epochs`` extend it), any
        other one must equal the run's value."""
        self.on_event = on_event or (lambda kind, state: None)
        self.warn = warn or (lambda msg: None)
        self.resume_dir = Path(resume) if resume else None
        self._resume_changed: list[str] = []
        self._resume_config: dict = {}  # the run's config.json, when resuming
        if self.resume_dir is not None:
            cfg_path = self.resume_dir / "config.json"
            if not cfg_path.is_file():
                raise TrainError(f"{self.resume_dir}: no config.json, not a run folder")
            self._resume_config = json.loads(cfg_path.read_text())
            opts, self._resume_changed = _resume_options(
                TrainOptions(**self._resume_config["options"]), opts, set(given),
                self.resume_dir)
        opts.validate()
        self.opts = opts
        run_dir = Path(opts.out) if opts.out else next_run_dir()
        self.state = RunState(run_dir=run_dir)
        self._stop_signal: str | None = None
        self._t_window = time.perf_counter()
        self._steps_window = 0
        self._epoch_losses: list[float] = []

    def _check_progress(self, done: int, total: int) -> None:
        self.state.check_done, self.state.check_total = done, total
        self.on_event("checking", self.state)

    # -- signals -------------------------------------------------------------------------
    def _install_signals(self):
        previous = {}

        def handler(signum, frame):
            if self._stop_signal is not None:  # second signal: stop now
                raise KeyboardInterrupt
            self._stop_signal = signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
        return previous

    @staticmethod
    def _restore_signals(previous) -> None:
        for sig, h in previous.items():
            signal.signal(sig, h)

    # -- per step ------------------------------------------------------------------------
    def _after_step(self, model, logs: dict) -> None:
        st, opts = self.state, self.opts
        st.global_step += 1
        loss = float(logs.get("loss", float("nan")))
        st.loss = loss
        self._steps_window += 1
        if not math.isfinite(loss):
            st.stopped = "nan"
            model.stop_training = True
            return
        now = time.perf_counter()
        if now - self._t_window > 5.0 or self._steps_window >= opts.log_every:
            st.images_per_s = self._steps_window * opts.batch_size / (now - self._t_window)
            self._t_window, self._steps_window = now, 0
        if opts.save_every and st.global_step % opts.save_every == 0:
            self._checkpoint(model)
        if self._stop_signal is not None:
            st.stopped = "signal"
            st.stop_signal = self._stop_signal
            model.stop_training = True
        if st.global_step >= st.total_steps:
            model.stop_training = True
        self.on_event("step", st)

    def _checkpoint(self, model) -> None:
        _save_model_atomic(model, self.state.run_dir / "last.keras")
        self._write_state()

    def _write_state(self) -> None:
        st = self.state
        best = st.best_epoch >= 0
        _atomic_write_text(st.run_dir / "state.json", json.dumps({
            "global_step": st.global_step, "epoch": st.epoch,
            "best_mae": st.best_mae if best else None,
            "best_maxf": st.best_maxf if best else None,
            "best_epoch": st.best_epoch if best else None}, indent=2))

    def _default_backbone(self, required: bool = False) -> str | None:
        """The installed ImageNet EfficientNet-Lite0 file (``--backbone-weights imagenet``, and
        a new mobile-preset run without weights); without it (or torch to read it) a warning
        says how to get it, or with ``required`` an error."""
        from basnet_cli.model.pretrained import LITE0_WHEEL, installed_lite0_file

        path = installed_lite0_file()
        if path is not None and importlib.util.find_spec("torch") is not None:
            return str(path)
        how = (f"install torch and {LITE0_WHEEL} (make install-torch) or pass "
               f"--backbone-weights FILE")
        if required:
            raise TrainError(f"--backbone-weights imagenet: the ImageNet file is not "
                             f"installed; {how}")
        self.warn(f"the EfficientNet-Lite0 encoder starts from random weights: for ImageNet "
                  f"weights {how}")
        return None

    # -- main ----------------------------------------------------------------------------
    def run(self) -> RunState:
        """Train; a new run folder that a failure leaves without checkpoints is removed."""
        existed = self.state.run_dir.exists()
        try:
            return self._run()
        except BaseException:
            if not existed:
                _remove_if_unused(self.state.run_dir)
            raise

    def _run(self) -> RunState:
        from basnet_cli.runtime import import_keras, set_precision

        keras = import_keras()
        opts, st = self.opts, self.state
        train_pairs, val_pairs = _load_pairs(opts, st, self.warn, self._check_progress)
        if not train_pairs:
            raise DatasetError("no training pairs left: every pair is bad (see above)")
        st.train_size, st.val_size = len(train_pairs), len(val_pairs)
        st.batch_size = opts.batch_size
        st.steps_per_epoch = len(train_pairs) // opts.batch_size
        if st.steps_per_epoch == 0:
            raise DatasetError(f"{len(train_pairs)} training pairs are fewer than one batch "
                               f"of {opts.batch_size}")
        st.total_steps = opts.steps if opts.steps else opts.epochs * st.steps_per_epoch
        st.run_dir.mkdir(parents=True, exist_ok=True)
        aug = AugmentConfig(opts.resize, opts.crop, opts.flip)
        strategy = _make_strategy(opts)
        st.precision = set_precision(opts.precision)
        keras.utils.set_random_seed(opts.seed)  # same initial weights for the same --seed

        from basnet_cli.losses import HybridLoss
        from basnet_cli.model.basnet import OUTPUT_NAMES
        from basnet_cli.model.io import ModelSpecError, load_training_model, resolve

        last = st.run_dir / "last.keras"
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            if self.resume_dir is not None and last.is_file():
                model = keras.saving.load_model(last, safe_mode=True)
                st.global_step = int(np.asarray(model.optimizer.iterations))
                st.resumed_from_step = st.global_step
                st.history = _read_log(st.run_dir / "log.csv")
                if self._resume_changed:
                    self._update_config(st.total_steps)
                prev = st.run_dir / "state.json"
                if prev.is_file():
                    saved = json.loads(prev.read_text())
                    if saved.get("best_epoch") is not None:
                        st.best_mae = float(saved["best_mae"])
                        st.best_maxf = float(saved["best_maxf"])
                        st.best_epoch = int(saved["best_epoch"])
            else:
                try:
                    source = resolve(opts.model, require_weights=False)
                except ModelSpecError as exc:
                    raise TrainError(str(exc)) from None
                if opts.backbone_weights and source.kind == "preset":
                    # ImageNet encoder + fresh decoder, not the preset's bundled weights
                    source = dataclasses.replace(source, path=None)
                if opts.backbone_weights == "imagenet":
                    opts.backbone_weights = self._default_backbone(required=True)
                model = load_training_model(source)
                if opts.init:
                    model.load_weights(opts.init)
                if (not opts.backbone_weights and not opts.init and source.path is None
                        and source.config is not None
                        and source.config.encoder == "efficientnet-lite0"):
                    opts.backbone_weights = self._default_backbone()
                if opts.backbone_weights:
                    loaded = _load_backbone(model, source, opts.backbone_weights)
                    self.warn(f"loaded {loaded} ImageNet tensors into the encoder from "
                              f"{opts.backbone_weights}")
                model.compile(optimizer=_make_optimizer(opts, st.total_steps),
                              loss=[HybridLoss(name=f"{n}_loss") for n in OUTPUT_NAMES])
                self._write_config(model, source.config.to_dict() if source.config else None)
        if st.global_step >= st.total_steps:
            st.already_done = self.resume_dir is not None
            self.on_event("done", st)
            summary = st.run_dir / "summary.json"
            if st.already_done and summary.is_file():  # keep the summary of the real run
                self.summary = json.loads(summary.read_text())
                return st
            return self._finish(model)
        if strategy is None:
            _build_training_state(model)

        from basnet_cli.data import MemoryCache

        memory_cache = MemoryCache()  # --cache memory: decoded once for every epoch
        previous = self._install_signals()
        callback = _StepCallback.make(self)
        t_start = time.perf_counter()
        images_start = st.global_step
        self.on_event("start", st)
        try:
            while st.global_step < st.total_steps and st.stopped is None:
                st.epoch = st.global_step // st.steps_per_epoch
                done_in_epoch = st.global_step % st.steps_per_epoch
                remaining = min(st.steps_per_epoch - done_in_epoch,
                                st.total_steps - st.global_step)
                ds = _train_data(train_pairs, opts, aug, st.epoch, done_in_epoch, strategy,
                                 memory_cache)
                self._epoch_losses = []
                self._t_window, self._steps_window = time.perf_counter(), 0
                self.on_event("epoch_start", st)
                callbacks = [callback]
                if opts.tensorboard:
                    callbacks.append(keras.callbacks.TensorBoard(
                        log_dir=str(st.run_dir / "tensorboard"), update_freq=opts.log_every))
                try:
                    history = model.fit(ds, epochs=1, steps_per_epoch=remaining, verbose=0,
                                        shuffle=False, callbacks=callbacks)
                except Exception as exc:  # noqa: BLE001 - only a bad pair is translated
                    reason = _bad_pair_reason(exc)
                    if reason is None:
                        raise
                    raise TrainError(
                        f"{reason} (it passed the check before training, so it changed "
                        f"during the run); fix or remove it, then --resume {st.run_dir}"
                    ) from None
                if st.stopped == "nan":
                    raise NonFiniteLoss(
                        f"loss became {st.loss} at step {st.global_step}; stopped. The last good "
                        f"checkpoint is {last if last.is_file() else 'not written yet'}. Try a "
                        f"lower --lr or --precision float32.")
                if st.stopped == "signal":
                    break
                epoch_end = st.global_step % st.steps_per_epoch == 0
                row = {"epoch": st.epoch + (1 if epoch_end else 0), "step": st.global_step,
                       "loss": float(history.history["loss"][-1]),
                       "lr": _current_lr(model.optimizer),
                       "images_per_s": round(st.images_per_s, 3)}
                if val_pairs:
                    self.on_event("validating", st)
                    row.update(validate_model(model, val_pairs, opts.crop, opts.batch_size,
                                              opts.pipeline()))
                    if row["mae"] < st.best_mae:
                        st.best_mae, st.best_maxf, st.best_epoch = (
                            row["mae"], row["maxf"], row["epoch"])
                        _save_weights_atomic(model, st.run_dir / "best.weights.h5")
                st.history.append(row)
                self._append_log(row)
                self._checkpoint(model)
                self.on_event("epoch_end", st)
        finally:
            self._restore_signals(previous)
        elapsed = time.perf_counter() - t_start
        if st.stopped == "signal":
            self._checkpoint(model)
        trained = st.global_step - images_start
        st.images_per_s = trained * opts.batch_size / elapsed if elapsed > 0 else 0.0
        return self._finish(model, elapsed)

    def _finish(self, model, elapsed: float = 0.0) -> RunState:
        st = self.state
        if st.stopped is None:
            _save_weights_atomic(model, st.run_dir / "final.weights.h5")
        summary = {
            "run_dir": str(st.run_dir), "stopped": st.stopped,
            "global_step": st.global_step, "total_steps": st.total_steps,
            "epochs_done": st.global_step / st.steps_per_epoch if st.steps_per_epoch else 0,
            "images_seen": st.global_step * self.opts.batch_size,
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
        self._write_state()
        _atomic_write_text(st.run_dir / "summary.json", json.dumps(summary, indent=2))
        self.summary = summary
        return st

    def _write_config(self, model, preset: dict | None) -> None:
        st = self.state
        cfg = {"options": asdict(self.opts), "preset": preset,
               "train_size": st.train_size, "val_size": st.val_size,
               "steps_per_epoch": st.steps_per_epoch, "total_steps": st.total_steps,
               "precision": st.precision, "keras_backend": os.environ.get("KERAS_BACKEND"),
               "unmatched": st.unmatched, "bad_pairs": st.bad_pairs}
        _atomic_write_text(st.run_dir / "config.json", json.dumps(cfg, indent=2))

    def _update_config(self, total_steps: int) -> None:
        """After --resume changed RESUME_ADJUSTABLE options: record them, so that the next
        --resume goes on with them."""
        cfg = self._resume_config
        old_total = cfg.get("total_steps")
        cfg["options"] = asdict(self.opts)
        cfg["total_steps"] = total_steps
        _atomic_write_text(self.state.run_dir / "config.json", json.dumps(cfg, indent=2))
        if (self.opts.schedule == "cosine" and old_total is not None
                and total_steps > old_total):
            self.warn(f"the cosine schedule was laid out for {old_total} steps and is restored "
                      f"as saved: after step {old_total} the learning rate stays at its final "
                      f"value ({self.opts.lr * COSINE_FINAL:g})")

    def _append_log(self, row: dict) -> None:
        path = self.state.run_dir / "log.csv"
        fields = ["epoch", "step", "loss", "mae", "maxf", "lr", "images_per_s"]
        new = not path.exists()
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def _resume_options(saved: TrainOptions, cli: TrainOptions, given: set[str],
                    run_dir: Path) -> tuple[TrainOptions, list[str]]:
    """The options of a resumed run: the saved ones, with the RESUME_ADJUSTABLE options the
    user gave; a different value for any other option is an error (it would be ignored)."""
    changed, conflicts = [], []
    for name in sorted(given):
        new, old = getattr(cli, name), getattr(saved, name)
        if name == "out":
            old = str(run_dir)
        if name in RESUME_ADJUSTABLE:
            if new != old:
                setattr(saved, name, new)
                changed.append(name)
        elif not _same_option(name, new, old):
            conflicts.append(f"--{name.replace('_', '-')} {new} (the run has {old})")
    if conflicts:
        raise TrainError(
            f"{run_dir} was started with other options and --resume keeps them: "
            f"{'; '.join(conflicts)}. With --resume only --steps, --epochs, --save-every, "
            f"--log-every and --tensorboard can change; to train on with other options start "
            f"a new run from its weights: --model {run_dir / 'last.keras'}")
    if "epochs" in given and "steps" not in given and saved.steps is not None:
        saved.steps = None  # --epochs alone: the run's length in epochs, not its old --steps
        changed.append("steps")
    saved.out = str(run_dir)
    return saved, changed


def _same_option(name: str, new, old) -> bool:
    if name in _PATH_OPTIONS and new is not None and old is not None:
        return os.path.realpath(new) == os.path.realpath(old)
    return new == old


def _read_log(path: Path) -> list[dict]:
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


def _train_data(pairs, opts: TrainOptions, aug: AugmentConfig, epoch: int, skip: int,
                strategy, memory_cache=None):
    from basnet_cli.data import python_train_batches, train_dataset

    if opts.pipeline() == "python":
        return python_train_batches(pairs, batch_size=opts.batch_size, aug=aug,
                                    seed=opts.data_seed(), epoch=epoch, skip_batches=skip)
    cache = None
    if opts.cache == "memory":  # the run's MemoryCache; "memory" alone caches this epoch only
        cache = memory_cache if memory_cache is not None else "memory"
    elif opts.cache.startswith("file:"):
        cache = opts.cache[len("file:"):]
    return train_dataset(pairs, batch_size=opts.batch_size, aug=aug, seed=opts.data_seed(),
                         epoch=epoch, skip_batches=skip, cache=cache)



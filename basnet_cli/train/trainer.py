"""The training loop of ``basnet train``: epochs of ``model.fit``, validation, checkpoints,
signals, and the events the command line shows."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from basnet_cli.data import AugmentConfig, DatasetError
from basnet_cli.errors import BasnetError
from basnet_cli.train import prepare, rundir
from basnet_cli.train.options import NonFiniteLoss, TrainError, TrainOptions, resume_options
from basnet_cli.train.rundir import KEPT_DIR, RunState, next_run_dir
from basnet_cli.train.schedules import COSINE_FINAL, current_lr


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
    """Runs one training job; ``on_event(kind, state)`` reports progress to the caller.

    Events: ``checking`` (pairs decoded so far), ``start``, ``epoch_start``, ``step``,
    ``validating``, ``epoch_end``, ``done`` (a resumed run had nothing left to do)."""

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
            resumed = resume_options(self.resume_dir, opts, set(given))
            opts, self._resume_changed = resumed.options, resumed.changed
            self._resume_config = resumed.config
        opts.validate()
        self.opts = opts
        self._numbered = not opts.out  # runs/train-N, numbered when the folder is made
        self.state = RunState(run_dir=Path(opts.out) if opts.out else next_run_dir())
        self._created: list[Path] = []  # folders this run made (removed again if unused)
        self.summary: dict = {}
        self._stop_signal: str | None = None
        self._t_window = time.perf_counter()
        self._steps_window = 0

    def _check_progress(self, done: int, total: int) -> None:
        self.state.check_done, self.state.check_total = done, total
        self.on_event("checking", self.state)

    def _default_backbone(self, required: bool = False) -> str | None:
        """:func:`basnet_cli.train.prepare.default_backbone`, warnings to this run's ``warn``."""
        return prepare.default_backbone(self.warn, required)

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
        if opts.keep_every and st.global_step % opts.keep_every == 0:
            self._keep(model)
        if self._stop_signal is not None:
            st.stopped = "signal"
            st.stop_signal = self._stop_signal
            model.stop_training = True
        if st.global_step >= st.total_steps:
            model.stop_training = True
        self.on_event("step", st)

    def _checkpoint(self, model) -> None:
        rundir.save_model_atomic(model, self.state.run_dir / "last.keras")
        rundir.write_state(self.state)

    def _keep(self, model) -> None:
        """``steps/step-NNNNNN.weights.h5``: the weights alone at this step, kept (for a
        weight average along the run, ``docs/average_weights.py``)."""
        folder = self.state.run_dir / KEPT_DIR
        folder.mkdir(exist_ok=True)
        rundir.save_weights_atomic(model, folder / f"step-{self.state.global_step:06d}.weights.h5")

    # -- main ----------------------------------------------------------------------------
    def run(self) -> RunState:
        """Train.  The run folder is made once the data and the model have loaded; a folder
        (and parents) this run made is removed again when a failure leaves it without
        checkpoints.  A ValueError or FileNotFoundError from a library becomes a TrainError."""
        from basnet_cli.runtime import policy_restored

        try:
            with policy_restored():
                return self._run()
        except BaseException as exc:
            rundir.remove_unused(self.state.run_dir, self._created)
            if isinstance(exc, (ValueError, FileNotFoundError)) and not isinstance(
                    exc, BasnetError):
                raise TrainError(str(exc)) from exc
            raise

    def _prepare_data(self) -> tuple[prepare.Pairs, prepare.Pairs]:
        opts, st = self.opts, self.state
        if self.resume_dir is None and opts.data is None and opts.images is None:
            raise TrainError("give a dataset folder (DATA or --data) or --images/--masks, "
                             "or --resume")
        train_pairs, val_pairs = prepare.load_pairs(opts, st, self.warn, self._check_progress)
        if not train_pairs:
            raise DatasetError("no training pairs left: every pair is bad (see above)")
        st.train_size, st.val_size = len(train_pairs), len(val_pairs)
        st.batch_size = opts.batch_size
        st.steps_per_epoch = len(train_pairs) // opts.batch_size
        if st.steps_per_epoch == 0:
            raise DatasetError(f"{len(train_pairs)} training pairs are fewer than one batch "
                               f"of {opts.batch_size}")
        st.total_steps = opts.steps if opts.steps else opts.epochs * st.steps_per_epoch
        return train_pairs, val_pairs

    def _load_model(self, last: Path):
        """The model: the run's ``last.keras`` when resuming, else a new one; a new run's
        folder and config.json are written once it has loaded."""
        from basnet_cli.runtime import import_keras

        st = self.state
        if self.resume_dir is not None and last.is_file():
            import basnet_cli.losses  # noqa: F401  registers HybridLoss, which last.keras names

            model = import_keras().saving.load_model(last, safe_mode=True)
            st.global_step = int(np.asarray(model.optimizer.iterations))
            st.resumed_from_step = st.global_step
            rundir.read_state(st)
            if self._resume_changed:
                self._update_config()
            return model
        model, preset = prepare.new_model(self.opts, st.total_steps, self.warn)
        st.run_dir, self._created = rundir.create_run_dir(st.run_dir, numbered=self._numbered)
        rundir.write_config(st, self.opts, preset)
        return model

    def _update_config(self) -> None:
        """After --resume changed RESUME_ADJUSTABLE options: record them in config.json."""
        old_total = self._resume_config.get("total_steps")
        total = self.state.total_steps
        rundir.update_config(self.state.run_dir, self._resume_config, self.opts, total)
        if self.opts.schedule == "cosine" and old_total is not None and total > old_total:
            self.warn(f"the cosine schedule was laid out for {old_total} steps and is restored "
                      f"as saved: after step {old_total} the learning rate stays at its final "
                      f"value ({self.opts.lr * COSINE_FINAL:g})")

    def _run(self) -> RunState:
        from basnet_cli.runtime import import_keras, set_precision

        keras = import_keras()
        opts, st = self.opts, self.state
        train_pairs, val_pairs = self._prepare_data()
        aug = AugmentConfig(opts.resize, opts.crop, opts.flip)
        strategy = prepare.make_strategy(opts)
        st.precision = set_precision(prepare.train_precision(opts))
        keras.utils.set_random_seed(opts.seed)  # same initial weights for the same --seed
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            model = self._load_model(st.run_dir / "last.keras")
        if st.global_step >= st.total_steps:
            st.already_done = self.resume_dir is not None
            self.on_event("done", st)
            summary = st.run_dir / "summary.json"
            if st.already_done and summary.is_file():  # keep the summary of the real run
                self.summary = json.loads(summary.read_text())
                return st
            return self._finish(model)
        prepare.build_training_state(model, strategy)
        return self._train(model, train_pairs, val_pairs, aug, strategy)

    def _train(self, model, train_pairs, val_pairs, aug: AugmentConfig, strategy) -> RunState:
        from basnet_cli.data import MemoryCache
        from basnet_cli.runtime import import_keras

        keras = import_keras()
        opts, st = self.opts, self.state
        last = st.run_dir / "last.keras"
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
                ds = prepare.train_data(train_pairs, opts, aug, st.epoch, done_in_epoch,
                                        strategy, memory_cache)
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
                    reason = prepare.bad_pair_reason(exc)
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
                self._end_epoch(model, history, val_pairs)
        finally:
            self._restore_signals(previous)
        elapsed = time.perf_counter() - t_start
        if st.stopped == "signal":
            self._checkpoint(model)
        trained = st.global_step - images_start
        st.images_per_s = trained * opts.batch_size / elapsed if elapsed > 0 else 0.0
        return self._finish(model, elapsed)

    def _end_epoch(self, model, history, val_pairs) -> None:
        """Validate, keep the best weights, log the epoch's row and checkpoint."""
        opts, st = self.opts, self.state
        epoch_end = st.global_step % st.steps_per_epoch == 0
        row = {"epoch": st.epoch + (1 if epoch_end else 0), "step": st.global_step,
               "loss": float(history.history["loss"][-1]),
               "lr": current_lr(model.optimizer),
               "images_per_s": round(st.images_per_s, 3)}
        if val_pairs:
            self.on_event("validating", st)
            row.update(validate_model(model, val_pairs, opts.crop, opts.batch_size,
                                      opts.pipeline()))
            if row["mae"] < st.best_mae:
                st.best_mae, st.best_maxf, st.best_epoch = (
                    row["mae"], row["maxf"], row["epoch"])
                rundir.save_weights_atomic(model, st.run_dir / "best.weights.h5")
        st.history.append(row)
        rundir.append_log(st.run_dir, row)
        self._checkpoint(model)
        self.on_event("epoch_end", st)

    def _finish(self, model, elapsed: float = 0.0) -> RunState:
        st = self.state
        if st.stopped is None:
            rundir.save_weights_atomic(model, st.run_dir / "final.weights.h5")
        self.summary = rundir.write_summary(st, self.opts.batch_size, elapsed)
        return st

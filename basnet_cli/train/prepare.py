"""What a run needs before its first step: the pairs (checked once), the model (new, from a
preset or a file, with ImageNet encoder weights), the device strategy, each epoch's data."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from basnet_cli.data import AugmentConfig, DatasetError, find_pairs, limit_pairs, split_pairs
from basnet_cli.train.options import TrainError, TrainOptions
from basnet_cli.train.rundir import RunState
from basnet_cli.train.schedules import make_optimizer

Pairs = list[tuple[Path, Path]]


def load_pairs(opts: TrainOptions, state: RunState, warn: Callable[[str], None],
               on_progress: Callable[[int, int], None] | None = None) -> tuple[Pairs, Pairs]:
    """The training and validation pairs; unmatched files and bad pairs are skipped with a
    warning (an error with ``--strict``) and recorded in ``state``."""
    scan = find_pairs(opts.data, images=opts.images, masks=opts.masks)
    if scan.unmatched:
        state.unmatched = scan.describe_unmatched()
        if opts.strict:
            raise DatasetError(f"unmatched files (--strict): {state.unmatched}")
        warn(f"skipping unmatched files: {state.unmatched}")
    if not scan.pairs:
        raise DatasetError(f"no image/mask pairs found in {scan.image_dir} + {scan.mask_dir}")
    train_pairs = scan.pairs
    val_pairs: Pairs = []
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


def _drop_bad_pairs(train_pairs: Pairs, val_pairs: Pairs, opts: TrainOptions, state: RunState,
                    warn: Callable[[str], None],
                    on_progress: Callable[[int, int], None] | None) -> tuple[Pairs, Pairs]:
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


def bad_pair_reason(exc: BaseException) -> str | None:
    """The decoder's one-line reason inside a tf.data error, or None for any other error."""
    from basnet_cli.data import BAD_PAIR_MARK

    text = str(exc)
    at = text.find(BAD_PAIR_MARK)
    if at < 0:
        return None
    return text[at + len(BAD_PAIR_MARK):].splitlines()[0].strip()


def train_data(pairs: Pairs, opts: TrainOptions, aug: AugmentConfig, epoch: int, skip: int,
               strategy, memory_cache=None):
    """Epoch ``epoch`` of the training batches, the first ``skip`` left out (a resumed epoch);
    ``memory_cache``: the run's :class:`basnet_cli.data.MemoryCache` for ``--cache memory``."""
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


def make_strategy(opts: TrainOptions):
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


def train_precision(opts: TrainOptions) -> str:
    """``--precision`` of a run: ``auto`` is :func:`~basnet_cli.runtime.resolve_precision`'s
    choice, except float32 instead of bfloat16 on a CPU for a preset whose bfloat16 training
    step is slower there (``cpu_train_bfloat16``: depthwise-heavy, narrow networks)."""
    from basnet_cli.model.io import ModelSpecError, resolve
    from basnet_cli.runtime import resolve_precision

    concrete = resolve_precision(opts.precision)
    if opts.precision != "auto" or concrete != "bfloat16":
        return concrete
    try:
        config = resolve(opts.model, require_weights=False).config
    except ModelSpecError:
        return concrete  # reported when the model is built
    return "float32" if config is not None and not config.cpu_train_bfloat16 else concrete


def new_model(opts: TrainOptions, total_steps: int, warn: Callable[[str], None]):
    """The compiled model of a new run and its preset config (None for a foreign file).
    ``opts.backbone_weights`` is set to the ImageNet file actually used, if any."""
    from basnet_cli.losses import HybridLoss
    from basnet_cli.model.basnet import OUTPUT_NAMES
    from basnet_cli.model.io import ModelSpecError, load_training_model, resolve

    try:
        source = resolve(opts.model, require_weights=False)
    except ModelSpecError as exc:
        raise TrainError(str(exc)) from None
    if opts.backbone_weights and source.kind == "preset":
        # ImageNet encoder + fresh decoder, not the preset's bundled weights
        source = dataclasses.replace(source, path=None)
    if opts.backbone_weights == "imagenet":
        opts.backbone_weights = default_backbone(warn, required=True)
    model = load_training_model(source)
    if opts.init:
        model.load_weights(opts.init)
    if (not opts.backbone_weights and not opts.init and source.path is None
            and source.config is not None and source.config.encoder == "efficientnet-lite0"):
        opts.backbone_weights = default_backbone(warn)
    if opts.backbone_weights:
        loaded = _load_backbone(model, source, opts.backbone_weights)
        warn(f"loaded {loaded} ImageNet tensors into the encoder from {opts.backbone_weights}")
    model.compile(optimizer=make_optimizer(opts, total_steps),
                  loss=[HybridLoss(name=f"{n}_loss") for n in OUTPUT_NAMES])
    return model, source.config.to_dict() if source.config else None


def default_backbone(warn: Callable[[str], None], required: bool = False) -> str | None:
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
    warn(f"the EfficientNet-Lite0 encoder starts from random weights: for ImageNet "
         f"weights {how}")
    return None


def _load_backbone(model, source, path: str) -> int:
    """ImageNet weights into the encoder: EfficientNet-Lite0 for the mobile presets, a
    torchvision ResNet for the others.  Returns the tensors loaded."""
    from basnet_cli.model.convert import ConversionError, load_backbone_weights
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


def build_training_state(model, strategy=None) -> None:
    """Create the optimizer's and the loss trackers' variables before ``fit``.

    Without a distribution strategy, Keras' TensorFlow trainer creates them inside the first
    trace of the train step, and a ``tf.function`` that creates variables is traced twice: the
    first step then costs two full traces. One eager forward pass on a 32x32 image and one
    loss evaluation build them.

    Under a strategy they are built in its scope, and ``fit``'s own symbolic build is turned
    off: it all-reduces the first (images, masks) batch across replicas only to find the state
    built, and under ``MultiWorkerMirroredStrategy`` that reduce fails ("Attempt to convert a
    value (PerReplica...)")."""
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    if strategy is not None:
        _synchronize_batch_norm(model)
    with scope:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        x = np.zeros((1, 32, 32, 3), "float32")
        y_pred = model(x, training=False)
        y = tuple(np.zeros((1, 32, 32, 1), "float32") for _ in y_pred)
        model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
        model.reset_metrics()  # the loss trackers saw the zero batch
    if strategy is not None:
        model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
        from basnet_cli.runtime import import_tf

        if isinstance(strategy, import_tf().distribute.MultiWorkerMirroredStrategy):
            _vector_logs(model)


def _synchronize_batch_norm(model) -> None:
    """Batch statistics over the global batch, as on one device: with each replica's own
    statistics the moving means and variances drift apart between workers (Keras 3 keeps them
    per replica), and each worker would save a different model."""
    from basnet_cli.runtime import import_keras

    keras = import_keras()
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            # Saved files keep synchronized=False: it is a training-time setting, and Keras
            # refuses it on other backends (a last.keras must load under JAX too).
            layer.get_config = _unsynchronized_config(layer)


def _unsynchronized_config(layer):
    def get_config() -> dict:
        return {**type(layer).get_config(layer), "synchronized": False}

    return get_config


def _vector_logs(model) -> None:
    """Under ``MultiWorkerMirroredStrategy`` Keras 3 averages each step's logs across workers
    with ``reduce(MEAN, axis=0)``, which fails on the scalar loss ("Invalid reduction dimension
    0 for input with 0 dimensions"; tensorflow/tensorflow#72388).  Logs of shape (1,) reduce to
    the workers' mean scalar."""
    from basnet_cli.runtime import import_keras

    ops = import_keras().ops
    step = model.train_step

    def train_step(data):
        return {k: ops.reshape(v, (1,)) for k, v in step(data).items()}

    model.train_step = train_step

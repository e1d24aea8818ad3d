"""The optimiser of ``basnet train``: Adam (AdamW with --weight-decay) and its LR schedule."""

from __future__ import annotations

import numpy as np

from basnet_cli.train.options import TrainOptions

COSINE_FINAL = 0.01  # --schedule cosine ends at this fraction of --lr


def make_lr(opts: TrainOptions, total_steps: int):
    """The learning rate: a float (``constant``) or a Keras schedule laid out over
    ``total_steps`` (``cosine`` with optional warm-up, ``step``)."""
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


def make_optimizer(opts: TrainOptions, total_steps: int):
    """Adam with the --beta1/--beta2/--eps of ``opts``; AdamW when --weight-decay > 0."""
    from basnet_cli.runtime import import_keras

    keras = import_keras()
    lr = make_lr(opts, total_steps)
    common = {"learning_rate": lr, "beta_1": opts.beta1, "beta_2": opts.beta2,
              "epsilon": opts.eps}
    if opts.weight_decay > 0:
        return keras.optimizers.AdamW(weight_decay=opts.weight_decay, **common)
    return keras.optimizers.Adam(**common)


def current_lr(optimizer) -> float:
    """The optimiser's learning rate at its current step (a schedule evaluated there)."""
    lr = optimizer.learning_rate
    try:
        return float(np.asarray(lr))
    except (TypeError, ValueError):
        return float(np.asarray(lr(optimizer.iterations)))

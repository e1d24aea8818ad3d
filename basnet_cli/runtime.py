"""Process-level set-up: quiet TensorFlow import, Keras backend, precision policies.

Nothing here imports TensorFlow or Keras at module import time, so ``basnet --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from enum import Enum


class Precision(str, Enum):
    """``--precision`` of every command: auto (bfloat16 on CPUs with AMX/AVX512-BF16, mixed
    float16 on GPUs, float32 otherwise), float32, bfloat16 or float16."""

    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


PRECISIONS = tuple(p.value for p in Precision)
# Keras' global dtype policy of each concrete precision.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def quiet_env(verbose: bool = False) -> None:
    """Silence TensorFlow's C++ and Python logging unless ``verbose``; turn on oneDNN.

    TensorFlow enables its oneDNN kernels by default only on CPUs with AVX-512 VNNI/BF16 or
    AMX; on AVX2-only CPUs it falls back to Eigen, which trains this project's models about 3x
    slower (bench/results.md).  ``TF_ENABLE_ONEDNN_OPTS=0`` in the environment still wins.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if "KERAS_BACKEND" not in os.environ:
        os.environ["KERAS_BACKEND"] = default_backend()


def default_backend() -> str:
    """tensorflow when installed, else jax, else torch (machines without TensorFlow)."""
    import importlib.util

    for name in ("tensorflow", "jax", "torch"):
        if importlib.util.find_spec(name) is not None:
            return name
    return "tensorflow"


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """Redirect the OS-level stderr (C++ logs written before absl is configured)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def import_keras(verbose: bool = False):
    """Import Keras (and TensorFlow when it is the backend) without log noise."""
    quiet_env(verbose)
    if verbose:
        import keras

        return keras
    with _stderr_to_devnull():
        if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")
        import keras
    return keras


def import_tf(verbose: bool = False):
    """Import TensorFlow quietly (for tf.data and exporters)."""
    quiet_env(verbose)
    if verbose:
        import tensorflow as tf

        return tf
    with _stderr_to_devnull():
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
    return tf


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty set where unavailable)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX-BF16 or AVX512-BF16 (bfloat16 matmuls in hardware)."""
    flags = cpu_flags()
    return bool({"amx_bf16", "avx512_bf16"} & flags)


def gpu_available() -> bool:
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    try:
        if backend == "tensorflow":
            tf = import_tf()
            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return any(d.platform == "gpu" for d in jax.devices())
        if backend == "torch":
            import torch

            return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - probing only
        return False
    return False


def resolve_precision(precision: str) -> str:
    """Map ``auto`` to the concrete policy for this machine.

    ``auto``: mixed bfloat16 on CPUs with AMX/AVX512-BF16 (measured faster here), mixed float16 on
    GPUs, float32 otherwise.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if gpu_available():
        return "float16"
    if cpu_has_fast_bf16():
        return "bfloat16"
    return "float32"


def set_precision(precision: str) -> str:
    """Set the global Keras dtype policy; returns the concrete precision."""
    keras = import_keras()
    concrete = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(POLICIES[concrete])
    return concrete


@contextlib.contextmanager
def policy_restored() -> Iterator[None]:
    """Put the global Keras dtype policy back as it was on leaving: a command run in-process
    (tests, notebooks) must not leave mixed precision behind for the models built after it."""
    keras = import_keras()
    previous = keras.mixed_precision.global_policy()
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)

"""Where and how a model runs: the inference usage error, ``--precision`` and ``--device``
choices, TensorFlow's device set-up and the concrete precision for a device.

Nothing here imports TensorFlow at module import time.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from enum import Enum
from typing import Any

from basnet_cli.errors import UsageError
from basnet_cli.runtime import PRECISIONS, Precision  # noqa: F401 - re-exported


class InferenceUsageError(UsageError):
    """A model, precision, device, input or output the inference pipeline cannot work with:
    the run did not start (exit 2)."""


class Device(str, Enum):
    """``--device``: auto (a GPU when TensorFlow sees one), cpu or gpu."""

    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


DEVICES = tuple(d.value for d in Device)


class Runtime(str, Enum):
    """``--runtime`` of a Keras model on the CPU: auto (the faster of the two, measured once
    and cached: :mod:`basnet_cli.inference.runtimes`), keras or onnx (ONNX Runtime)."""

    auto = "auto"
    keras = "keras"
    onnx = "onnx"


RUNTIMES = tuple(r.value for r in Runtime)


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask: what a container really gets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def import_tf_quiet(verbose: bool = False) -> Any:
    """TensorFlow, imported without its log noise (:func:`basnet_cli.runtime.import_tf`)."""
    from basnet_cli.runtime import import_tf

    return import_tf(verbose)


def configure_device(device: str, verbose: bool = False) -> str:
    """Apply ``--device`` to TensorFlow; returns a description ("cpu", "gpu x2", ...).

    Must run before the TensorFlow runtime starts (before any tf.data pipeline or model)."""
    if device not in DEVICES:
        raise InferenceUsageError(f"--device must be one of {', '.join(DEVICES)}")
    tf = import_tf_quiet(verbose)
    gpus = tf.config.list_physical_devices("GPU")
    if device == "cpu":
        if gpus:
            try:
                tf.config.set_visible_devices([], "GPU")
            except RuntimeError:  # already initialised: load_predictor pins to /CPU:0
                pass
        return "cpu"
    if device == "gpu" and not gpus:
        raise InferenceUsageError("--device gpu: TensorFlow sees no GPU (use --device auto/cpu)")
    return f"gpu x{len(gpus)}" if gpus else "cpu"


def concrete_precision(precision: str, device: str) -> str:
    """``--precision`` as a concrete policy for ``device`` (a :func:`configure_device`
    description): ``auto`` with only the CPU counts the CPU's bfloat16 support alone (not the
    machine's GPUs, which :func:`basnet_cli.runtime.resolve_precision` looks at)."""
    from basnet_cli.runtime import cpu_has_fast_bf16, resolve_precision

    if precision not in PRECISIONS:
        raise InferenceUsageError(f"--precision must be one of {', '.join(PRECISIONS)}")
    if precision == "auto" and device == "cpu":
        return "bfloat16" if cpu_has_fast_bf16() else "float32"
    return resolve_precision(precision)


@contextlib.contextmanager
def quiet_native_output(enabled: bool = True) -> Iterator[None]:
    """Send the OS-level stdout and stderr to /dev/null (TFLite's and the MLIR converter's C++
    chatter: "Created TensorFlow Lite XNNPACK delegate", "fully_quantize: ...")."""
    if not enabled:
        yield
        return
    fds = []
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
            fds.append(stream.fileno())
        except (AttributeError, OSError, ValueError):
            continue
    saved = [(fd, os.dup(fd)) for fd in fds]
    try:
        with open(os.devnull, "w") as null:
            for fd, _ in saved:
                os.dup2(null.fileno(), fd)
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)

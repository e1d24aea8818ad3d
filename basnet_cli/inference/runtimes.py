"""Which runtime runs a Keras model on the CPU: Keras itself (at its ``--precision``) or ONNX
Runtime on the model's ONNX translation (:mod:`basnet_cli.model.onnx`).

``--runtime auto`` times both on this machine, for this model file, input size and batch (a
synthetic batch, alternated rounds, medians), keeps the faster, and remembers the choice in a
small cache file, so the measurement is paid once per machine and model.  Runs too small to pay
for it use Keras (or a choice already cached).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli.inference.device import RUNTIMES, InferenceUsageError, Runtime

__all__ = ["RUNTIMES", "Runtime", "RuntimeChoice", "cache_path", "measure", "onnx_predictor"]


# auto measures only for runs with at least this many images (a measurement costs seconds)
MEASURE_MIN_IMAGES = 64
ROUNDS = 3


@dataclass
class RuntimeChoice:
    """What runs the model and why: ``runtime`` "keras", "onnxruntime" or an exported file's;
    ``precision`` its precision ("" for an exported file);
    ``how`` "asked", "measured", "cached" or why auto kept Keras; ``rates``: images/s of each
    candidate when measured."""

    runtime: str
    precision: str
    how: str
    rates: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        rates = ", ".join(f"{name} {rate:.1f}" for name, rate in self.rates.items())
        how = f"{self.how}: {rates} images/s" if rates else self.how
        return " ".join(filter(None, (self.runtime, self.precision))) + f" ({how})"


def onnx_available() -> str | None:
    """None when ONNX Runtime and the onnx package can be imported, else why not."""
    from importlib.util import find_spec

    # found, not imported: importing ONNX Runtime costs time a Keras run does not need
    if find_spec("onnx") is None or find_spec("onnxruntime") is None:
        return "ONNX Runtime is not installed (pip install 'basnet-cli[export]')"
    return None


def cache_path() -> Path:
    """``$BASNET_CACHE_DIR`` or ``$XDG_CACHE_HOME/basnet-cli`` (``~/.cache/basnet-cli``)."""
    root = os.environ.get("BASNET_CACHE_DIR")
    if root:
        return Path(root) / "runtimes.json"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "basnet-cli" / "runtimes.json"


def cache_key(model_file: Path | None, identity: str, size: int, batch: int) -> str:
    """What a measurement depends on: the model file (path, size, mtime), input size, batch,
    the CPU and the runtimes' versions."""
    from basnet_cli.runtime import cpu_flags

    parts = [identity, str(size), str(batch), str(os.cpu_count())]
    if model_file is not None and model_file.exists():
        st = model_file.stat()
        parts += [str(model_file.resolve()), str(st.st_size), str(st.st_mtime_ns)]
    try:
        with open("/proc/cpuinfo") as fh:
            parts += [next((line for line in fh if line.startswith("model name")), "")]
    except OSError:
        pass
    parts.append(",".join(sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})))
    from importlib.metadata import PackageNotFoundError, version

    for package in ("tensorflow", "onnxruntime"):
        try:
            parts.append(version(package))
        except PackageNotFoundError:
            pass
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def cached(key: str) -> str | None:
    try:
        value = json.loads(cache_path().read_text()).get(key, {}).get("runtime")
    except (OSError, ValueError, AttributeError):
        return None
    return value if value in ("keras", "onnx") else None


def remember(key: str, runtime: str, rates: dict[str, float]) -> None:
    """Store a measured choice (best effort: an unwritable cache only costs a re-measure)."""
    path = cache_path()
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):  # unreadable or corrupt: start a new one
        data = {}
    if not isinstance(data, dict):
        data = {}
    try:
        data[key] = {"runtime": runtime, "rates": {k: round(v, 3) for k, v in rates.items()},
                     "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass


def onnx_predictor(model: Any, description: str) -> Any:
    """ONNX Runtime on the float32 Keras ``model``'s ONNX translation."""
    why = onnx_available()
    if why is not None:
        raise InferenceUsageError(f"--runtime onnx: {why}")
    import onnx

    from basnet_cli.inference.exported import OnnxPredictor
    from basnet_cli.model.onnx import OnnxTranslationError, keras_to_onnx

    try:
        proto = keras_to_onnx(model, check=False)
    except OnnxTranslationError as exc:
        raise InferenceUsageError(f"--runtime onnx: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="basnet-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save_model(proto, str(path))
        del proto
        predictor = OnnxPredictor(path, providers=["CPUExecutionProvider"])
    predictor.description = description
    return predictor


def measure(candidates: dict[str, Callable[[np.ndarray], Any]], size: int, batch: int,
            rounds: int = ROUNDS) -> dict[str, float]:
    """Images/s of each predictor on one synthetic batch: a warm-up call each, then
    ``rounds`` alternated timed calls; the median of each."""
    x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    for fn in candidates.values():
        fn(x)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(rounds):
        names = list(candidates) if r % 2 == 0 else list(candidates)[::-1]
        for name in names:
            t0 = time.perf_counter()
            candidates[name](x)
            times[name].append(time.perf_counter() - t0)
    return {name: batch / float(np.median(t)) for name, t in times.items()}

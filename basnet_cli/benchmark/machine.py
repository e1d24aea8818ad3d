"""The machine a benchmark runs on: CPU, cores, memory, load, peak RSS, framework versions."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from typing import Any

# CPU features that matter for the float32/bfloat16 choice.
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
                "amx_int8")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_cores() -> int:
    """CPUs this process may run on (the affinity mask: what a container really gets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024 if sys.platform != "darwin" else peak / 1024**2, 1)


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover
        return None


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat (Linux), else None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user..steal


def cpu_busy_fraction(window_s: float = 1.0) -> float | None:
    """Share of all CPUs' time spent busy during the next ``window_s`` seconds (0..1).

    Unlike the 1-minute load average, which still reads high a minute after a heavy job has
    ended, this says whether something is running now. Taken while the caller sleeps, so it
    measures the other processes. None where /proc/stat is missing (not Linux).
    """
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(window_s)
    second = _cpu_times()
    if second is None:
        return None
    total = second[1] - first[1]
    if total <= 0:
        return None
    return round(min(1.0, max(0.0, 1.0 - (second[0] - first[0]) / total)), 3)


def machine_info() -> dict[str, Any]:
    """CPU model, cores, the CPU features relevant to precision, memory, OS, Python."""
    from basnet_cli.runtime import cpu_flags

    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "cores": cpu_cores(),
        "logical_cpus": os.cpu_count(),
        "cpu_features": [f for f in CPU_FEATURES if f in flags],
        "memory_gib": memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One line for tables: ``Intel(R) Xeon(R) ... @ 2.50GHz, 2 cores``."""
    info = info or machine_info()
    return f"{info['cpu']}, {info['cores']} cores"


def framework_info() -> dict[str, Any]:
    """Keras backend and versions (imports Keras)."""
    from basnet_cli.runtime import import_keras

    keras = import_keras()
    backend = keras.backend.backend()
    out: dict[str, Any] = {"backend": backend, "keras": keras.__version__}
    if backend == "tensorflow":
        import tensorflow as tf

        out["tensorflow"] = tf.__version__
    elif backend == "jax":  # pragma: no cover - not installed here
        import jax

        out["jax"] = jax.__version__
    return out

"""Speed and memory on this machine: the logic of ``basnet benchmark`` and of ``make bench``.

Four measurements, each a warm-up followed by timed repeats (medians reported):

- **inference**: the model alone, a fixed random batch through the same traced
  ``tf.function`` ``basnet predict`` uses (:class:`basnet_cli.inference.KerasPredictor`);
- **predict**: the streaming run of ``basnet predict`` (:func:`basnet_cli.stream.run_stream`):
  decode, resize, infer, resize back, encode and atomically write PNG masks into a temporary
  folder;
- **train**: one optimiser step of the 8-output training model with the hybrid loss
  (``train_on_batch``, the function ``model.fit`` runs in ``basnet train``);
- **peak RSS** of the process (``getrusage``), after each phase (it only grows).

A preset without trained weights is benchmarked from a random initialisation: speed and memory
do not depend on the weights' values.  The helpers here are also the building blocks of the
suite in ``bench/run_bench.py`` (A/B alternation of several models in one process).

Modules: :mod:`.machine` (CPU, memory, load, peak RSS, framework versions) and :mod:`.run`
(device set-up, models, timed steps, :func:`run_benchmark`).
"""

from __future__ import annotations

from basnet_cli.benchmark.machine import (
    CPU_FEATURES,
    cpu_busy_fraction,
    cpu_cores,
    cpu_model,
    framework_info,
    load_average,
    machine_info,
    machine_line,
    memory_gib,
    peak_rss_mib,
)
from basnet_cli.benchmark.run import (
    PHASES,
    RANDOM_INIT_NOTE,
    BenchmarkError,
    BenchmarkOptions,
    BenchmarkResult,
    BenchModel,
    alternate,
    compile_for_training,
    list_images,
    load_model,
    release,
    run_benchmark,
    setup_device,
    summarize,
    synthetic_photos,
    time_inference,
    time_predict,
    time_train,
    usable_photos,
)

__all__ = [
    "BenchModel", "BenchmarkError", "BenchmarkOptions", "BenchmarkResult", "CPU_FEATURES",
    "PHASES", "RANDOM_INIT_NOTE", "alternate", "compile_for_training", "cpu_busy_fraction",
    "cpu_cores", "cpu_model", "framework_info", "list_images", "load_average", "load_model",
    "machine_info", "machine_line", "memory_gib", "peak_rss_mib", "release", "run_benchmark",
    "setup_device", "summarize", "synthetic_photos", "time_inference", "time_predict",
    "time_train", "usable_photos",
]

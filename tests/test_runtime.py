"""Process-level set-up (:mod:`basnet_cli.runtime`): environment defaults, the ``auto``
precision, and the global dtype policy that in-process runs must leave as they found it."""

from __future__ import annotations

import pytest

from basnet_cli import runtime


def test_quiet_env_turns_onednn_on_unless_the_user_said_otherwise(monkeypatch) -> None:
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    runtime.quiet_env()
    assert runtime.os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    runtime.quiet_env()
    assert runtime.os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"


def test_concrete_precisions_pass_through_and_unknown_ones_are_refused() -> None:
    for precision in ("float32", "bfloat16", "float16"):
        assert runtime.resolve_precision(precision) == precision
    with pytest.raises(ValueError, match="precision must be one of auto, float32"):
        runtime.resolve_precision("fp8")


@pytest.mark.parametrize(("flags", "expected"), [
    ({"avx2", "fma"}, "float32"),
    ({"avx512f", "avx512_bf16"}, "bfloat16"),
    ({"amx_bf16", "amx_tile"}, "bfloat16"),
])
def test_auto_precision_follows_the_cpu_flags(monkeypatch, flags, expected) -> None:
    monkeypatch.setattr(runtime, "gpu_available", lambda: False)
    monkeypatch.setattr(runtime, "cpu_flags", lambda: set(flags))
    assert runtime.resolve_precision("auto") == expected


def test_auto_precision_is_float16_on_a_gpu(monkeypatch) -> None:
    monkeypatch.setattr(runtime, "gpu_available", lambda: True)
    assert runtime.resolve_precision("auto") == "float16"


def test_policy_restored_puts_the_global_policy_back_even_after_an_error() -> None:
    keras = runtime.import_keras()
    before = keras.mixed_precision.global_policy().name
    with runtime.policy_restored():
        assert runtime.set_precision("bfloat16") == "bfloat16"
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == before
    with pytest.raises(RuntimeError, match="boom"), runtime.policy_restored():
        runtime.set_precision("float16")
        raise RuntimeError("boom")
    assert keras.mixed_precision.global_policy().name == before == "float32"

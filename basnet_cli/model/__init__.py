"""BASNet model: presets, builder, loading."""

from basnet_cli.model.config import (
    DEFAULT_PRESET,
    PRESETS,
    PUBLIC_PRESETS,
    BASNetConfig,
    get_preset,
)

__all__ = ["DEFAULT_PRESET", "PRESETS", "PUBLIC_PRESETS", "BASNetConfig", "get_preset"]

"""`basnet convert` (not built yet)."""

from __future__ import annotations

from basnet_cli.cli.app import app, not_built


@app.command(
    "convert", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def convert_command() -> None:
    """Not built yet: exits with code 3."""
    raise not_built("convert", "official PyTorch weights conversion")

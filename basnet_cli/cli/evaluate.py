"""`basnet evaluate` (not built yet)."""

from __future__ import annotations

from basnet_cli.cli.app import app, not_built


@app.command(
    "evaluate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def evaluate_command() -> None:
    """Not built yet: exits with code 3."""
    raise not_built("evaluate", "see the open issue for this command")

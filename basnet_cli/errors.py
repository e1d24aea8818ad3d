"""The project's error types, one per kind of failure; ``cli.app.exit_code`` maps them to exit
codes in one place.

Core modules raise subclasses of these (``PredictUsageError(UsageError)``, ...) so the commands
need no per-module ``except`` lists to pick an exit code.
"""

from __future__ import annotations


class BasnetError(Exception):
    """Base of every error the commands report as one ``error:`` line."""


class UsageError(BasnetError, ValueError):
    """Bad options or arguments, nothing to do, an unknown or unloadable model, an unwritable
    output: the run did not start (exit 2)."""


class RunFailure(BasnetError, RuntimeError):
    """The run started and could not finish (exit 1)."""

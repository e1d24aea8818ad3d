"""The ``basnet`` command line (Typer).  Thin: parse options, call the logic modules, print.

Each sub-command lives in its own module of this package; heavy imports (TensorFlow, Keras)
happen inside the command functions so that ``basnet --help`` and ``--version`` answer at once.
"""

from __future__ import annotations

from basnet_cli.cli.app import (
    app,
    console,
    err_console,
    install_signal_handlers,
    use_private_tempdir,
)

# Importing the command modules registers their commands on ``app``.
from basnet_cli.cli import (  # noqa: E402,F401  isort: skip
    benchmark,
    convert,
    evaluate,
    export,
    info,
    predict,
    train,
)


def main() -> None:
    install_signal_handlers()
    use_private_tempdir()
    app()


__all__ = ["app", "console", "err_console", "main"]

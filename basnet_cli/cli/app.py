"""The Typer application object and shared console helpers."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from basnet_cli import __version__

# Exit codes scripts can trust.
EXIT_OK = 0
EXIT_FAILURES = 1  # the run finished but some inputs failed
EXIT_USAGE = 2  # bad options, nothing to do, unknown model, unwritable output
EXIT_NOT_BUILT = 3  # a command that is not implemented yet

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="basnet",
    help=(
        "BASNet salient-object / foreground masks from the command line.\n\n"
        "Models: every command takes --model, a preset name (basnet-mobile, the default; basnet, "
        "basnet-r18, basnet-lite) or a .weights.h5 / .keras file."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"basnet-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", "-V", callback=_version_callback, is_eager=True,
                     help="Print the version and exit."),
    ] = None,
) -> None:
    """BASNet salient-object masks."""


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` to stderr and return an Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def not_built(command: str, issue: str) -> typer.Exit:
    return fail(f"`basnet {command}` is not built yet ({issue}).", EXIT_NOT_BUILT)

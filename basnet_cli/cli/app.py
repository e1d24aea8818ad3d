"""The Typer application object and shared console helpers."""

from __future__ import annotations

import signal
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from basnet_cli import __version__
from basnet_cli.display import printable
from basnet_cli.errors import UsageError

# Exit codes scripts can trust.
EXIT_OK = 0
EXIT_FAILURES = 1  # the run finished but some inputs failed
EXIT_USAGE = 2  # bad options, nothing to do, unknown model, unwritable output

console = Console()
# Messages on stderr are one line each whatever the terminal width (scripts grep them).
err_console = Console(stderr=True, soft_wrap=True)

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


def safe(text: object) -> str:
    """User-supplied text (a file name, an error reason) for Rich: markup and control
    characters escaped, so it prints as one literal line."""
    return escape(printable(text))


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` to stderr and return an Exit to raise.  ``message`` is Rich
    markup (callers escape user text with :func:`safe`); control characters are escaped here."""
    err_console.print(f"[bold red]error:[/] {printable(message)}", highlight=False)
    return typer.Exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread: every command stops as on Ctrl-C (finished
    work kept, a message, a summary) and exits 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` (SIGINT is Python's KeyboardInterrupt)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _raise_terminated)
        except (ValueError, OSError):  # not the main thread, or no such signal here
            pass


def use_private_tempdir() -> None:
    """Point this process's temporary files (TensorFlow's autograph modules among them, which
    it never deletes) at a folder of its own, removed when the process exits."""
    import atexit
    import shutil
    import tempfile

    try:
        folder = tempfile.mkdtemp(prefix="basnet-")
    except OSError:  # no writable temporary folder: leave everything as it is
        return
    tempfile.tempdir = folder
    atexit.register(shutil.rmtree, folder, True)


def interrupted(exc: KeyboardInterrupt, message: str = "interrupted") -> typer.Exit:
    """Print ``error: message (SIGNAL)`` and return the Exit for an interrupted run: 130 for
    Ctrl-C, 128 + N for signal N."""
    signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
    name = signal.Signals(signum).name
    return fail(f"{message} ({name})", 128 + int(signum))


def exit_code(exc: BaseException) -> int:
    """The exit code for an error a command reports: 2 for a :class:`UsageError` (the run did
    not start), 1 for any other (:class:`basnet_cli.errors.RunFailure`: it started and failed)."""
    return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILURES


def error_exit(exc: BaseException) -> typer.Exit:
    """Print ``exc`` as one ``error:`` line and return the Exit with its :func:`exit_code`."""
    return fail(safe(exc), exit_code(exc))

"""Options with a fixed set of values (``--precision``, ``--device``, ``--curve``...) as Enums:
a bad value is one ``error:`` line and exit 2, like every other bad option."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TypeVar

from basnet_cli.cli.app import fail

E = TypeVar("E", bound=Enum)


def one_of(kind: type[E], option: str) -> Callable[[object], E]:
    """A Typer ``parser`` for ``option``: the member of ``kind`` with that value (exact case)."""
    def parse(value: object) -> E:
        if isinstance(value, kind):
            return value
        try:
            return kind(value)
        except ValueError:
            raise fail(f"{option} must be one of {values(kind, ', ')}") from None

    return parse


def values(kind: type[Enum], sep: str = ", ") -> str:
    """The values of ``kind``, joined by ``sep``."""
    return sep.join(str(m.value) for m in kind)


def metavar(kind: type[Enum]) -> str:
    """The help's metavar: ``[a|b|c]``."""
    return f"[{values(kind, '|')}]"

"""Progress bars for the long runs; silent in tests (``quiet``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

console = Console(stderr=True)
_settings = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    _settings["quiet"] = quiet


def say(text: str) -> None:
    if not _settings["quiet"]:
        console.print(text)


@contextlib.contextmanager
def progress(description: str, total: float) -> Iterator[Callable[[float], None]]:
    """A bar for one step; the caller reports how far it got (absolute, not increments)."""
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=_settings["quiet"],
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda completed: bar.update(task, completed=completed)

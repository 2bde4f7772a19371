"""What every ``replicator`` command shares: consoles, options, exit codes, error reporting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from replicator.config import Config, load_config
from replicator.errors import ConfigError, ReplicatorError

console = Console()
errors = Console(stderr=True)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Path to replicator.yaml.", show_default=False)
]
PairOption = Annotated[
    str | None,
    typer.Option("--pair", help="Only the pair whose source table is this.", show_default=False),
]
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130
T = TypeVar("T")


def load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        errors.print(f"[red]config error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from exc


def run_reporting_errors(coroutine: Coroutine[Any, Any, T]) -> T:
    return run_reporting_errors_sync(lambda: asyncio.run(coroutine))


def run_reporting_errors_sync(call: Callable[[], T]) -> T:
    try:
        return call()
    except ConfigError as exc:
        errors.print(f"[red]config error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from exc
    except ReplicatorError as exc:
        errors.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc

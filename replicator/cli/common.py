"""What every ``replicator`` command shares: consoles, options, exit codes, error reporting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from replicator.config import environment
from replicator.config.environment import CONFIG_ENV, CONFIG_YAML_ENV
from replicator.config.schema import Config
from replicator.errors import ConfigError, ReplicatorError
from replicator.telemetry.logs import LogFormat, configure_logs

console = Console()
errors = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help=f"Path to replicator.yaml (default: the file ${CONFIG_ENV} names, or the YAML "
        f"${CONFIG_YAML_ENV} holds).",
        show_default=False,
    ),
]
LogFormatOption = Annotated[
    LogFormat | None,
    typer.Option(
        "--log-format",
        help="Log lines as text, or as JSON objects one a line (default: the config's "
        "log_format, else text).",
        show_default=False,
    ),
]
PairOption = Annotated[
    str | None,
    typer.Option("--pair", help="Only the pair whose source table is this.", show_default=False),
]
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130
T = TypeVar("T")


def load(
    path: Path | None, log_format: LogFormat | None = None, *, log_level: str = "WARNING"
) -> Config:
    """The config of ``-c path``, else of REPLICATOR_CONFIG or REPLICATOR_CONFIG_YAML.

    Logging is set up from it: ``log_format``, else the config's ``log_format``.
    """
    try:
        config = environment.load(path)
    except ConfigError as exc:
        configure_logs(log_level, log_format or LogFormat.TEXT)
        _config_error(exc)
    configure_logs(log_level, log_format or LogFormat(config.log_format))
    return config


def config_name(path: Path | None) -> str:
    """The config's name in messages: its path, or the variable it came from."""
    try:
        return environment.config_source(path)
    except ConfigError as exc:
        _config_error(exc)


def _config_error(exc: ConfigError) -> NoReturn:
    errors.print(f"[red]config error[/red] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_CONFIG) from exc


def run_reporting_errors(coroutine: Coroutine[Any, Any, T]) -> T:
    return run_reporting_errors_sync(lambda: asyncio.run(coroutine))


def run_reporting_errors_sync(call: Callable[[], T]) -> T:
    """``call()``; our errors become one line each and an exit code, bugs a traceback.

    The service runs in task groups, so its errors often arrive wrapped in groups.
    """
    try:
        return call()
    except (ReplicatorError, BaseExceptionGroup) as exc:
        problems = _leaves(exc)
        if not all(isinstance(problem, ReplicatorError) for problem in problems):
            raise  # a bug of ours: the traceback is the report
        for problem in problems:
            kind = "config error" if isinstance(problem, ConfigError) else "error"
            errors.print(f"[red]{kind}[/red] {problem}", highlight=False, soft_wrap=True)
        only_config = all(isinstance(problem, ConfigError) for problem in problems)
        raise typer.Exit(EXIT_CONFIG if only_config else 1) from exc


def _leaves(exc: BaseException) -> list[BaseException]:
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]

"""What every ``replicator`` command shares: consoles, options, exit codes, error reporting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, Protocol, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from replicator.aws.retry import giving_up_after
from replicator.config import environment
from replicator.config.environment import CONFIG_ENV, CONFIG_YAML_ENV
from replicator.config.schema import Config
from replicator.errors import ConfigError, GaveUp, ReplicatorError
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
GiveUpOption = Annotated[
    float,
    typer.Option(
        "--give-up-after",
        envvar="REPLICATOR_GIVE_UP_AFTER",
        min=0.1,
        help="Seconds an AWS call may keep failing, without a success in between, before the "
        "command gives up and exits 1 (throttles and outages are retried until then).",
    ),
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
    errors.print(f"[red]config error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_CONFIG) from exc


def run_reporting_errors(coroutine: Coroutine[Any, Any, T]) -> T:
    return run_reporting_errors_sync(lambda: asyncio.run(coroutine))


def run_tool(coroutine: Coroutine[Any, Any, T], *, give_up_after: float, resume: str) -> T:
    """Run an operator's command: its AWS calls give up after ``give_up_after`` seconds of
    consecutive failures, and then one line gives the last error and ``resume``, how to
    carry on from where it stopped."""
    with giving_up_after(give_up_after):
        return run_reporting_errors_sync(lambda: asyncio.run(coroutine), resume=resume)


def run_reporting_errors_sync(call: Callable[[], T], *, resume: str = "") -> T:
    """``call()``; our errors become one line each and an exit code, bugs a traceback.

    The service runs in task groups, so its errors often arrive wrapped in groups.
    """
    try:
        return call()
    except (ReplicatorError, BaseExceptionGroup) as exc:
        problems = _leaves(exc)
        if not all(isinstance(problem, ReplicatorError) for problem in problems):
            raise  # a bug of ours: the traceback is the report
        gave_up = [problem for problem in problems if isinstance(problem, GaveUp)]
        if gave_up:
            # Every segment or worker met the same outage: the first to give up says it.
            hint = f"; {resume}" if resume else ""
            errors.print(f"[red]gave up[/red] {gave_up[0]}{hint}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from exc
        told: set[str] = set()
        for problem in problems:
            kind = "config error" if isinstance(problem, ConfigError) else "error"
            # The message is text: '[/path]' or an IPv6 URL is no console markup.
            line = f"[red]{kind}[/red] {escape(str(problem))}"
            if line not in told:  # every segment met the same refused role: one line
                told.add(line)
                errors.print(line, highlight=False, soft_wrap=True)
        only_config = all(isinstance(problem, ConfigError) for problem in problems)
        raise typer.Exit(EXIT_CONFIG if only_config else 1) from exc


def _leaves(exc: BaseException) -> list[BaseException]:
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]


# The resume hint of a tool that only reads: nothing to pick up where it stopped.
UNCHANGED = "nothing was changed: run it again once the region answers"


class Listed(Protocol):
    """An entry a ``list`` command prints (a dead letter, a conflict)."""

    def line(self) -> str: ...

    def as_json(self) -> dict[str, Any]: ...


def print_entries(found: Sequence[Listed], *, as_json: bool) -> None:
    """A JSON array of the entries, or one line each and their count."""
    if as_json:
        print(json.dumps([entry.as_json() for entry in found], indent=2))
        return
    for entry in found:
        console.print(entry.line(), highlight=False, soft_wrap=True)
    console.print(f"{len(found)} entries")

"""The lab's commands: ``replicator demo`` (embedded regions, load, live view, verify) and
``replicator chaos`` (the fault suite). Both import the demo and chaos packages only inside
the command, so the product's other commands never load them.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from replicator.cli.common import (
    EXIT_CONFIG,
    LogFormatOption,
    console,
    errors,
    run_reporting_errors_sync,
)
from replicator.telemetry.logs import LogFormat, configure_logs


class DemoSource(StrEnum):
    DYNAMODB = "dynamodb"
    KINESIS = "kinesis"


def demo(
    *,
    duration: Annotated[
        float, typer.Option(help="Seconds of load before verifying.", min=1, max=3600)
    ] = 30,
    keys: Annotated[
        int | None,
        typer.Option(
            help="Size of the hot key set [default: 200; 20 with --active-active].",
            min=1,
            max=100_000,
        ),
    ] = None,
    web_port: Annotated[
        int, typer.Option(help="Dashboard port on 127.0.0.1 (0: any free port).", min=0, max=65535)
    ] = 8080,
    rate: Annotated[float, typer.Option(help="Load in writes per second.", min=1, max=10_000)] = 40,
    active_active: Annotated[
        bool,
        typer.Option(
            "--active-active",
            help="Writers in both regions on the same keys: shows the writes lost to "
            "concurrent writers and the conflict feed that records them.",
        ),
    ] = False,
    source: Annotated[
        DemoSource,
        typer.Option(
            help="Where the replicator reads the changes: the table's DynamoDB stream, or a "
            "Kinesis data stream the lab fills as Kinesis delivers (shards, duplicates, ties).",
        ),
    ] = DemoSource.DYNAMODB,
) -> None:
    """Embedded two-region demo: load with conflicts and deletes, live view, then verify."""
    # No --log-format here: the demo's live view owns the terminal and tallies dead letters
    # through its own log handler.
    from replicator.demo.run import run_demo

    kinesis = source is DemoSource.KINESIS
    if active_active and kinesis:
        errors.print(
            "[red]error[/red] --source kinesis runs the one-way demo: leave out --active-active",
            highlight=False,
        )
        raise typer.Exit(EXIT_CONFIG)
    if active_active:
        active_demo(duration=duration, keys=keys or 20, web_port=web_port, rate=rate)
        return
    keys = keys or 200

    result = run_reporting_errors_sync(
        lambda: run_demo(
            duration=duration,
            keys=keys,
            console=console,
            web_port=web_port,
            rate=rate,
            kinesis=kinesis,
        )
    )
    counts = ", ".join(f"{op} {n}" for op, n in sorted(result.load.counts.items()))
    console.print(
        f"load: {result.load.operations} writes ({counts}); replicator read "
        f"{result.totals['records_read']} stream records"
    )
    if kinesis:
        done = ", ".join(f"{kind} {n}" for kind, n in sorted(result.delivered.items()))
        console.print(
            f"Kinesis delivered as it may: {done or 'in order, once'}",
            highlight=False,
            soft_wrap=True,
        )
    dead = result.totals["dead_lettered"]
    if dead:
        # The demo's unversioned writes, dead-lettered on purpose: one line, not one per record.
        console.print(
            f"dead-lettered {dead} records into the DLQ table {result.dlq_table}, e.g. "
            f"{result.dead_letter_example or 'see the table'}",
            highlight=False,
        )
    for difference in result.report.differences[:10]:
        console.print(f"  {difference}", highlight=False)
    count = len(result.report.differences)
    console.print(f"verify: {count} differences ({result.report.compared} keys compared)")
    if count:
        raise typer.Exit(1)


def active_demo(*, duration: float, keys: int, web_port: int, rate: float) -> None:
    from replicator.demo.active import run_active_demo

    result = run_reporting_errors_sync(
        lambda: run_active_demo(
            duration=duration, keys=keys, console=console, web_port=web_port, rate=rate
        )
    )
    console.print(f"verify: {result.differences} differences", highlight=False)
    console.print(result.closing_line(), highlight=False, soft_wrap=True)
    if result.differences:
        raise typer.Exit(1)


def chaos(
    *,
    scenario: Annotated[
        str, typer.Option(help="A scenario name, several separated by commas, or all.")
    ] = "all",
    list_: Annotated[
        bool, typer.Option("--list", help="Print the scenario names, one a line, and exit.")
    ] = False,
    quick: Annotated[bool, typer.Option(help="Short faults and a small workload (CI).")] = False,
    seed: Annotated[int, typer.Option(help="Seeds the workload and the faults.")] = 0,
    out: Annotated[
        Path, typer.Option(help="Directory for chaos-report.json/.html and process logs.")
    ] = Path(),
    log_format: LogFormatOption = None,
) -> None:
    """Run the chaos suite against embedded moto regions; exit 1 if any scenario fails."""
    from chaos.catalog import SCENARIOS
    from chaos.report import table
    from chaos.suite import run_suite

    if list_:
        for name in SCENARIOS:
            console.print(name, highlight=False)
        return
    # The faults are deliberate: their retry warnings would drown the table.
    configure_logs("ERROR", log_format or LogFormat.TEXT)
    try:
        report = run_suite(
            scenario,
            quick=quick,
            seed=seed,
            out=out,
            progress=lambda r: console.print(
                f"{r.name}: {'pass' if r.passed else 'FAIL'}", highlight=False
            ),
        )
    except ValueError as exc:
        errors.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from exc
    # A pipe or CI log gets the whole table rather than 80 columns of ellipses.
    (console if console.is_terminal else Console(width=160)).print(table(report.results))
    for result in report.results:
        for failure in result.failures:
            console.print(f"  {result.name}: {failure}", highlight=False, soft_wrap=True)
    console.print(f"reports: {report.json_path} {report.html_path} ({report.seconds:.0f} s)")
    if not report.passed:
        raise typer.Exit(1)

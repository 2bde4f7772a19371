"""The ``replicator`` command: parses arguments and calls library functions."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from replicator import __version__
from replicator.aws.retry import TOOL_GIVE_UP_AFTER_SECONDS
from replicator.cli.common import (
    EXIT_INTERRUPTED,
    UNCHANGED,
    ConfigOption,
    GiveUpOption,
    LogFormatOption,
    PairOption,
    config_name,
    console,
    errors,
    load,
    run_reporting_errors,
    run_reporting_errors_sync,
    run_tool,
)
from replicator.cli.conflicts import conflicts_app
from replicator.cli.dlq import dlq_app
from replicator.cli.lab import chaos, demo
from replicator.cli.replay import replay
from replicator.service.gc_tuning import GC_THRESHOLDS

if TYPE_CHECKING:
    from replicator.tools.verify import Report

app = typer.Typer(
    no_args_is_help=True,
    help="Cross-region replication for DynamoDB tables (last writer wins, tombstoned deletes).",
)


def _print_version(wanted: bool) -> None:
    if wanted:
        console.print(f"replicator {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass  # typer adds --install-completion and --show-completion beside --version


@app.command()
def validate(
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    check_aws: Annotated[
        bool,
        typer.Option(
            "--check-aws",
            help="Also ask AWS: each Kinesis pair's stream exists and keeps records for less "
            "time than the pair's tombstone_ttl.",
        ),
    ] = False,
    give_up_after: GiveUpOption = TOOL_GIVE_UP_AFTER_SECONDS,
) -> None:
    """Check a config file; print the first mistake per field and exit 2 if any."""
    loaded = load(config, log_format)
    targets = sum(len(p.targets) for p in loaded.pairs)
    if check_aws:
        from replicator.service.kinesis import check_kinesis_pairs

        run_tool(check_kinesis_pairs(loaded), give_up_after=give_up_after, resume=UNCHANGED)
    console.print(f"{config_name(config)}: ok ({len(loaded.pairs)} table(s), {targets} target(s))")


@app.command()
def run(
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Replicate until SIGTERM/SIGINT, then drain in-flight writes, checkpoint and exit 0."""
    gc.set_threshold(*GC_THRESHOLDS)  # the service's settings, already for its imports
    from replicator.models import Outcome
    from replicator.service.run import metrics_for, run_service

    loaded = load(config, log_format, log_level=log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        metrics = metrics_for(loaded)
        try:
            await run_service(loaded, stop=stop, metrics=metrics)
        finally:
            figures = " ".join(
                f"{name}={metrics.total(name)}"
                for name in ("records_read", *(o.value for o in Outcome), "retries")
            )
            logging.getLogger("replicator").info("summary: %s", figures)
            metrics.shutdown()

    run_reporting_errors(main())


@app.command()
def verify(
    *,
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    pair: PairOption = None,
    show: Annotated[int, typer.Option(help="How many differing keys to list.", min=0)] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON (every difference).")
    ] = False,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Fix each difference (one-way: the source's state, compare-and-set; "
            "active-active: the key's winner through the normal rule), then verify again.",
        ),
    ] = False,
    give_up_after: GiveUpOption = TOOL_GIVE_UP_AFTER_SECONDS,
) -> None:
    """Compare the tables of each pair (tombstone-aware); exit 1 if any key differs."""
    from replicator.tools.repair import repair as repair_targets
    from replicator.tools.verify import verify as verify_tables

    loaded = load(config, log_format)
    progress: Callable[[str], None] = _quiet if as_json else _progress_line

    def verified() -> Report:
        return run_tool(
            verify_tables(loaded, pair=pair, on_progress=progress),
            give_up_after=give_up_after,
            resume="verify writes nothing: run it again once the region answers",
        )

    report = verified()
    if repair and report.differences:
        _print_report(report, show, as_json=False)
        fixed = run_tool(
            repair_targets(loaded, report),
            give_up_after=give_up_after,
            # Compare-and-set: what was repaired stays, the rest is found again.
            resume="repair writes compare-and-set: run verify --repair again to finish",
        )
        console.print(
            f"repair: {fixed.repaired} written, {len(fixed.moved)} skipped because the target "
            f"changed meanwhile, {len(fixed.unrepairable)} unrepairable"
        )
        for difference, reason in fixed.unrepairable[:show]:
            console.print(f"  {difference}: {reason}", highlight=False)
        report = verified()
    _print_report(report, show, as_json=as_json)
    if report.differences:
        raise typer.Exit(1)


def _quiet(_: str) -> None:
    pass


def _progress_line(text: str) -> None:
    errors.print(f"[dim]{text}[/dim]", highlight=False)


def _print_report(report: Report, show: int, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
        return
    for difference in report.differences[:show]:
        console.print(f"  {difference}", highlight=False)
    console.print(f"{len(report.differences)} differences ({report.compared} keys compared)")


@app.command()
def backfill(
    *,
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    pair: PairOption = None,
    segments: Annotated[
        int, typer.Option(help="Parallel scan segments (a resumed run keeps its own).", min=1)
    ] = 8,
    rate: Annotated[
        float | None,
        typer.Option(help="Writes per second per target (default: the pair's cap).", min=1),
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Start over instead of resuming.")
    ] = False,
    give_up_after: GiveUpOption = TOOL_GIVE_UP_AFTER_SECONDS,
) -> None:
    """Copy every item of the source to its targets through the conflict rule (resumable).

    Start `replicator run` first: the stream then carries every write made during the
    backfill, and a newer stream write always wins over an older scanned item.
    """
    from replicator.tools.backfill import backfill as backfill_tables
    from replicator.tools.backfill_view import RichBackfillView

    loaded = load(config, log_format)
    try:
        with RichBackfillView(console) as view:
            summary = run_tool(
                backfill_tables(
                    loaded, view, pair=pair, segments=segments, rate=rate, restart=restart
                ),
                give_up_after=give_up_after,
                resume="each segment's progress is saved after every page: run the same "
                "command again to resume there",
            )
    except KeyboardInterrupt:
        errors.print("interrupted: run the same command again to resume", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    console.print(summary.line(), highlight=False, soft_wrap=True)


app.add_typer(dlq_app, name="dlq")
app.add_typer(conflicts_app, name="conflicts")


@app.command()
def status(
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    url: Annotated[
        str | None,
        typer.Option(help="Service base URL (default: http://<web.host>:<web.port>)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.", min=0.1)] = 5,
) -> None:
    """Print the running service's lag, heartbeat, outcomes and shards; exit 1 if it is down."""
    from replicator.tools.status import fetch_status, render_status, status_url, unreachable_hint

    loaded = load(config, log_format)
    endpoint = run_reporting_errors_sync(lambda: status_url(loaded.web, url))
    hint = "" if url else unreachable_hint(loaded.web, config_name(config))
    document = run_reporting_errors_sync(lambda: fetch_status(endpoint, hint=hint, timeout=timeout))
    for part in render_status(document):
        console.print(part)


app.command()(demo)
app.command()(replay)
app.command()(chaos)


def main() -> None:
    app()

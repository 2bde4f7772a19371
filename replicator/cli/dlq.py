"""``replicator dlq``: see, re-drive and purge dead-lettered records."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from replicator.aws.retry import TOOL_GIVE_UP_AFTER_SECONDS
from replicator.cli.common import (
    EXIT_CONFIG,
    UNCHANGED,
    ConfigOption,
    GiveUpOption,
    LogFormatOption,
    PairOption,
    console,
    errors,
    load,
    print_entries,
    run_tool,
)

dlq_app = typer.Typer(no_args_is_help=True, help="See, re-drive and purge dead-lettered records.")


@dlq_app.command("list")
def dlq_list(
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    pair: PairOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON.")] = False,
    give_up_after: GiveUpOption = TOOL_GIVE_UP_AFTER_SECONDS,
) -> None:
    """One line per entry: id, keys, reason, first and last failure, attempts."""
    from replicator.tools.dlq import list_entries

    found = run_tool(
        list_entries(load(config, log_format), pair=pair),
        give_up_after=give_up_after,
        resume=UNCHANGED,
    )
    print_entries(found, as_json=as_json)


@dlq_app.command("show")
def dlq_show(
    entry_id: Annotated[str, typer.Argument(metavar="ID")],
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    give_up_after: GiveUpOption = TOOL_GIVE_UP_AFTER_SECONDS,
) -> None:
    """The entry's record (decompressed) and reason in full."""
    from replicator.tools.dlq import find

    entry = run_tool(
        find(load(config, log_format), entry_id), give_up_after=give_up_after, resume=UNCHANGED
    )
    console.print(entry.line(), highlight=False, soft_wrap=True)
    console.print(f"reason: {entry.reason}", highlight=False, soft_wrap=True)
    record = entry.record if entry.record is not None else "(not stored: too large)"
    print(json.dumps(record, indent=2, default=str))
    if entry.kinesis and entry.record is not None:
        from replicator.pipeline.dlq import describe_record

        if entry.undecodable:
            console.print("its Kinesis data does not decode", highlight=False)
        else:  # the change itself, which Kinesis carries as base64 data
            console.print("decoded Kinesis data:", highlight=False)
            print(json.dumps(describe_record(entry.record)[0], indent=2, default=str))


@dlq_app.command("replay")
def dlq_replay(
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="Entry to replay (repeatable).")
    ] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every entry.")] = False,
    give_up_after: GiveUpOption = TOOL_GIVE_UP_AFTER_SECONDS,
) -> None:
    """Re-drive each entry's key from the source's current state; remove it once applied."""
    from replicator.tools.dlq import replay

    if bool(ids) == replay_all:
        errors.print("[red]usage[/red] give --id ID (one or more) or --all", highlight=False)
        raise typer.Exit(EXIT_CONFIG)
    result = run_tool(
        replay(load(config, log_format), ids=None if replay_all else ids),
        give_up_after=give_up_after,
        resume="entries replayed so far are removed from the DLQ: run the same command again "
        "for the rest",
    )
    for entry, reason in result.failed:
        console.print(f"  {entry.id} {entry.key_text()}: {reason}", highlight=False)
    console.print(f"replay: {len(result.settled)} applied and removed, {len(result.failed)} kept")
    if result.failed:
        raise typer.Exit(1)


@dlq_app.command("purge")
def dlq_purge(
    older_than: Annotated[
        str, typer.Option(help="Age of the last failure, e.g. 7d, 12h, 30m.", show_default=False)
    ],
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    give_up_after: GiveUpOption = TOOL_GIVE_UP_AFTER_SECONDS,
) -> None:
    """Delete the entries whose last failure is older than the given age."""
    from replicator.config.fields import duration_seconds
    from replicator.tools.dlq import purge

    seconds = duration_seconds(older_than)
    if seconds is None:
        errors.print(
            f"[red]usage[/red] --older-than {older_than!r} is not a duration — use e.g. 7d, "
            "12h, 30m or 90s",
            highlight=False,
        )
        raise typer.Exit(EXIT_CONFIG)
    removed = run_tool(
        purge(load(config, log_format), older_than=seconds),
        give_up_after=give_up_after,
        resume="entries purged so far are gone: run the same command again for the rest",
    )
    console.print(f"purged {removed} entries")

"""``replicator conflicts``: the writes active-active last-writer-wins discarded (DESIGN §4b)."""

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

conflicts_app = typer.Typer(
    no_args_is_help=True, help="See the writes last-writer-wins discarded (active-active)."
)


@conflicts_app.command("list")
def conflicts_list(
    *,
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    pair: PairOption = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only entries detected this recently, e.g. 1h, 30m, 7d."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON.")] = False,
    give_up_after: GiveUpOption = TOOL_GIVE_UP_AFTER_SECONDS,
) -> None:
    """One line per lost write, from the conflicts tables of every region the config names."""
    from replicator.config.fields import duration_seconds
    from replicator.tools.conflicts import list_entries

    seconds = None
    if since is not None and (seconds := duration_seconds(since)) is None:
        errors.print(
            f"[red]usage[/red] --since {since!r} is not a duration — use e.g. 1h, 30m or 7d",
            highlight=False,
        )
        raise typer.Exit(EXIT_CONFIG)
    found = run_tool(
        list_entries(load(config, log_format), pair=pair, since=seconds),
        give_up_after=give_up_after,
        resume=UNCHANGED,
    )
    print_entries(found, as_json=as_json)


@conflicts_app.command("show")
def conflicts_show(
    entry_id: Annotated[str, typer.Argument(metavar="ID")],
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    give_up_after: GiveUpOption = TOOL_GIVE_UP_AFTER_SECONDS,
) -> None:
    """Both sides of the entry, and the attributes in which they differ."""
    from rich.table import Table

    from replicator.tools.conflicts import find

    entry = run_tool(
        find(load(config, log_format), entry_id), give_up_after=give_up_after, resume=UNCHANGED
    )
    console.print(entry.line(), highlight=False, soft_wrap=True)
    if entry.loser.image is None or entry.winner.image is None:
        console.print("images not stored (the entry would exceed 400 KB)")
        return
    table = Table("attribute", f"lost ({entry.loser.origin})", f"kept ({entry.winner.origin})")
    for name, lost, kept in entry.differences():
        table.add_row(name, _text(lost), _text(kept))
    console.print(table)


def _text(value: object) -> str:
    return "(absent)" if value is None else json.dumps(value, default=str)


@conflicts_app.command("resolve")
def conflicts_resolve(
    entry_id: Annotated[str, typer.Argument(metavar="ID")],
    keep: Annotated[
        str,
        typer.Option(
            help="winner: accept what was kept; loser: write the lost write back as a new "
            "write in its region (current version + 1), then close the entry.",
            show_default=False,
        ),
    ],
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    give_up_after: GiveUpOption = TOOL_GIVE_UP_AFTER_SECONDS,
) -> None:
    """Settle an entry: keep the winner (close it) or restore the loser (then close it)."""
    from replicator.tools.resolve import resolve

    if keep not in ("winner", "loser"):
        errors.print(f"[red]usage[/red] --keep {keep!r}: use winner or loser", highlight=False)
        raise typer.Exit(EXIT_CONFIG)
    entry = run_tool(
        resolve(load(config, log_format), entry_id, keep="winner" if keep == "winner" else "loser"),
        give_up_after=give_up_after,
        resume="if the item already shows the restored write, close the entry with --keep "
        "winner; otherwise run the same command again",
    )
    restored = f"; {entry.loser.origin}'s write restored" if keep == "loser" else ""
    console.print(f"conflict {entry.id} resolved: kept the {keep}{restored}", highlight=False)

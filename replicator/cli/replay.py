"""``replicator replay``: a Kinesis pair's checkpoints moved back to a time."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from replicator.aws.retry import TOOL_GIVE_UP_AFTER_SECONDS
from replicator.cli.common import (
    ConfigOption,
    GiveUpOption,
    LogFormatOption,
    console,
    load,
    run_reporting_errors_sync,
    run_tool,
)


def replay(
    *,
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    pair: Annotated[
        str, typer.Option("--pair", help="The source table of the Kinesis pair to replay.")
    ],
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="ISO 8601 time (UTC unless it names its offset), or a duration back from "
            "now: 90m, 2h, 3d.",
        ),
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replay although the lease names a holder (one that died holding it)."
        ),
    ] = False,
    give_up_after: GiveUpOption = TOOL_GIVE_UP_AFTER_SECONDS,
) -> None:
    """Move a Kinesis pair's checkpoints back to a time; `replicator run` re-reads from there.

    Refused past the stream's retention or the pair's tombstone_ttl, and while a replicator
    holds the table's lease (stop it first).
    """
    from replicator.tools.replay import parse_since
    from replicator.tools.replay import replay as replay_pair

    loaded = load(config, log_format)
    moment = run_reporting_errors_sync(lambda: parse_since(since, now=time.time()))
    done = run_tool(
        replay_pair(loaded, pair=pair, since=moment, force=force),
        give_up_after=give_up_after,
        # Each checkpoint is set, not moved by a step: the same command finishes the job.
        resume="run the same command again to move every checkpoint",
    )
    console.print(done.line(), highlight=False, soft_wrap=True)

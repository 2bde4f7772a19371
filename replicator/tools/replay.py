"""``replicator replay``: a Kinesis pair's checkpoints moved back to a time (DESIGN §4c).

Every checkpoint of the pair (each shard the stream lists, each target) is set to
``at:<epoch seconds>``, which the Kinesis source reads as an AT_TIMESTAMP iterator; rule K
makes the records read again harmless. Refused, before anything is written:

- on a DynamoDB Streams pair: its stream keeps 24 h and has no AT_TIMESTAMP, backfill is
  the tool;
- a time the stream no longer holds (older than its retention) or in the future;
- a time older than ``now - tombstone_ttl``: the tombstones of deletes made since may
  have expired, and the replayed older writes would bring those items back;
- while a replicator holds the table's lease. It keeps its positions in memory and its
  next checkpoint save (forward-only, and a replay's time sorts first) would undo the
  replay without a word. A stopped replicator releases its lease; ``force`` is for one
  that died holding it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from replicator.aws.factory import Clients
from replicator.aws.retry import RetryPolicy
from replicator.config.fields import duration_seconds
from replicator.config.schema import Config
from replicator.errors import ConfigError
from replicator.ha.store import LeaseStore
from replicator.models import Checkpoint
from replicator.pipeline.checkpoint import CheckpointStore
from replicator.service.kinesis import checked_summary, kinesis_source
from replicator.service.startup import targets_of
from replicator.stream.positions import at_time
from replicator.tools.select import select_pairs


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay moved."""

    source_table: str
    since: float
    shards: int
    checkpoints: int

    def line(self) -> str:
        return (
            f"replay: {self.source_table}: {self.checkpoints} checkpoint(s) of {self.shards} "
            f"shard(s) moved to {iso(self.since)}; the next `replicator run` reads from there"
        )


def iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def parse_since(text: str, *, now: float) -> float:
    """Epoch seconds of ``--since``: ISO 8601 (UTC unless it names its offset), or a
    duration back from now (``90m``, ``2h``, ``3d``)."""
    back = duration_seconds(text)
    if back is not None:
        return now - back
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is neither an ISO 8601 time nor a duration — use e.g. "
            "2026-12-07T09:30:00Z or 2h"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


async def replay(
    config: Config,
    *,
    pair: str,
    since: float,
    force: bool = False,
    clock: Callable[[], float] = time.time,
    retry: RetryPolicy | None = None,
) -> Replayed:
    """Move ``pair``'s checkpoints to ``since``; a ``ConfigError`` says why it may not."""
    (chosen,) = select_pairs(config, pair)
    if chosen.kinesis_stream is None:
        raise ConfigError(
            f"--pair {pair} reads its DynamoDB stream, which keeps 24 h and cannot be read "
            f"from a time — run `replicator backfill --pair {pair}` to copy the table again"
        )
    now = clock()
    if since > now:
        raise ConfigError(f"--since {iso(since)} is in the future — give a past time")
    ttl = chosen.tombstone_ttl_seconds
    if now - since > ttl:
        raise ConfigError(
            f"--since {iso(since)} is older than tombstone_ttl ({ttl} s, back to "
            f"{iso(now - ttl)}): tombstones of items deleted since may have expired and a "
            f"replay would bring those items back — replay from {iso(now - ttl)} or later, "
            "or run `replicator verify --repair`"
        )
    clients = Clients.for_config(config)
    try:
        retry = retry or RetryPolicy()
        region = config.source_region
        source = await kinesis_source(config, clients, chosen)
        summary = await checked_summary(source, chosen, region=region, retry=retry)
        retention = summary.retention_hours * 3600
        if now - since > retention:
            raise ConfigError(
                f"--since {iso(since)} is older than Kinesis stream {summary.name}'s "
                f"retention of {summary.retention_hours} h: records before "
                f"{iso(now - retention)} are gone — replay from a later time, or run "
                f"`replicator backfill --pair {pair}`"
            )
        home = await clients.json("dynamodb", region)
        lease = LeaseStore(home, config.control_table, duration=config.lease.duration_seconds)
        held = await retry.call("lease read", region, lambda: lease.read(pair))
        if held is not None and held.owner and not force:
            raise ConfigError(
                f"--pair {pair}: replicator {held.owner} holds the table's lease, and a "
                "running replicator moves its checkpoints forward again — stop it first "
                "(a stopped replicator releases the lease), or pass --force if it died"
            )
        shards = await retry.call("ListShards", region, lambda: source.shards(summary.arn))
        checkpoints = CheckpointStore(home, config.control_table, retry=retry)
        targets, _ = targets_of(config, chosen)
        position = at_time(since)
        for shard in shards:
            for target in targets:
                checkpoint = Checkpoint(shard.shard_id, target, position, False, summary.arn)
                await checkpoints.rewind(pair, checkpoint)
        return Replayed(pair, since, len(shards), len(shards) * len(targets))
    finally:
        await clients.aclose()

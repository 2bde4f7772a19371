"""A Kinesis pair's stream at start-up: it must exist, and keep records for less time
than the pair's tombstones live (DESIGN §4c).

A replay from the stream's oldest record re-applies a key's older writes; the tombstone of
its delete must still be there to refuse them, or the deleted item comes back. ``replicator
run`` checks it as each pipeline is built, ``validate --check-aws`` and ``replay`` too.
"""

from __future__ import annotations

from replicator.aws.factory import Clients
from replicator.aws.retry import RetryPolicy
from replicator.config.fields import stream_name
from replicator.config.schema import Config, Pair
from replicator.errors import ConfigError
from replicator.stream.kinesis import KinesisStreamSource, StreamSummary


async def kinesis_source(config: Config, clients: Clients, pair: Pair) -> KinesisStreamSource:
    """The source of a pair with ``kinesis_stream``, read in the source region."""
    if pair.kinesis_stream is None:
        raise ValueError(f"pair {pair.source_table} reads DynamoDB Streams, not Kinesis")
    kinesis = await clients.json("kinesis", config.source_region)
    return KinesisStreamSource(kinesis, stream_name(pair.kinesis_stream))


async def check_kinesis_pair(
    config: Config, clients: Clients, pair: Pair, *, retry: RetryPolicy | None
) -> StreamSummary:
    """A Kinesis pair's stream, checked as start-up and ``validate --check-aws`` do."""
    source = await kinesis_source(config, clients, pair)
    return await checked_summary(source, pair, region=config.source_region, retry=retry)


async def check_kinesis_pairs(config: Config) -> list[StreamSummary]:
    """Every Kinesis pair's stream checked (``validate --check-aws``)."""
    clients = Clients.for_config(config)
    try:
        return [
            await check_kinesis_pair(config, clients, pair, retry=None)
            for pair in config.pairs
            if pair.kinesis_stream is not None
        ]
    finally:
        await clients.aclose()


async def checked_summary(
    source: KinesisStreamSource, pair: Pair, *, region: str, retry: RetryPolicy | None
) -> StreamSummary:
    """The stream's summary once its retention passed ``check_retention``."""
    summary = await (retry or RetryPolicy()).call("DescribeStreamSummary", region, source.summary)
    check_retention(pair, summary)
    return summary


def check_retention(pair: Pair, summary: StreamSummary) -> None:
    """A ``ConfigError`` naming both figures when tombstones expire before the stream's
    oldest record does."""
    retention = summary.retention_hours * 3600
    ttl = pair.tombstone_ttl_seconds
    if ttl <= retention:
        raise ConfigError(
            f"pairs[{pair.source_table}].tombstone_ttl: {ttl} s ({ttl / 3600:g} h) is not "
            f"longer than Kinesis stream {summary.name}'s retention of "
            f"{summary.retention_hours} h ({retention} s), so a replay could resurrect "
            f"deleted items — set tombstone_ttl above {retention} s or shorten the retention"
        )

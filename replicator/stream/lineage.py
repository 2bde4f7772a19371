"""Shard lineage: a parent's records are older than its children's, so read parents first
(DynamoDB Streams); a Kinesis pair needs no order and reads every shard at once.

Pure functions over ``Shard`` values. A parent the stream no longer lists aged out
past the 24 h retention, so there is nothing left to wait for: it counts as finished.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from replicator.stream.source import Shard


def lineage_order(shards: Iterable[Shard]) -> list[Shard]:
    """Every listed parent before its children; otherwise the order shards were given in.

    Generation by generation, so siblings stay together and the result does not depend
    on anything but the input. A repeated shard id keeps its first listing. Shards caught
    in a parent cycle (never seen from DynamoDB) are appended, not dropped: skipping a
    shard would lose its records silently.
    """
    unique: dict[str, Shard] = {}
    for shard in shards:
        unique.setdefault(shard.shard_id, shard)
    children: dict[str, list[Shard]] = {}
    ready: deque[Shard] = deque()
    for shard in unique.values():
        if shard.parent_id is None or shard.parent_id not in unique:
            ready.append(shard)
        else:
            children.setdefault(shard.parent_id, []).append(shard)
    ordered: list[Shard] = []
    placed: set[str] = set()
    while ready:
        shard = ready.popleft()
        ordered.append(shard)
        placed.add(shard.shard_id)
        ready.extend(children.get(shard.shard_id, ()))
    ordered.extend(shard for shard in unique.values() if shard.shard_id not in placed)
    return ordered


def ready_shards(shards: Iterable[Shard], finished: set[str], started: set[str]) -> list[Shard]:
    """Shards that may be read now: parent finished or no longer listed, not yet begun.

    A finished shard is never ready again, even if this process did not start it
    (its checkpoint says it was read to the end before a restart).
    """
    ordered = lineage_order(shards)
    listed = {shard.shard_id for shard in ordered}
    done = finished | started
    return [
        shard
        for shard in ordered
        if shard.shard_id not in done
        and (
            shard.parent_id is None or shard.parent_id in finished or shard.parent_id not in listed
        )
    ]


def readable_shards(shards: Iterable[Shard], finished: set[str], started: set[str]) -> list[Shard]:
    """Every shard not yet begun nor read to its end, children beside their parents."""
    return [s for s in lineage_order(shards) if s.shard_id not in finished | started]

"""What a benchmark on moto starts from: its tables, a backlog on the source's stream, and
the raw ceiling of the target those benchmarks compare the pipeline with.

The ceiling is the product's client's conditional PutItem (the condition the pipeline
sends) at a fixed concurrency, straight to the target through the fault proxy, no pipeline.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bench.env import SOURCE_REGION, TARGET_REGION, Backend, create_table
from bench.fakes import META, item_image
from bench.ui import progress
from replicator.apply.condition import build_condition
from replicator.aws.factory import Clients
from replicator.models import Incoming, Mode, pad_seq

# The raw ceiling's writers (and bench 6's paths): a fixed count, the pipeline's default
# before it became adaptive. On moto the server, not this count, bounds the ceiling.
RAW_CONCURRENCY = 32
BATCH_WRITE_ITEMS = 25
# One writer: moto numbers stream records as len(records) + start and then appends, so
# two of its request threads writing one table at once can give two records the same
# SequenceNumber, after which GetRecords serves the tail of the shard again and again.
BACKLOG_WRITERS = 1


def deadline_for(operations: int, *, per_second: float = 20.0, floor: float = 60.0) -> float:
    """A generous bound on a loop of ``operations``: never let a benchmark hang."""
    return floor + operations / per_second


def unique(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:8]}"


async def write_backlog(
    client: Any,
    table: str,
    records: int,
    *,
    on_progress: Callable[[float], None],
    keys: int | None = None,
) -> None:
    """``records`` writes in batches of 25: write i puts key ``i % keys`` at version
    ``i // keys + 1``. By default every key is written once (INSERTs on the stream);
    fewer ``keys`` (at least 25: a batch may not name a key twice) add MODIFYs."""
    keys = keys or records
    rng = random.Random(2)
    items = iter(range(records))
    written = 0

    async def writer() -> None:
        nonlocal written
        while chunk := [
            item_image(f"k{i % keys:08d}", i // keys + 1, rng)
            for _, i in zip(range(BATCH_WRITE_ITEMS), items, strict=False)
        ]:
            requests: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in chunk]}
            for _attempt in range(20):
                answer = await client.call("BatchWriteItem", {"RequestItems": requests})
                requests = answer.get("UnprocessedItems") or {}
                if not requests:
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("moto kept items unprocessed")
            written += len(chunk)
            on_progress(written)

    async with asyncio.timeout(deadline_for(records, per_second=200)):
        async with asyncio.TaskGroup() as group:
            for _ in range(BACKLOG_WRITERS):
                group.create_task(writer())


def replicated_put(table: str, number: int, rng: random.Random) -> dict[str, Any]:
    """The conditional PutItem the pipeline sends for a first write of key ``number``."""
    incoming = Incoming(Decimal(1), False, SOURCE_REGION, pad_seq(str(number)), True)
    condition = build_condition(incoming, meta=META, here=TARGET_REGION, mode=Mode.ONE_WAY)
    item = {
        **item_image(f"k{number:08d}", 1, rng),
        META.origin: {"S": SOURCE_REGION},
        META.rep_version: {"N": "1"},
        META.seq: {"S": incoming.seq},
    }
    return {
        "TableName": table,
        "Item": item,
        "ConditionExpression": condition.expression,
        "ExpressionAttributeNames": condition.names,
        "ExpressionAttributeValues": condition.values,
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


async def prepare(
    backend: Backend,
    source_table: str,
    target_tables: list[str],
    *,
    backlog: int = 0,
    keys: int | None = None,
    on_progress: Callable[[float], None] = lambda _: None,
) -> None:
    """Create the source table (with a stream) and the targets; write ``backlog`` items
    (``write_backlog``: over ``keys`` keys)."""
    clients = Clients(
        {SOURCE_REGION: backend.source_endpoint, TARGET_REGION: backend.target_endpoint}
    )
    try:
        source = await clients.json("dynamodb", SOURCE_REGION)
        await create_table(source, source_table, stream=True)
        for table in target_tables:
            await create_table(await clients.json("dynamodb", TARGET_REGION), table)
        if backlog:
            await write_backlog(source, source_table, backlog, on_progress=on_progress, keys=keys)
    finally:
        await clients.aclose()


async def measure_ceiling(
    backend: Backend, writes: int, *, concurrency: int = RAW_CONCURRENCY
) -> tuple[float, int]:
    """(writes/s, writes done): conditional PutItem through the proxy, no pipeline."""
    clients = Clients(backend.endpoints)
    try:
        target = await clients.json("dynamodb", TARGET_REGION)
        table = unique("ceiling")
        await create_table(target, table)
        rng = random.Random(3)
        numbers = iter(range(writes))
        done = 0

        async def worker(update: Callable[[float], None]) -> None:
            nonlocal done
            for number in numbers:
                await target.put_item(**replicated_put(table, number, rng))
                done += 1
                if done % 50 == 0:
                    update(done)

        with progress(f"[2] raw ceiling: {writes:,} conditional puts", total=writes) as update:
            started = time.perf_counter()
            async with asyncio.timeout(deadline_for(writes)):
                async with asyncio.TaskGroup() as group:
                    for _ in range(concurrency):
                        group.create_task(worker(update))
            elapsed = time.perf_counter() - started
        return done / elapsed, done
    finally:
        await clients.aclose()

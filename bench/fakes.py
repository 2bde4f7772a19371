"""In-memory doubles of our interfaces for the CPU and memory benchmarks (DESIGN §8).

- ``NullWriter``: a ``ChangeWriter`` with no I/O; every write is applied.
- ``NullDeadLetters``: a ``DeadLetterSink`` that only counts.
- ``MemoryCheckpoints``: a ``CheckpointStore`` in a dict, waking a waiter when a shard ends.
- ``GeneratedStream``: a ``StreamSource`` that makes its records when they are read, so a
  500 000-record backlog costs no memory of its own and peak RSS is the pipeline's; or
  beforehand (``make_all``), so that a CPU measurement counts the replicator alone.
- ``synthetic_record``: the stream record the benchmarks replicate (INSERT, MODIFY or
  REMOVE of a versioned item of ~300 bytes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections.abc import Callable
from typing import Any, Literal, cast

from replicator.apply.applier import TargetApplier
from replicator.aws.json_client import DynamoDB
from replicator.models import Change, Checkpoint, Meta, Outcome, TargetRef
from replicator.pipeline.checkpoint import CheckpointStore
from replicator.pipeline.pair import PairPipeline
from replicator.stream.fake import FIRST_SEQUENCE, FakeStream
from replicator.stream.source import MAX_RECORDS_PER_CALL, Page, Shard
from replicator.telemetry.metrics import Metrics

SOURCE_REGION = "us-east-1"
TARGET = TargetRef("eu-west-1", "bench-target")
META = Meta(version="version")
HEARTBEAT_PREFIX = "__replicator_heartbeat__"
STATUSES = ("new", "paid", "shipped", "returned")
NOTE = "x" * 120


class NullWriter:
    """A target that accepts every write at once."""

    def __init__(self) -> None:
        self.writes = 0

    async def put(self, change: Change, *, now: float) -> Outcome:
        self.writes += 1
        return Outcome.APPLIED


class NullDeadLetters:
    def __init__(self) -> None:
        self.records = 0

    async def put(
        self,
        *,
        source_table: str,
        target: TargetRef,
        record: dict[str, Any],
        reason: str,
        recreate: bool = False,
    ) -> None:
        self.records += 1


class MemoryCheckpoints(CheckpointStore):
    """Checkpoints in a dict; ``ended`` is set once a checkpoint closes a shard."""

    def __init__(self) -> None:
        # Every method that would reach the client is overridden: no client is needed.
        super().__init__(client=cast("DynamoDB", None), table="memory")
        self.saved: dict[tuple[str, str, TargetRef], Checkpoint] = {}
        self.saves = 0
        self.ended = asyncio.Event()

    async def load(self, source_table: str) -> dict[tuple[str, TargetRef], Checkpoint]:
        return {
            (shard, target): checkpoint
            for (table, shard, target), checkpoint in self.saved.items()
            if table == source_table
        }

    async def save(self, source_table: str, checkpoint: Checkpoint) -> bool:
        self.saves += 1
        self.saved[(source_table, checkpoint.shard_id, checkpoint.target)] = checkpoint
        if checkpoint.shard_ended:
            self.ended.set()
        return True


def item_image(key: str, version: int, rng: random.Random) -> dict[str, Any]:
    image: dict[str, Any] = {
        "pk": {"S": key},
        "version": {"N": str(version)},
        "amount": {"N": str(rng.randrange(1_000_000))},
        "status": {"S": rng.choice(STATUSES)},
        "note": {"S": NOTE},
        "address": {"M": {"city": {"S": "Dublin"}, "zip": {"S": f"D{rng.randrange(24):02d}"}}},
    }
    if rng.random() < 0.3:
        image["tags"] = {"SS": sorted(rng.sample(["red", "blue", "gift", "bulk"], 2))}
    return image


def synthetic_record(
    index: int,
    *,
    keys: int,
    rng: random.Random,
    sequence: int | None = None,
    created: dt.datetime | None = None,
    region: str = SOURCE_REGION,
) -> dict[str, Any]:
    """Record ``index`` of a busy table: 20 % inserts, 70 % updates, 10 % deletes.

    Keys cycle through ``keys`` items, so within a 1000-record page a key rarely repeats:
    coalescing saves little and nearly every record costs a write.
    """
    key = f"k{index % keys:08d}"
    version = index // keys + 2
    roll = rng.random()
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": created or dt.datetime.now(dt.UTC),
        "Keys": {"pk": {"S": key}},
        "SequenceNumber": str(FIRST_SEQUENCE + index if sequence is None else sequence),
        "SizeBytes": 300,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if roll < 0.1:
        event = "REMOVE"
        body["OldImage"] = item_image(key, version, rng)
    elif roll < 0.3:
        event = "INSERT"
        body["NewImage"] = item_image(key, version, rng)
    else:
        event = "MODIFY"
        body["OldImage"] = item_image(key, version - 1, rng)
        body["NewImage"] = item_image(key, version, rng)
    return {
        "eventID": f"bench-{index}",
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": body,
    }


def filled_fake_stream(records: int, *, seed: int = 0, table: str = "bench") -> FakeStream:
    """A ``FakeStream`` holding ``records`` records on one shard, then closed."""
    stream = FakeStream(table, region=SOURCE_REGION)
    rng = random.Random(seed)
    created = dt.datetime.now(dt.UTC)
    keys = max(1, records // 2)
    for index in range(records):
        stream.put(None, synthetic_record(index, keys=keys, rng=rng, created=created))
    stream.close("shard-0000")
    return stream


class GeneratedStream:
    """One closed shard of ``records`` records, each made when GetRecords reaches it
    (or all at once beforehand: ``make_all``)."""

    SHARD_ID = "shard-0000"

    def __init__(self, records: int, *, table: str = "bench", seed: int = 0) -> None:
        self.table = table
        self.records = records
        self.arn = f"arn:aws:dynamodb:{SOURCE_REGION}:000000000000:table/{table}/stream/generated"
        self._seed = seed
        self._keys = max(1, records // 2)
        self._created = dt.datetime.now(dt.UTC)
        self._made: dict[tuple[int, int], Page] = {}

    def make_all(self, *, limit: int = MAX_RECORDS_PER_CALL) -> float:
        """Make every page of ``limit`` records now, so that reading them costs no CPU
        (each is handed out once); returns the CPU seconds that took."""
        started = time.process_time()
        for start in range(0, self.records, limit):
            self._made[(start, limit)] = self._page(start, limit)
        return time.process_time() - started

    async def stream_arn(self, table: str) -> str:
        return self.arn

    async def shards(self, stream_arn: str) -> list[Shard]:
        last = str(FIRST_SEQUENCE + max(0, self.records - 1))
        return [Shard(self.SHARD_ID, None, str(FIRST_SEQUENCE), last)]

    async def iterator(self, stream_arn: str, shard_id: str, *, after: str | None) -> str:
        start = 0 if after is None else int(after) - FIRST_SEQUENCE + 1
        return str(start)

    async def get_records(self, iterator: str, *, limit: int = MAX_RECORDS_PER_CALL) -> Page:
        await asyncio.sleep(0)  # as real I/O would
        start = int(iterator)
        made = self._made.pop((start, limit), None)
        return made if made is not None else self._page(start, limit)

    def _page(self, start: int, limit: int) -> Page:
        end = min(start + limit, self.records)
        rng = random.Random(self._seed * 1_000_003 + start)
        page = [
            synthetic_record(index, keys=self._keys, rng=rng, created=self._created)
            for index in range(start, end)
        ]
        return Page(page, None if end >= self.records else str(end))


def memory_pipeline(
    source: Any,
    *,
    table: str,
    metrics: Metrics,
    writer: Any | None = None,
    max_concurrency: int | Literal["auto"] = 32,
    clock: Callable[[], float] | None = None,
) -> tuple[PairPipeline, MemoryCheckpoints, asyncio.Event]:
    """reader -> lanes -> applier over in-memory doubles, as ``service`` wires the real ones."""
    stop = asyncio.Event()
    checkpoints = MemoryCheckpoints()
    options: dict[str, Any] = {} if clock is None else {"clock": clock}
    applier = TargetApplier(
        writer or NullWriter(),
        NullDeadLetters(),
        target=TARGET,
        metrics=metrics,
        max_concurrency=max_concurrency,
        stop=stop,
        heartbeat_prefix=HEARTBEAT_PREFIX,
        **options,
    )
    pipeline = PairPipeline(
        source_table=table,
        region=SOURCE_REGION,
        meta=META,
        source=source,
        appliers=[applier],
        checkpoints=checkpoints,
        metrics=metrics,
        stop=stop,
    )
    return pipeline, checkpoints, stop


async def drain(pipeline: PairPipeline, checkpoints: MemoryCheckpoints, *, within: float) -> bool:
    """Run ``pipeline`` until its closed shard is checkpointed as ended; False on timeout."""
    finished = False
    async with asyncio.TaskGroup() as group:
        group.create_task(pipeline.run())
        try:
            async with asyncio.timeout(within):
                await checkpoints.ended.wait()
            finished = True
        except TimeoutError:
            pass
        finally:
            pipeline.stop.set()
    return finished

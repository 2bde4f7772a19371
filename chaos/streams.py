"""The pipeline in-process over the stream fake: what moto's streams cannot do.

Each origin region is a ``FakeStream`` fed by a simulated source table (``SourceSim``)
that logs every write it makes; the pipeline is the real one (reader, lanes, conditional
writer, checkpoints and DLQ on moto), built from the parts in ``Seams`` so a test can
break one. The target is a moto table reached through a fault proxy.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from boto3.dynamodb.types import TypeDeserializer

from chaos.lifecycle import Lifecycle
from chaos.outcome import Visible
from chaos.proxy import FaultProxy, Faults
from chaos.scenario import FAST, Context
from replicator.apply.applier import TargetApplier
from replicator.apply.rule import visible
from replicator.apply.writer import ConditionalWriter
from replicator.aws.backoff import Backoff
from replicator.aws.factory import Clients
from replicator.aws.tables import CONTROL_KEY, ensure_table
from replicator.demo.activeload import Write
from replicator.models import Meta, Mode, TargetRef
from replicator.pipeline.checkpoint import CheckpointStore
from replicator.pipeline.dlq import DeadLetterQueue
from replicator.pipeline.pair import PairPipeline
from replicator.stream.fake import FakeStream
from replicator.stream.fake_records import wire
from replicator.stream.source import MAX_RECORDS_PER_CALL, Page
from replicator.telemetry.metrics import Metrics

META = Meta(version="version")
KEY = [("pk", "HASH", "S")]
TOMBSTONE_TTL_SECONDS = 7 * 24 * 3600
STREAM_LATENCY_SECONDS = 0.005  # a GetRecords call yields as real I/O does
_deserialize = TypeDeserializer().deserialize


class ChaosStream(FakeStream):
    """A FakeStream that runs ``before_get_records(call number)`` before each read."""

    before_get_records: Callable[[int], None] | None = None

    async def get_records(self, iterator: str, *, limit: int = MAX_RECORDS_PER_CALL) -> Page:
        if self.before_get_records is not None:
            self.before_get_records(self.get_records_calls + 1)
        return await super().get_records(iterator, limit=limit)


class SourceSim:
    """Source tables in each origin region, written as a versioned application would.

    Versions rise per key across every region, so the history's last-writer-wins winner
    is well defined; ``shard_for`` picks the shard a key's records go to (after a split).
    """

    def __init__(self, streams: dict[str, ChaosStream], keys: int, rng: random.Random) -> None:
        self.streams = streams
        self.keys = [f"k{n:04d}" for n in range(keys)]
        self.rng = rng
        self.log: list[Write] = []
        self.shard_for: Callable[[str], str | None] = lambda key: None
        self._version: dict[str, int] = {}
        self._live: dict[str, bool] = {}

    def write(
        self, key: str | None = None, origin: str | None = None, *, may_delete: bool = True
    ) -> Write:
        key = key or self.rng.choice(self.keys)
        origin = origin or self.rng.choice(sorted(self.streams))
        stream, shard = self.streams[origin], self.shard_for(key)
        version = self._version.get(key, 0)
        if may_delete and self._live.get(key) and self.rng.random() < 0.2:
            stream.remove({"pk": key}, {"version": version}, shard_id=shard)
            self._live[key] = False
            return self._logged(Write(key, version, True, origin, None))
        new = {"version": version + 1, "amount": self.rng.randrange(1_000_000)}
        if self._live.get(key):
            stream.modify({"pk": key}, {"version": version}, new, shard_id=shard)
        else:
            stream.insert({"pk": key}, new, shard_id=shard)
        self._version[key], self._live[key] = version + 1, True
        data = {name: _deserialize(value) for name, value in wire({"pk": key, **new}).items()}
        return self._logged(Write(key, version + 1, False, origin, data))

    def _logged(self, write: Write) -> Write:
        self.log.append(write)
        return write


class StreamRig(Lifecycle):
    """Origins' fake streams, their pipelines, and the target table behind a proxy."""

    def __init__(
        self, ctx: Context, name: str, *, origins: list[str], target: str, mode: Mode
    ) -> None:
        self.ctx = ctx
        self.table = f"chaos-{name}-{ctx.seed}-{random.Random().getrandbits(24):06x}"
        self.target = TargetRef(target, self.table)
        self.mode = mode
        self.streams = {
            origin: ChaosStream(self.table, region=origin, latency=STREAM_LATENCY_SECONDS)
            for origin in origins
        }
        self.sim = SourceSim(self.streams, ctx.budget.keys, random.Random(f"{ctx.seed}-{name}"))
        self.direct = Clients(ctx.endpoints)
        self.proxy = FaultProxy(
            _address(ctx.endpoints[target]),
            faults=Faults(rng=random.Random(f"{ctx.seed}-{name}-proxy")),
            http=True,
        )
        self.proxied: Clients | None = None
        self.stop = asyncio.Event()
        self.metrics = {origin: Metrics(source_region=origin) for origin in origins}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.injected: Counter[str] = Counter()  # stream faults, by what was done

    async def start(self) -> None:
        await self.proxy.start()
        self.proxied = Clients({self.target.region: self.proxy.url})
        await ensure_table(await self.db(self.target.region), self.table, KEY)
        for origin in self.streams:
            await ensure_table(await self.db(origin), self._control(origin), CONTROL_KEY)
            await ensure_table(await self.db(origin), f"{self.table}-dlq", CONTROL_KEY)

    async def aclose(self) -> None:
        """Stop every pipeline, close proxy and clients (idempotent)."""
        self.stop.set()
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.proxy.aclose()
        for clients in (self.proxied, self.direct):
            if clients is not None:
                await clients.aclose()
        for metrics in self.metrics.values():
            metrics.shutdown()

    async def db(self, region: str) -> Any:
        return await self.direct.json("dynamodb", region)

    def _control(self, origin: str) -> str:
        return f"{self.table}-control-{origin}"

    async def start_pipeline(self, origin: str, *, records_per_call: int = 25) -> None:
        """Build ``origin``'s pipeline from the context's seams and run it."""
        seams, metrics = self.ctx.seams, self.metrics[origin]
        assert self.proxied is not None
        control = await self.db(origin)
        retry = seams.retry(self.stop, metrics)
        writer = ConditionalWriter(
            seams.put_client(await self.proxied.put_client(self.target.region)),
            self.table,
            region=self.target.region,
            meta=META,
            mode=self.mode,
            tombstone_ttl_seconds=TOMBSTONE_TTL_SECONDS,
        )
        applier = TargetApplier(
            seams.writer(writer),
            DeadLetterQueue(control, f"{self.table}-dlq", retry=retry),
            target=self.target,
            metrics=metrics,
            max_concurrency=8,
            stop=self.stop,
            retry=retry,
        )
        pipeline = PairPipeline(
            source_table=self.table,
            region=origin,
            meta=META,
            source=seams.source(self.streams[origin]),
            appliers=[applier],
            checkpoints=CheckpointStore(control, self._control(origin), retry=retry),
            metrics=metrics,
            stop=self.stop,
            discovery_interval=0.05,
            idle_backoff=Backoff(base=0.005, cap=0.05),
            retry_backoff=FAST,
            retry=retry,
            records_per_call=records_per_call,
        )
        self.tasks[origin] = asyncio.create_task(pipeline.run(), name=f"pipeline {origin}")

    def dead(self) -> str | None:
        """Why a pipeline ended before it was stopped, if one did."""
        for origin, task in self.tasks.items():
            if task.done():
                failure = None if task.cancelled() else task.exception()
                return f"the {origin} pipeline ended early: {failure!r}"
        return None

    async def state(self) -> dict[str, Visible]:
        items: dict[str, Visible] = {}
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        db = await self.db(self.target.region)
        for _ in range(10_000):  # pages; a scenario's table is small
            page = await db.scan(**kwargs)
            items.update({i["pk"]["S"]: visible(i, META) for i in page["Items"]})
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items

    async def canary_seen(self, key: str) -> int:
        answer = await (await self.db(self.target.region)).get_item(
            TableName=self.table, Key={"pk": {"S": key}}, ConsistentRead=True
        )
        item = answer.get("Item")
        if item is None or META.deleted in item:
            return 0
        return int(Decimal(item["version"]["N"]))


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port

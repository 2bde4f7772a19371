"""ShardReader against FakeStream: what a shard consumer must survive (DESIGN §5)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import Counter
from typing import Any

import pytest

from replicator.aws.backoff import Backoff
from replicator.errors import AwsError
from replicator.stream.fake import FakeStream
from replicator.stream.reader import Batch, ReaderHooks, ShardReader

pytestmark = pytest.mark.timeout(5)

SHARD = "shard-0000"
TINY = Backoff(base=0.0005, cap=0.001)


class Seen:
    """Records every hook call, as the telemetry layer would count them."""

    def __init__(self) -> None:
        self.get_records = 0
        self.retries: Counter[str] = Counter()
        self.trimmed: list[tuple[str, str]] = []

    def hooks(self) -> ReaderHooks:
        return ReaderHooks(
            on_get_records=self._count,
            on_retry=lambda reason: self.retries.update([reason]),
            on_trimmed=lambda shard_id, detail: self.trimmed.append((shard_id, detail)),
        )

    def _count(self) -> None:
        self.get_records += 1


def fill(fake: FakeStream, count: int, *, shard_id: str | None = None) -> list[str]:
    """``count`` inserts; returns their sequence numbers."""
    return [
        fake.insert({"pk": f"k{i}"}, {"v": i}, shard_id=shard_id)["dynamodb"]["SequenceNumber"]
        for i in range(count)
    ]


def reader(fake: FakeStream, stop: asyncio.Event | None = None, **options: Any) -> ShardReader:
    options.setdefault("idle_backoff", TINY)
    options.setdefault("retry_backoff", TINY)
    return ShardReader(
        fake, fake.arn, options.pop("shard_id", SHARD), stop=stop or asyncio.Event(), **options
    )


def sequences(batches: list[Batch]) -> list[str]:
    return [r["dynamodb"]["SequenceNumber"] for b in batches for r in b.records]


async def read_all(shard_reader: ShardReader) -> list[Batch]:
    return [batch async for batch in shard_reader.batches()]


async def test_reads_every_record_across_pages_in_order() -> None:
    fake = FakeStream()
    written = fill(fake, 10)
    fake.close(SHARD)
    seen = Seen()
    batches = await read_all(reader(fake, limit=3, hooks=seen.hooks()))
    assert sequences(batches) == written
    assert [len(b.records) for b in batches] == [3, 3, 3, 1]
    assert [b.last_sequence for b in batches] == [written[2], written[5], written[8], written[9]]
    assert [b.shard_ended for b in batches] == [False, False, False, True]
    assert seen.get_records == fake.get_records_calls == 4


async def test_resumes_just_after_its_checkpoint() -> None:
    fake = FakeStream()
    written = fill(fake, 6)
    fake.close(SHARD)
    batches = await read_all(reader(fake, after=written[3]))
    assert sequences(batches) == written[4:]


async def test_a_closed_shard_read_to_its_end_yields_an_empty_ended_batch() -> None:
    fake = FakeStream()
    written = fill(fake, 2)
    fake.close(SHARD)
    batches = await read_all(reader(fake, after=written[-1]))
    assert batches == [Batch(SHARD, [], None, True)]


async def test_a_split_ends_the_parent_and_the_children_carry_on() -> None:
    fake = FakeStream()
    before = fill(fake, 3)
    fake.split(SHARD, ["left", "right"])
    after = fill(fake, 2, shard_id="right")
    fake.close("right")
    parent = await read_all(reader(fake))
    child = await read_all(reader(fake, shard_id="right"))
    assert sequences(parent) == before and parent[-1].shard_ended
    assert sequences(child) == after and child[-1].shard_ended
    assert [s.parent_id for s in await fake.shards(fake.arn)] == [None, SHARD, SHARD]


async def test_an_expired_iterator_re_seeks_without_loss_or_duplication() -> None:
    fake = FakeStream()
    written = fill(fake, 9)
    fake.close(SHARD)
    seen = Seen()
    batches = []
    async for batch in reader(fake, limit=4, hooks=seen.hooks()).batches():
        batches.append(batch)
        fake.expire_iterators()
    assert sequences(batches) == written
    assert [len(b.records) for b in batches] == [4, 4, 1]
    assert seen.retries == Counter({"expired-iterator": 2})
    assert fake.iterator_calls == 3


async def test_trimmed_data_raises_the_alarm_and_reading_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeStream()
    written = fill(fake, 8)
    fake.close(SHARD)
    seen = Seen()
    batches = []
    with caplog.at_level(logging.ERROR, logger="replicator.stream.reader"):
        async for batch in reader(fake, limit=2, hooks=seen.hooks()).batches():
            batches.append(batch)
            if len(batches) == 1:
                fake.trim(SHARD, before_sequence=written[5])
    assert sequences(batches) == written[:2] + written[5:]
    assert len(seen.trimmed) == 1
    shard_id, detail = seen.trimmed[0]
    assert shard_id == SHARD and written[1] in detail
    [logged] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert SHARD in logged.getMessage() and written[1] in logged.getMessage()


async def test_a_checkpoint_older_than_the_trim_horizon_raises_the_alarm() -> None:
    fake = FakeStream()
    written = fill(fake, 5)
    fake.close(SHARD)
    fake.trim(SHARD, before_sequence=written[3])
    seen = Seen()
    batches = await read_all(reader(fake, after=written[0], hooks=seen.hooks()))
    assert sequences(batches) == written[3:]
    assert [shard_id for shard_id, _ in seen.trimmed] == [SHARD]


async def test_throttles_are_retried_and_counted() -> None:
    fake = FakeStream()
    written = fill(fake, 3)
    fake.close(SHARD)
    fake.throttle(3)
    seen = Seen()
    batches = await read_all(reader(fake, hooks=seen.hooks()))
    assert sequences(batches) == written
    assert seen.retries == Counter({"throttled": 3})
    assert fake.get_records_calls == 4


async def test_a_retryable_server_error_is_retried_with_a_fresh_iterator() -> None:
    fake = FakeStream()
    written = fill(fake, 3)
    fake.close(SHARD)
    fake.fail(AwsError("HTTP 500", code="InternalFailure", retryable=True), times=2)
    seen = Seen()
    batches = await read_all(reader(fake, hooks=seen.hooks()))
    assert sequences(batches) == written
    assert seen.retries == Counter({"retryable": 2})
    assert fake.iterator_calls == 3


async def test_retry_delays_grow_exponentially_up_to_the_cap() -> None:
    fake = FakeStream()
    fill(fake, 1)
    fake.close(SHARD)
    fake.throttle(6)
    delays: list[float] = []

    async def wait(seconds: float, stop: asyncio.Event) -> bool:
        delays.append(seconds)
        return False

    backoff = Backoff(base=1.0, cap=8.0)
    await read_all(reader(fake, retry_backoff=backoff, wait=wait, rng=random.Random(7)))
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))


async def test_a_non_retryable_error_propagates() -> None:
    fake = FakeStream()
    fill(fake, 1)
    fake.fail(AwsError("not authorized", code="AccessDeniedException"))
    with pytest.raises(AwsError, match="not authorized"):
        await read_all(reader(fake))


async def test_empty_reads_back_off_exponentially_and_reset_on_data() -> None:
    fake = FakeStream()
    delays: list[float] = []

    async def wait(seconds: float, stop: asyncio.Event) -> bool:
        delays.append(seconds)
        if len(delays) == 4:
            fill(fake, 1)
        return len(delays) == 6

    idle = Backoff(base=1.0, cap=4.0)
    batches = await read_all(reader(fake, idle_backoff=idle, wait=wait, rng=random.Random(3)))
    assert len(sequences(batches)) == 1
    ceilings = [1.0, 2.0, 4.0, 4.0, 1.0, 2.0]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))


async def test_duplicates_are_delivered_and_the_position_never_goes_back() -> None:
    fake = FakeStream()
    written = fill(fake, 6)
    fake.close(SHARD)
    batches = []
    async for batch in reader(fake, limit=3).batches():
        batches.append(batch)
        if len(batches) == 1:
            fake.duplicate(SHARD, written[0], written[2])
    assert sequences(batches) == written[:3] + written[:3] + written[3:]
    assert [b.last_sequence for b in batches] == [written[2], written[2], written[5]]


async def test_stop_ends_an_idle_reader_promptly() -> None:
    fake = FakeStream()
    stop = asyncio.Event()
    slow = Backoff(base=60.0, cap=60.0)
    task = asyncio.create_task(read_all(reader(fake, stop, idle_backoff=slow)))
    await fake.wait_for_get_records(1)
    stop.set()
    async with asyncio.timeout(1):
        assert await task == []


async def test_stop_ends_a_reader_waiting_out_throttling_promptly() -> None:
    fake = FakeStream()
    fill(fake, 1)
    fake.throttle(100)
    stop = asyncio.Event()
    slow = Backoff(base=60.0, cap=60.0)
    task = asyncio.create_task(read_all(reader(fake, stop, retry_backoff=slow)))
    await fake.wait_for_get_records(1)
    stop.set()
    async with asyncio.timeout(1):
        assert await task == []


async def test_records_read_after_stop_are_not_delivered() -> None:
    fake = FakeStream()
    fill(fake, 2)
    stop = asyncio.Event()
    shard_reader = reader(fake, stop)
    batches = shard_reader.batches()

    async def first() -> Batch:
        return await anext(batches)

    call = asyncio.create_task(first())
    await fake.wait_for_get_records(1)
    stop.set()
    with pytest.raises(StopAsyncIteration):
        await call
    assert shard_reader.position is None


async def test_a_paced_reader_leaves_min_interval_between_get_records_calls() -> None:
    # Kinesis allows 5 GetRecords per shard per second: a full page must not be followed
    # at once by the next call. A virtual clock advances only by the reader's own waits.
    fake = FakeStream()
    fill(fake, 6)
    fake.close(SHARD)
    now = [0.0]
    calls: list[float] = []
    waits: list[float] = []

    async def wait(delay: float, stop: asyncio.Event) -> bool:
        waits.append(delay)
        now[0] += delay
        return stop.is_set()

    hooks = ReaderHooks(on_get_records=lambda: calls.append(now[0]))
    paced = reader(fake, limit=2, hooks=hooks, min_interval=0.2, clock=lambda: now[0], wait=wait)
    batches = await read_all(paced)
    assert len(sequences(batches)) == 6
    assert len(calls) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert gaps == pytest.approx([0.2, 0.2])

"""A target region blackholed for 120 s while writes go on (DESIGN §5, issue 11).

Time is a fake clock shared by the stream, the retry policy, the applier and the
metrics: every retry wait advances it instead of sleeping, and the application
writes one record and one heartbeat per second of it. So 120 s of outage take a
fraction of a real second, and what an operator would see is exact.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from replicator.aws.backoff import Backoff
from replicator.aws.retry import RetryPolicy
from replicator.errors import AwsError
from replicator.pipeline.lane import LANE_WINDOW
from replicator.pipeline.pair import QUEUED_BATCHES_PER_LANE
from replicator.stream.fake import FakeStream
from replicator.telemetry.metrics import Metrics
from tests.fakes import Signal, TableWriter, replay
from tests.functional.test_lag import (
    EU,
    HERE,
    META,
    PREFIX,
    FakeClock,
    fake_time_pipeline,
    scraped,
)

pytestmark = pytest.mark.timeout(30)

BLACKHOLE = AwsError("no answer within the attempt timeout", code="Timeout", retryable=True)
RECORDS_PER_CALL = 5
OUTAGE_SECONDS = 120.0


class Application:
    """Writes one record and one heartbeat into the stream per second of fake time."""

    def __init__(self, stream: FakeStream, clock: FakeClock) -> None:
        self.stream, self.clock = stream, clock
        self.records: list[dict[str, Any]] = []  # in stream order, heartbeats included
        self._next_write = clock.now

    def catch_up(self) -> None:
        while self._next_write <= self.clock.now:
            n = len(self.records)
            self.records.append(self.stream.insert({"pk": f"k{n % 40}"}, {"version": n + 1}))
            millis = int(self.clock() * 1000)
            beat = {"version": millis, "heartbeat_ms": millis}
            self.records.append(self.stream.insert({"pk": f"{PREFIX}#{HERE}"}, beat))
            self._next_write += 1.0


async def test_a_blackholed_target_is_waited_out_visibly_with_bounded_memory_then_drained() -> None:
    clock, signal = FakeClock(), Signal()
    stream = FakeStream("orders", clock=clock.datetime)
    target = TableWriter(EU, meta=META, signal=signal)
    metrics = Metrics(source_region=HERE, heartbeat_max_age=60.0, clock=clock)
    app = Application(stream, clock)
    stop = asyncio.Event()

    async def wait(seconds: float, stopping: asyncio.Event) -> bool:
        clock.now += seconds  # a retry wait is time passing; the application keeps writing
        app.catch_up()
        await asyncio.sleep(0)
        return stopping.is_set()

    retry = RetryPolicy(
        stop=stop, observer=metrics, backoff=Backoff(base=0.1, cap=10.0), wait=wait, clock=clock
    )
    pipeline = fake_time_pipeline(
        stream, target, metrics, clock, stop, retry=retry, records_per_call=RECORDS_PER_CALL
    )
    task = asyncio.create_task(pipeline.run())
    try:
        app.catch_up()
        await signal.until(lambda: len(target.applied()) == 2, watch=task)
        assert metrics.ready() == (True, "ok")

        target.fail_all(BLACKHOLE)
        start = clock.now
        clock.now += 1.0
        app.catch_up()
        await signal.until(lambda: clock.now >= start + OUTAGE_SECONDS, watch=task)

        # The process stays up and says why it is not ready.
        assert not task.done()
        ready, reason = metrics.ready()
        assert not ready
        assert reason.startswith("target write in eu-west-1 failing for")
        assert "no answer within the attempt timeout" in reason
        age = scraped(metrics, "replicator_heartbeat_age_seconds", target_region="eu-west-1")
        assert age >= OUTAGE_SECONDS
        failing = scraped(metrics, "replicator_aws_call_failing_seconds", call="target write")
        assert failing >= OUTAGE_SECONDS - 1
        assert metrics.total("retries") > 10
        # Memory is bounded: the reader stopped once the lane was full.
        written = len(app.records)
        # A lane's window holds merged batches of under two pages each; its queue and
        # the decoder's hand hold a page each.
        most = (2 * LANE_WINDOW + QUEUED_BATCHES_PER_LANE + 1) * RECORDS_PER_CALL
        # Well past the bound (how far past depends on how the fake clock met the writer).
        assert written > 2 * most
        assert metrics.total("records_read") <= most

        target.heal()
        last = app.records[-1]["dynamodb"]["SequenceNumber"]
        await signal.until(
            lambda: any(w.sequence_number == last for w in target.writes), watch=task
        )
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await task

    expected = replay(stream_records(stream), here=HERE, target_region=EU.region, meta=META)
    assert target.state() == expected, "after the heal the drain leaves 0 differences"
    assert metrics.ready() == (True, "ok")


def stream_records(stream: FakeStream) -> list[dict[str, object]]:
    """Every record of the stream's shard, in order (what the application wrote)."""
    return list(stream._log("shard-0000").records)

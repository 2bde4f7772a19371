"""Lag is honest: apply delays raise it, and a stalled pipeline never reads as "lag 0".

Time is a fake clock shared by the stream, the applier and the metrics, so the
injected apply delay and the stall are exact and the test never sleeps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from replicator.apply.applier import ChangeWriter, TargetApplier
from replicator.aws.retry import RetryPolicy
from replicator.models import Change, Checkpoint, Meta, Outcome, TargetRef
from replicator.pipeline.pair import PairPipeline
from replicator.stream.fake import FakeStream
from replicator.stream.source import MAX_RECORDS_PER_CALL
from replicator.telemetry.metrics import Metrics
from tests.fakes import DeadLetters, Signal, TableWriter
from tests.functional.test_pipeline_faults import TINY

HERE, EU = "us-east-1", TargetRef("eu-west-1", "orders")
META = Meta(version="version")
PREFIX = "__replicator_heartbeat__"
pytestmark = pytest.mark.timeout(30)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def datetime(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now, dt.UTC)


class DelayedWriter:
    """Each write takes ``delay`` seconds of the fake clock: a slow target region."""

    def __init__(self, inner: TableWriter, clock: FakeClock) -> None:
        self.inner, self.clock, self.delay = inner, clock, 0.0

    async def put(self, change: Change, *, now: float) -> Outcome:
        self.clock.now += self.delay
        return await self.inner.put(change, now=self.clock())


class MemoryCheckpoints:
    async def load(self, source_table: str) -> dict[tuple[str, TargetRef], Checkpoint]:
        return {}

    async def save(self, source_table: str, checkpoint: Checkpoint) -> bool:
        return True


def fake_time_pipeline(
    stream: FakeStream,
    writer: ChangeWriter,
    metrics: Metrics,
    clock: FakeClock,
    stop: asyncio.Event,
    *,
    retry: RetryPolicy | None = None,
    records_per_call: int = MAX_RECORDS_PER_CALL,
) -> PairPipeline:
    """``stream`` replicated into ``writer`` (the target EU) on ``clock``'s time."""
    applier = TargetApplier(
        writer,
        DeadLetters(),
        target=EU,
        metrics=metrics,
        max_concurrency=4,
        stop=stop,
        clock=clock,
        heartbeat_prefix=PREFIX,
        retry=retry,
    )
    return PairPipeline(
        source_table=stream.table,
        region=HERE,
        meta=META,
        source=stream,
        appliers=[applier],
        checkpoints=MemoryCheckpoints(),  # type: ignore[arg-type]
        metrics=metrics,
        stop=stop,
        discovery_interval=0.02,
        idle_backoff=TINY,
        retry_backoff=TINY,
        records_per_call=records_per_call,
        retry=retry,
        clock=clock,
    )


def beat(stream: FakeStream, clock: FakeClock) -> None:
    millis = int(clock() * 1000)
    stream.insert({"pk": f"{PREFIX}#{HERE}"}, {"version": millis, "heartbeat_ms": millis})


def write(stream: FakeStream, name: str, version: int) -> None:
    stream.insert({"pk": name}, {"version": version})


def scraped(metrics: Metrics, name: str, **labels: str) -> float:
    """The value of one series in the ``/metrics`` text."""
    for line in metrics.prometheus_text().decode().splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not exported")


def heartbeat(metrics: Metrics) -> dict[str, Any]:
    pair: dict[str, Any] = metrics.status()["pairs"][0]["heartbeat"]
    return pair


async def test_apply_delay_raises_lag_and_a_paused_reader_ages_the_heartbeat() -> None:
    clock, signal = FakeClock(), Signal()
    stream = FakeStream("orders", clock=clock.datetime)
    target = TableWriter(EU, meta=META, signal=signal)
    writer = DelayedWriter(target, clock)
    metrics = Metrics(source_region=HERE, heartbeat_max_age=10.0, clock=clock)
    stop = asyncio.Event()
    pipeline = fake_time_pipeline(stream, writer, metrics, clock, stop)
    task = asyncio.create_task(pipeline.run())
    lag_count = "replicator_replication_lag_seconds_count"
    fast_bucket = 'replicator_replication_lag_seconds_bucket{le="1.0"'
    try:
        write(stream, "a", 1)
        beat(stream, clock)
        await signal.until(lambda: len(target.writes) == 2, watch=task)
        assert heartbeat(metrics)["lag_seconds"] == 0.0
        assert scraped(metrics, fast_bucket) == scraped(metrics, lag_count) == 2

        writer.delay = 2.0  # the target region slows down
        write(stream, "b", 1)
        beat(stream, clock)
        await signal.until(lambda: len(target.writes) == 4, watch=task)
        assert heartbeat(metrics)["lag_seconds"] >= 2.0
        assert scraped(metrics, lag_count) == 4
        assert scraped(metrics, fast_bucket) == 2  # both slow writes landed above 1 s
        assert scraped(metrics, "replicator_heartbeat_lag_seconds") >= 2.0

        stream.throttle(1000)  # the reader stalls: every read is refused
        applied = metrics.total("applied")
        metrics.sample()
        clock.now += 30.0
        metrics.sample()
        age = scraped(metrics, "replicator_heartbeat_age_seconds", target_region="eu-west-1")
        assert age >= 30.0
        assert metrics.total("applied") == applied
        assert metrics.status()["pairs"][0]["throughput_per_second"] == 0
        ready, reason = metrics.ready()
        assert not ready and "heartbeat" in reason
    finally:
        stop.set()
        await task


def test_before_any_heartbeat_the_age_counts_from_start_up() -> None:
    clock = FakeClock()
    metrics = Metrics(source_region=HERE, heartbeat_max_age=10.0, clock=clock)
    metrics.register_pair("orders", EU)
    clock.now += 45.0
    assert heartbeat(metrics)["age_seconds"] == pytest.approx(45.0)
    ready, reason = metrics.ready()
    assert not ready and "45.0 s old" in reason

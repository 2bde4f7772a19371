"""Benchmarks 8 and 9: the default config (adaptive concurrency) against a round-trip-bound target.

8. A backlog from a source that is never the bottleneck (``bench.fakes.GeneratedStream``,
   its records made before the clock starts) drained by the real write path (conditional
   PutItem signed and sent over HTTP) into the stub target answering after 80 ms: the
   rate from the first write, and this process's CPU per write: reading and decoding
   records, deciding, signing, sending, parsing answers, metrics and checkpoints.
9. The same against a stub that throttles above 1 000 writes/s, as a provisioned table
   does: the rate it settles at once the limit has found the table's, and retried
   writes as a share of writes.

The target runs in its own process (its CPU is not ours); the checkpoints are in memory
(one small write per page, as on the control table).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass

from bench.env import SOURCE_REGION, TARGET_REGION, announced, credentials
from bench.fakes import META, TARGET, GeneratedStream, memory_pipeline
from bench.results import Goal, Result
from bench.ui import progress
from replicator.apply.writer import ConditionalWriter
from replicator.aws.factory import Clients
from replicator.models import Change, Mode, Outcome
from replicator.service.run import tune_gc
from replicator.telemetry.metrics import Metrics

DRAIN = "8 drain, default config"
THROTTLED = "9 throttled target"
RATE_GOAL = Goal(">=", 5000, "records/s")
CPU_GOAL = Goal("<=", 150, "µs/write")
SETTLE_GOAL = Goal(">=", 0.85, "x throttle rate")
RETRY_GOAL = Goal("<=", 0.05, "x writes")
THROTTLE_ABOVE = 1000.0
SETTLED = ("applied", "superseded", "duplicate", "dead_lettered")
POLL_SECONDS = 0.25
# The throttled drain's rate is judged after this share of it: the limit first has to
# find the table's rate (slow start overshoots it once).
SETTLE_SHARE = 0.25


class FirstWrite:
    """A ``ChangeWriter`` noting when the first write started and the limit's path."""

    def __init__(self, inner: ConditionalWriter) -> None:
        self._inner = inner
        self.started: float | None = None

    async def put(self, change: Change, *, now: float) -> Outcome:
        if self.started is None:
            self.started = time.perf_counter()
        return await self._inner.put(change, now=now)


@dataclass(frozen=True, slots=True)
class Drain:
    complete: bool  # the backlog's shard was checkpointed as ended
    seconds: float  # from the first write to the last settled
    settled: int
    cpu_seconds: float
    retries: int
    peak_limit: int
    made_cpu_seconds: float  # making the backlog's records, before the clock started
    timeline: list[tuple[float, int, int]]  # (seconds since the first write, settled, retries)


def settled(metrics: Metrics) -> int:
    return sum(metrics.total(name) for name in SETTLED)


async def drain_to_stub(
    records: int, *, rtt: float, throttle_above: float | None = None, what: str
) -> Drain:
    """Drain ``records`` generated records into a stub target; bounded in time."""
    command = [sys.executable, "-m", "bench.stub", "--rtt", str(rtt)]
    if throttle_above:
        command += ["--throttle-above", str(throttle_above)]
    stream = GeneratedStream(records)
    made = stream.make_all()  # not counted: the source's own work, not the replicator's
    with credentials(), announced(command, name="stub target") as port:
        clients = Clients({TARGET_REGION: f"http://127.0.0.1:{port}"})
        metrics = Metrics(source_region=SOURCE_REGION)
        try:
            put = await clients.put_client(TARGET_REGION)
            writer = FirstWrite(
                ConditionalWriter(
                    put,
                    TARGET.table,
                    region=TARGET_REGION,
                    meta=META,
                    mode=Mode.ONE_WAY,
                    tombstone_ttl_seconds=7 * 24 * 3600,
                )
            )
            pipeline, checkpoints, stop = memory_pipeline(
                stream,
                table="bench",
                metrics=metrics,
                writer=writer,
                max_concurrency="auto",
            )
            (applier,) = pipeline.appliers
            tune_gc()  # as ``replicator run`` does once started
            timeline: list[tuple[float, int, int]] = []
            peak = 0
            cpu_started = time.process_time()
            with progress(f"{what}: {records:,} records", total=records) as update:
                async with asyncio.TaskGroup() as group:
                    group.create_task(pipeline.run())
                    try:
                        async with asyncio.timeout(60 + records / 200):
                            while not checkpoints.ended.is_set():
                                peak = max(peak, applier.limit.limit)
                                count = settled(metrics)
                                update(count)
                                if writer.started is not None:
                                    since = time.perf_counter() - writer.started
                                    timeline.append((since, count, metrics.total("retries")))
                                await _wait(checkpoints.ended, POLL_SECONDS)
                    finally:
                        ended = time.perf_counter()
                        cpu = time.process_time() - cpu_started
                        stop.set()
            first = writer.started if writer.started is not None else ended
            # The end itself, so the rate runs to the last write, not to the last poll.
            timeline.append((ended - first, settled(metrics), metrics.total("retries")))
            return Drain(
                complete=checkpoints.ended.is_set(),
                seconds=ended - first,
                settled=settled(metrics),
                cpu_seconds=cpu,
                retries=metrics.total("retries"),
                peak_limit=peak,
                made_cpu_seconds=made,
                timeline=timeline,
            )
        finally:
            metrics.shutdown()
            await clients.aclose()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass


async def default_drain(records: int, *, rtt: float) -> list[Result]:
    """Benchmark 8."""
    drained = await drain_to_stub(records, rtt=rtt, what="[8] draining to the stub")
    writes = max(1, drained.settled + drained.retries)  # coalesced records cost no write
    rate = records / drained.seconds if drained.complete else None
    note = (
        f"{records:,}-record backlog from a generated source, {rtt * 1000:.0f} ms RTT stub "
        f"target, max_concurrency auto (limit peaked at {drained.peak_limit}); "
        f"{drained.settled:,} settled in {drained.seconds:.2f} s from the first write, "
        f"this process's CPU {drained.cpu_seconds / drained.seconds:.0%} of one core meanwhile"
    )
    made_us = drained.made_cpu_seconds / records * 1e6
    details = {"seconds": drained.seconds, "settled": drained.settled, "peak": drained.peak_limit}
    return [
        Result(DRAIN, "drain from the first write", rate, "records/s", RATE_GOAL, note, details),
        Result(
            DRAIN,
            "client CPU per write",
            drained.cpu_seconds / writes * 1e6,
            "µs/write",
            CPU_GOAL,
            f"this process's CPU from the first read to the last checkpoint over {writes:,} "
            f"writes; the source's records were made before ({made_us:.0f} µs each, not counted)",
        ),
    ]


async def throttled_drain(
    records: int, *, rtt: float, unthrottled: float | None = None
) -> list[Result]:
    """Benchmark 9. ``unthrottled``: this process's drain rate without throttling
    (benchmark 8 in the same run); measured here on a short drain when not given."""
    if unthrottled is None:
        probe = max(1, records // 4)
        free = await drain_to_stub(probe, rtt=rtt, what="[9] unthrottled drain, for reference")
        unthrottled = probe / free.seconds if free.complete else 0.0
    drained = await drain_to_stub(
        records, rtt=rtt, throttle_above=THROTTLE_ABOVE, what="[9] draining to a throttling stub"
    )
    settled_rate = _settled_rate(drained.timeline)
    writes = max(1, drained.settled + drained.retries)
    note = (
        f"stub target refusing PutItem above {THROTTLE_ABOVE:.0f}/s, {rtt * 1000:.0f} ms RTT; "
        f"rate over the last {1 - SETTLE_SHARE:.0%} of a {records:,}-record drain, "
        f"{settled_rate:.0f} writes/s ({settled_rate / max(1.0, unthrottled):.2f}x the "
        f"unthrottled {unthrottled:.0f}/s); limit peaked at {drained.peak_limit}"
    )
    # A machine on which this process cannot reach the table's rate even unthrottled
    # measures its own CPU, not how the limit settles.
    unreachable = (
        ""
        if unthrottled >= THROTTLE_ABOVE
        else f"unthrottled, this process drains only {unthrottled:.0f} writes/s here, below "
        f"the {THROTTLE_ABOVE:.0f}/s the table allows"
    )
    details = {
        "settled_per_second": settled_rate,
        "unthrottled_per_second": unthrottled,
        "timeline": drained.timeline[::4],
    }
    return [
        Result(
            THROTTLED,
            "settled rate / throttle rate",
            settled_rate / THROTTLE_ABOVE,
            "x",
            SETTLE_GOAL,
            note,
            details,
            unreachable=unreachable,
        ),
        Result(
            THROTTLED,
            "retried writes / writes",
            drained.retries / writes,
            "x",
            RETRY_GOAL,
            f"{drained.retries:,} retries over {writes:,} writes (whole drain, start included)",
        ),
    ]


def _settled_rate(timeline: list[tuple[float, int, int]]) -> float:
    if len(timeline) < 2:
        return 0.0
    end_time, end_count, _ = timeline[-1]
    start_time, start_count, _ = next(t for t in timeline if t[0] >= end_time * SETTLE_SHARE)
    return (end_count - start_count) / max(1e-9, end_time - start_time)

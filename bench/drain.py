"""Benchmarks 2 and 3: draining a backlog on moto with cross-region round-trip time.

One run, one backend, one target behind the fault proxy:
- the raw ceiling: the product client's conditional PutItem (the condition the pipeline
  sends) at the pipeline's concurrency, straight to the target;
- the pipeline: ``replicator run``'s wiring (stream reader, lanes, applier, checkpoints
  and DLQ in the source region) draining the backlog;
- the naive handler: a sequential boto3 put per record, as Lambda stream-handler
  tutorials write it, on the first records of the same backlog (it is too slow to run
  on all of them: its rate is measured on that slice and compared as a rate).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.backlog import RAW_CONCURRENCY, deadline_for, measure_ceiling, prepare, unique
from bench.env import SOURCE_REGION, TARGET_REGION, Backend
from bench.naive import first_records, naive_handler_rate
from bench.reads import CpuMeter, TimedSource, cpu_note
from bench.results import Goal, Result
from bench.ui import progress
from replicator.aws.factory import Clients
from replicator.config.schema import Config, HeartbeatConfig, Pair, Target, WebConfig
from replicator.service.run import build_pipelines, tune_gc
from replicator.telemetry.metrics import Metrics

DRAIN = "2 drain rate"
NAIVE = "3 vs naive handler"
DRAIN_GOAL = Goal(">=", 0.85, "x ceiling")
READ_GOAL = Goal(">=", 0.9, "x GetRecords")
NAIVE_GOAL = Goal(">=", 25, "x naive")
DEFAULT_CONCURRENCY: int | Literal["auto"] = Pair.model_fields["max_concurrency"].default
# A raw ceiling under this share of what its writers' round trips allow (RAW_CONCURRENCY /
# RTT): the target's CPU, not the round trip, held them back.
TARGET_BOUND_SHARE = 0.85
# Outcomes of distinct records; a redelivered one is a ``duplicate`` and is not counted.
SETTLED = ("applied", "superseded", "dead_lettered")
POLL_SECONDS = 0.1


def _unreachable(ceiling_over_naive: float) -> str:
    """Why goal 3 cannot be met on this target, or "" when it can.

    A target that takes fewer than 25 naive handlers' worth of writes per second (moto
    spends milliseconds of CPU per conditional put) caps every pipeline below the goal.
    """
    if NAIVE_GOAL.met(ceiling_over_naive):
        return ""
    return (
        f"the target itself takes only {ceiling_over_naive:.1f}x the naive handler's "
        f"writes/s, so no pipeline at this concurrency reaches {NAIVE_GOAL.text} on it"
    )


def read_unreachable(ceiling: float, drained: float, read_rate: float, *, rtt: float) -> str:
    """Why the drain cannot reach READ_GOAL of the source's GetRecords rate, or "".

    The target bounds the drain when the raw writers fell short of what their round trips
    allow (moto's CPU held them back) and the pipeline, adaptive concurrency and all, got
    no more out of it than they did. The stub answers at once: there the pipeline goes
    far past the raw client's fixed writers.
    """
    target = max(ceiling, drained)  # the target took at least what the pipeline wrote
    if READ_GOAL.met(target / read_rate):
        return ""
    held_back = ceiling < TARGET_BOUND_SHARE * RAW_CONCURRENCY / rtt
    if not held_back or drained * DRAIN_GOAL.value > ceiling:
        return ""
    return (
        f"the target takes at most {target:,.0f} writes/s, {target / read_rate:.2f}x moto's "
        "GetRecords rate: the target, not the source, bounds the drain"
    )


def drain_config(
    backend: Backend,
    source_table: str,
    target_table: str,
    *,
    concurrency: int | Literal["auto"],
    kinesis_stream: str | None = None,
    **extra: Any,
) -> Config:
    """What an operator's replicator.yaml would say for this benchmark; with
    ``kinesis_stream`` the pair reads the table's changes from that Kinesis stream."""
    return Config(
        source_region=SOURCE_REGION,
        endpoints=backend.endpoints,
        control_table=unique("control"),
        dlq_table=unique("dlq"),
        pairs=[
            Pair(
                source_table=source_table,
                targets=[Target(region=TARGET_REGION, table=target_table)],
                max_concurrency=concurrency,
                kinesis_stream=kinesis_stream,
            )
        ],
        web=WebConfig(enabled=False),
        heartbeat=extra.pop("heartbeat", HeartbeatConfig(enabled=False)),
        **extra,
    )


def settled(metrics: Metrics) -> int:
    return sum(metrics.total(name) for name in SETTLED)


@dataclass(frozen=True, slots=True)
class Drained:
    seconds: float
    settled: int
    totals: Mapping[str, int]
    read_seconds: float = 0.0  # time a GetRecords call was outstanding
    read_records: int = 0
    cpu: Mapping[str, float] = field(default_factory=dict)  # CPU seconds per process


async def pipeline_drain(
    backend: Backend,
    source_table: str,
    target_table: str,
    records: int,
    *,
    concurrency: int | Literal["auto"] = DEFAULT_CONCURRENCY,
) -> Drained:
    """Run the real pipeline until all ``records`` are settled on the target (bounded)."""
    config = drain_config(backend, source_table, target_table, concurrency=concurrency)
    metrics = Metrics(source_region=SOURCE_REGION)
    try:
        label = f"[2] pipeline draining {records:,} records"
        return await drain_until(backend, config, metrics, settled, records, label=label)
    finally:
        metrics.shutdown()


async def drain_until(
    backend: Backend,
    config: Config,
    metrics: Metrics,
    done: Callable[[Metrics], int],
    total: int,
    *,
    label: str,
) -> Drained:
    """Run ``config``'s one pipeline, built as ``replicator run`` builds it, until
    ``done(metrics)`` reaches ``total`` (bounded); ``Drained.settled`` is that count."""
    clients = Clients(config.endpoints)
    stop = asyncio.Event()
    try:
        (pipeline,) = await build_pipelines(config, clients, metrics=metrics, stop=stop)
        pipeline.source = reads = TimedSource(pipeline.source)
        tune_gc()  # as ``replicator run`` does once started
        cpu = CpuMeter(backend.processes)
        cpu.start()
        with progress(label, total=total) as update:
            async with asyncio.TaskGroup() as group:
                started = time.perf_counter()
                group.create_task(pipeline.run())
                try:
                    async with asyncio.timeout(deadline_for(total)):
                        while (count := done(metrics)) < total:
                            update(count)
                            await asyncio.sleep(POLL_SECONDS)
                except TimeoutError:
                    pass  # reported: fewer than ``total`` done
                finally:
                    elapsed = time.perf_counter() - started
                    stop.set()
        used = cpu.used()
        counted = (*SETTLED, "duplicate", "records_read", "retries")
        totals = {name: metrics.total(name) for name in counted}
        return Drained(elapsed, done(metrics), totals, reads.busy_seconds, reads.records, used)
    finally:
        await clients.aclose()


@dataclass(frozen=True, slots=True)
class DrainReport:
    results: list[Result]
    ceiling_per_second: float


async def drain_rate(
    backend: Backend,
    records: int = 20_000,
    *,
    ceiling_writes: int | None = None,
    naive_records: int = 300,
    concurrency: int | Literal["auto"] = DEFAULT_CONCURRENCY,
) -> DrainReport:
    """Benchmarks 2 and 3 on one backlog of ``records`` distinct items."""
    ceiling_writes = ceiling_writes or min(records, 5_000)
    naive_records = min(naive_records, records)
    source_table, target_table = unique("source"), unique("target")
    with progress(f"[2] writing a {records:,}-record backlog", total=records) as update:
        await prepare(backend, source_table, [target_table], backlog=records, on_progress=update)

    # The source's own GetRecords rate: the whole backlog read by one reader with nothing
    # else running, before the drain and after it, so that drift weighs on both sides.
    backlog, read_before = await first_records(backend, source_table, records)
    # Half of the ceiling before the drain and half after, for the same reason.
    before = await measure_ceiling(backend, max(1, ceiling_writes // 2))
    drained = await pipeline_drain(
        backend, source_table, target_table, records, concurrency=concurrency
    )
    after = await measure_ceiling(backend, max(1, ceiling_writes // 2))
    ceiling = (before[1] + after[1]) / (before[1] / before[0] + after[1] / after[0])
    complete = drained.settled >= records
    rate = drained.settled / drained.seconds
    backlog, read_after = await first_records(backend, source_table, records)
    read_rate = 2 * len(backlog) / (read_before + read_after)
    # moto's GetRecords rate while the drain ran, and the share of the drain it was asked.
    read_during = drained.read_records / drained.read_seconds if drained.read_seconds else 0.0
    reader_busy = drained.read_seconds / drained.seconds
    slice_ = backlog[:naive_records]
    with progress(f"[3] naive handler on {len(slice_):,} records", total=1) as update:
        naive = await asyncio.to_thread(
            naive_handler_rate, backend.proxied_target, target_table, slice_
        )
        update(1)

    rtt_ms = f"{backend.rtt * 1000:.0f} ms RTT"
    where = "moto target" if backend.target == "moto" else "stub target"
    drain_note = f"{records:,}-record backlog, {rtt_ms}, concurrency {concurrency}, {where}"
    if not complete:
        drain_note = f"timed out: {drained.settled:,} of {records:,} settled; " + drain_note
    details = {
        "target": backend.target,
        "records": records,
        "seconds": drained.seconds,
        "totals": dict(drained.totals),
        "ceiling_before": before[0],
        "ceiling_after": after[0],
    }
    results = [
        Result(DRAIN, f"pipeline drain, {where}", rate, "records/s", None, drain_note, details),
        Result(
            DRAIN,
            f"raw ceiling, {where}",
            ceiling,
            "writes/s",
            None,
            f"conditional PutItem x {before[1] + after[1]:,}, concurrency "
            f"{RAW_CONCURRENCY}; half before the drain ({before[0]:.0f}/s), half after "
            f"({after[0]:.0f}/s)",
        ),
        Result(
            DRAIN,
            f"drain / ceiling, {where}",
            rate / ceiling if complete else None,
            "x",
            DRAIN_GOAL,
        ),
        Result(
            DRAIN,
            f"drain / the source's own GetRecords rate, {where}",
            rate / read_rate if complete else None,
            "x",
            READ_GOAL,
            f"moto source alone serves {read_rate:,.0f} records/s to one reader "
            f"({len(backlog):,} records of one shard, read before the drain at "
            f"{len(backlog) / read_before:,.0f}/s and after it at "
            f"{len(backlog) / read_after:,.0f}/s)",
            unreachable=read_unreachable(ceiling, rate, read_rate, rtt=backend.rtt),
        ),
        Result(
            DRAIN,
            f"moto's GetRecords rate during the drain / alone, {where}",
            read_during / read_rate if complete else None,
            "x",
            None,
            f"a GetRecords call was outstanding {reader_busy:.0%} of the drain, served at "
            f"{read_during:,.0f} records/s; {cpu_note(drained.cpu, drained.settled)}",
            {"reader_busy": reader_busy, "cpu_seconds": dict(drained.cpu)},
        ),
        Result(
            NAIVE,
            f"naive handler, {where}",
            naive,
            "records/s",
            None,
            f"sequential boto3 put per record on the first {len(slice_):,} records of the "
            f"backlog, same {rtt_ms}; all {records:,} would take {records / naive:,.0f} s "
            f"(pipeline: {drained.seconds:,.0f} s)",
        ),
        Result(
            NAIVE,
            f"drain / naive, {where}",
            rate / naive if complete else None,
            "x",
            NAIVE_GOAL,
            f"the target's raw ceiling is {ceiling / naive:.1f}x the naive handler",
            # The pipeline itself may beat the raw client's fixed 32 writers (adaptive
            # concurrency): then the target took at least the pipeline's rate.
            unreachable=_unreachable(max(ceiling, rate) / naive),
        ),
    ]
    return DrainReport(results, ceiling)

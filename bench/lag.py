"""Benchmark 4: replication lag under steady load, read off the heartbeat canary.

The source table takes writes at half the target's measured ceiling (``bench.load``, in
its own process) while ``replicator run``'s wiring replicates it across the injected
round trip, heartbeat included (every 0.2 s here instead of 1 s, for more samples).
Each heartbeat's lag is ``applied at - written at``, both on this process's clock,
exactly what ``replicator_heartbeat_lag_seconds`` shows; ``Metrics`` keeps only the
latest, so a subclass also keeps every one.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any, Literal

from bench.backlog import measure_ceiling, prepare, replicated_put, unique
from bench.drain import DEFAULT_CONCURRENCY, drain_config
from bench.env import ROOT, SOURCE_REGION, TARGET_REGION, Backend
from bench.results import Goal, Result
from bench.ui import progress
from replicator.aws.backoff import pause
from replicator.aws.factory import Clients
from replicator.config.schema import HeartbeatConfig
from replicator.models import TargetRef
from replicator.service.run import build_pipelines, sample_history, tune_gc
from replicator.service.startup import heartbeat_writers
from replicator.telemetry.metrics import Metrics
from replicator.telemetry.state import quantile

NAME = "4 lag under load"
P50_GOAL = Goal("<=", 0.3, "s")
P99_GOAL = Goal("<=", 1.0, "s")
LOAD_SHARE = 0.5
HEARTBEAT_INTERVAL_SECONDS = 0.2
FIRST_BEAT_TIMEOUT_SECONDS = 60.0
PROBE_INTERVAL_SECONDS = 0.25


class HeartbeatLog(Metrics):
    """``Metrics`` that also keeps every heartbeat's (sent at, lag)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.beats: list[tuple[float, float]] = []
        self.arrived = asyncio.Event()

    def heartbeat(
        self, source_table: str, target: TargetRef, *, sent_at: float, lag: float
    ) -> None:
        super().heartbeat(source_table, target, sent_at=sent_at, lag=lag)
        self.beats.append((sent_at, lag))
        self.arrived.set()


async def run_load(backend: Backend, table: str, *, rate: float, seconds: float) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.load",
        "--endpoint",
        backend.source_endpoint,
        "--table",
        table,
        "--rate",
        f"{rate:.3f}",
        "--seconds",
        f"{seconds:.3f}",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(seconds + 60):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = output.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"load generator failed with code {process.returncode}")
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


async def probe_target(
    clients: Clients, table: str, stop: asyncio.Event, *, seconds: float
) -> list[float]:
    """Round-trip seconds of one conditional put every 0.25 s until ``stop`` (bounded).

    The target's own answer time under the same load, through the same proxy and write
    client: the part of the heartbeat's lag that no pipeline can remove.
    """
    put = await clients.put_client(TARGET_REGION)
    rng = random.Random(4)
    latencies: list[float] = []
    for number in range(int(seconds / PROBE_INTERVAL_SECONDS) + 1):
        started = time.perf_counter()
        await put.put_item(**replicated_put(table, number, rng))
        latencies.append(time.perf_counter() - started)
        if await pause(PROBE_INTERVAL_SECONDS, stop):
            break
    return latencies


async def lag_under_load(
    backend: Backend,
    seconds: float = 60.0,
    *,
    ceiling: float | None = None,
    concurrency: int | Literal["auto"] = DEFAULT_CONCURRENCY,
    heartbeat_interval: float = HEARTBEAT_INTERVAL_SECONDS,
) -> list[Result]:
    if ceiling is None:
        ceiling, _ = await measure_ceiling(backend, 500)
    rate = max(1.0, ceiling * LOAD_SHARE)
    source_table, target_table = unique("lag-source"), unique("lag-target")
    probe_table = unique("lag-probe")
    await prepare(backend, source_table, [target_table, probe_table])
    heartbeat = HeartbeatConfig(
        interval_seconds=heartbeat_interval, ready_max_age_seconds=max(60.0, heartbeat_interval * 2)
    )
    config = drain_config(
        backend, source_table, target_table, concurrency=concurrency, heartbeat=heartbeat
    )
    metrics = HeartbeatLog(source_region=SOURCE_REGION)
    clients = Clients(config.endpoints)
    stop = asyncio.Event()
    try:
        (pipeline,) = await build_pipelines(config, clients, metrics=metrics, stop=stop)
        (beat,) = await heartbeat_writers(config, clients, metrics=metrics, stop=stop)
        tune_gc()  # as ``replicator run`` does once started
        async with asyncio.TaskGroup() as group:
            group.create_task(pipeline.run())
            group.create_task(beat.run(stop))
            group.create_task(sample_history(metrics, stop))
            try:
                async with asyncio.timeout(FIRST_BEAT_TIMEOUT_SECONDS):
                    await metrics.arrived.wait()  # the pipeline is up and replicating
                load_started = time.time()
                probe_stop = asyncio.Event()
                probe = group.create_task(
                    probe_target(clients, probe_table, probe_stop, seconds=seconds)
                )
                with progress(f"[4] {rate:.0f} writes/s for {seconds:.0f} s", total=1) as done:
                    load = await run_load(backend, source_table, rate=rate, seconds=seconds)
                    done(1)
                load_ended = time.time()
                probe_stop.set()
                probed = await probe
            finally:
                stop.set()
        status = metrics.status()
    finally:
        metrics.shutdown()
        await clients.aclose()

    warmup = min(5.0, seconds * 0.1)
    lags = [lag for sent, lag in metrics.beats if load_started + warmup <= sent <= load_ended]
    p50, p99 = quantile(lags, 0.5), quantile(lags, 0.99)
    pair = status["pairs"][0] if status["pairs"] else {}
    histogram = pair.get("lag_seconds", {})
    note = (
        f"{backend.target} target: {len(lags)} heartbeats ({heartbeat_interval:g} s apart) under "
        f"{load['rate']:.0f} writes/s = {LOAD_SHARE:.0%} of the {ceiling:.0f}/s ceiling, "
        f"{backend.rtt * 1000:.0f} ms RTT, first {warmup:g} s skipped"
    )
    details = {
        "ceiling_per_second": ceiling,
        "load": load,
        "heartbeats": len(lags),
        "histogram_p50": histogram.get("p50"),
        "histogram_p99": histogram.get("p99"),
        "max": max(lags) if lags else None,
    }
    where = "moto target" if backend.target == "moto" else "stub target"
    return [
        Result(NAME, f"heartbeat lag p50, {where}", p50, "s", P50_GOAL, note, details),
        Result(NAME, f"heartbeat lag p99, {where}", p99, "s", P99_GOAL),
        Result(
            NAME,
            f"target's own put round trip p50 / p99, {where}",
            quantile(probed, 0.5),
            "s",
            None,
            f"one conditional put every {PROBE_INTERVAL_SECONDS:g} s under the same load, "
            f"{len(probed)} probes; p99 {_seconds(quantile(probed, 0.99))}",
            {"probes": len(probed), "p99": quantile(probed, 0.99)},
        ),
        Result(
            NAME,
            f"applied load, {where}",
            load["rate"],
            "writes/s",
            None,
            f"planned {rate:.0f}/s; {load.get('errors', 0)} errors, {load.get('late', 0)} late",
        ),
    ]


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"

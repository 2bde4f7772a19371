"""``replicator demo``: replication between two embedded regions in one minute.

Starts one moto server per region, creates an ``orders`` table with a stream in
the source region and its replica (TTL on ``_rep_expires``) in the target region,
runs the replicator in-process, drives versioned load with conflicts, deletes and
re-creates, shows a live view, then verifies that both sides agree.

With ``kinesis`` the replicator reads the table's changes from a Kinesis data stream
instead (DESIGN §4c), which the lab's bridge fills as Kinesis delivers: random shards,
held-back records, duplicates, replays, timestamp ties and another table's records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from replicator.apply.applier import DEAD_LETTER
from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.config.schema import Config, parse_config
from replicator.demo.embedded import EMBEDDED_CREDENTIALS, embedded_backend
from replicator.demo.kinesis_bridge import KinesisBridge
from replicator.demo.kinesis_delivery import Delivery
from replicator.demo.kinesis_lab import all_read, bridging, delivery_row, injected
from replicator.demo.kinesis_stream import ensure_stream
from replicator.demo.loadgen import LoadGenerator, LoadStats
from replicator.service.run import metrics_for, run_service
from replicator.telemetry.metrics import Metrics
from replicator.tools.verify import Report, verify

SOURCE_REGION = "us-east-1"
TARGET_REGION = "eu-west-1"
TABLE = "orders"
KINESIS_STREAM = f"{TABLE}-changes"
KINESIS_SHARDS = 2
DRAIN_QUIET_SECONDS = 2.0
DRAIN_TIMEOUT_SECONDS = 60.0
DEFAULT_WEB_PORT = 8080
# Writes a second: well below what the embedded servers absorb (~100 conditional puts a
# second each on a laptop), so the lag shown is the replicator's, not a queue in moto.
DEFAULT_RATE = 30.0


@dataclass(frozen=True)
class DemoResult:
    load: LoadStats
    totals: dict[str, Any]
    report: Report
    dlq_table: str
    dead_letter_example: str | None  # the first dead-letter line: table, key and reason
    delivered: dict[str, int]  # Kinesis source: what the bridge did, by kind (else empty)


class DeadLetterTally(logging.Filter):
    """Keeps dead-letter lines off the demo's console: counted live, the first one kept.

    The demo's unversioned writes are dead-lettered on purpose; one ERROR per record
    would bury the live view.
    """

    def __init__(self) -> None:
        super().__init__()
        self.example: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, DEAD_LETTER, False):
            return True
        if self.example is None:
            self.example = record.getMessage()
        return False


def demo_config(
    endpoints: dict[str, str], web_port: int | None = DEFAULT_WEB_PORT, *, kinesis: bool = False
) -> Config:
    web = {"enabled": False} if web_port is None else {"enabled": True, "port": web_port}
    source = {"kinesis_stream": KINESIS_STREAM} if kinesis else {}
    return parse_config(
        {
            "source_region": SOURCE_REGION,
            "endpoints": endpoints,
            "web": web,
            "pairs": [
                {
                    "source_table": TABLE,
                    "version_attribute": "version",
                    "targets": [{"region": TARGET_REGION, "table": TABLE}],
                    **source,
                }
            ],
        },
        source="demo",
    )


async def create_demo_tables(config: Config) -> None:
    clients = Clients.for_config(config)
    try:
        key = [("pk", "HASH", "S")]
        source = await clients.json("dynamodb", SOURCE_REGION)
        await ensure_table(source, TABLE, key, stream=True)
        target = await clients.json("dynamodb", TARGET_REGION)
        await ensure_table(target, TABLE, key, ttl_attribute=f"{config.metadata_prefix}expires")
        if config.pairs[0].kinesis_stream:
            kinesis = await clients.json("kinesis", SOURCE_REGION)
            await ensure_stream(kinesis, KINESIS_STREAM, shards=KINESIS_SHARDS)
    finally:
        await clients.aclose()


def live_view(
    status: dict[str, Any], load: LoadStats, left: float, bridge: KinesisBridge | None = None
) -> Table:
    totals = status["totals"]
    pair = status["pairs"][0] if status["pairs"] else {}
    lag = pair.get("lag_seconds", {})
    heartbeat = pair.get("heartbeat", {})
    via = " via Kinesis" if bridge else ""
    table = Table(title=f"replicator demo: {SOURCE_REGION} -> {TARGET_REGION}{via}", min_width=60)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("load: writes / conflicts", f"{load.operations} / {load.counts['conflict']}"),
        ("stream records read", f"{totals['records_read']}"),
        ("applied records/s", f"{pair.get('throughput_per_second', 0):,.0f}"),
        ("applied", f"{totals['applied']}"),
        ("superseded", f"{totals['superseded']}"),
        ("duplicate", f"{totals['duplicate']}"),
        ("dead-lettered (DLQ)", f"{totals['dead_lettered']}"),
        ("retries", f"{totals['retries']}"),
        ("lag last / p50 / p99 (ms)", " / ".join(_ms(lag.get(k)) for k in ("last", "p50", "p99"))),
        (
            "heartbeat lag / age (ms)",
            f"{_ms(heartbeat.get('lag_seconds'))} / {_ms(heartbeat.get('age_seconds'))}",
        ),
        ("time left (s)", f"{max(0.0, left):.0f}"),
    ]
    if bridge is not None:
        rows.insert(2, delivery_row(bridge))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _ms(seconds: float | int | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


async def drain(metrics: Metrics, since: float, bridge: KinesisBridge | None = None) -> None:
    """Wait (bounded) until a heartbeat written after ``since`` has reached the target.

    Stream order then guarantees every earlier write was read; verify's re-reads
    cover the last batch still in flight. A Kinesis stream has no order across its
    shards: there the replicator must first have read as many records as the bridge put.
    """
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    if bridge is not None:
        await all_read(bridge, lambda: metrics.total("records_read"), deadline=deadline)
    while time.monotonic() < deadline:
        pairs = metrics.status()["pairs"]
        age = pairs[0]["heartbeat"]["age_seconds"] if pairs else None
        if age is not None and age <= time.time() - since:
            return
        await asyncio.sleep(0.2)


async def run_demo_async(
    endpoints: dict[str, str],
    *,
    duration: float,
    keys: int,
    console: Console,
    web_port: int | None = DEFAULT_WEB_PORT,
    rate: float = DEFAULT_RATE,
    tally: DeadLetterTally | None = None,
    kinesis: bool = False,
) -> DemoResult:
    config = demo_config(endpoints, web_port, kinesis=kinesis)
    await create_demo_tables(config)
    metrics = metrics_for(config)
    stop_service, stop_load = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop_load.set)
    clients = Clients.for_config(config)
    try:
        async with contextlib.AsyncExitStack() as stack:
            bridge = None
            if kinesis:
                delivery = Delivery.like_kinesis()
                bridge = await stack.enter_async_context(
                    bridging(clients, SOURCE_REGION, [TABLE], KINESIS_STREAM, delivery)
                )
            service = asyncio.create_task(
                run_service(
                    config,
                    stop=stop_service,
                    metrics=metrics,
                    on_web_started=lambda url: console.print(f"dashboard: {url}/", highlight=False),
                )
            )
            source = await clients.json("dynamodb", SOURCE_REGION)
            generator = LoadGenerator(source, TABLE, keys=keys)
            ends = time.monotonic() + duration
            load = asyncio.create_task(
                generator.run(
                    operations=10**9,
                    deadline=ends,
                    concurrency=8,
                    stop=stop_load,
                    rate=rate,
                    unversioned_first=True,
                )
            )
            with Live(console=console, refresh_per_second=4, transient=False) as live:
                while not load.done():
                    if service.done():
                        stop_load.set()  # the service failed: stop loading, surface its error
                    left = ends - time.monotonic()
                    live.update(live_view(metrics.status(), generator.stats, left, bridge))
                    await asyncio.wait(
                        {load, service}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED
                    )
                await load
                load_ended = time.time()
                live.update(
                    Group(
                        live_view(metrics.status(), generator.stats, 0, bridge),
                        Text("load finished, draining the stream ..."),
                    )
                )
                await drain(metrics, load_ended, bridge)
                live.update(live_view(metrics.status(), generator.stats, 0, bridge))
            stop_service.set()
            await service
            delivered = injected(bridge) if bridge else {}
        console.print("\nverifying: scanning both regions ...")
        report = await verify(config, on_progress=lambda m: console.print(f"  {m}"))
        return DemoResult(
            generator.stats,
            metrics.status()["totals"],
            report,
            config.dlq_table,
            tally.example if tally else None,
            delivered,
        )
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        stop_service.set()
        await clients.aclose()
        metrics.shutdown()


@contextlib.contextmanager
def demo_backend() -> Iterator[dict[str, str]]:
    with embedded_backend([SOURCE_REGION, TARGET_REGION]) as servers:
        yield {region: server.endpoint for region, server in servers.items()}


def run_demo(
    *,
    duration: float,
    keys: int,
    console: Console,
    web_port: int | None = DEFAULT_WEB_PORT,
    rate: float = DEFAULT_RATE,
    kinesis: bool = False,
) -> DemoResult:
    """Run the whole demo; moto servers are stopped whatever happens."""
    console.print(f"starting embedded DynamoDB for {SOURCE_REGION} and {TARGET_REGION} ...")
    tally = DeadLetterTally()
    handler = RichHandler(console=console, show_path=False)
    handler.addFilter(tally)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    os.environ.update(EMBEDDED_CREDENTIALS)
    with demo_backend() as endpoints:
        return asyncio.run(
            run_demo_async(
                endpoints,
                duration=duration,
                keys=keys,
                console=console,
                web_port=web_port,
                rate=rate,
                tally=tally,
                kinesis=kinesis,
            )
        )

"""``replicator demo --active-active``: two embedded regions written at once, and the feed.

Each region runs its own replicator (as a deployment does) and its own optimistic
writers on one small hot key set, so concurrent writes of a key meet and last-writer-wins
discards some of them. After the drain the demo counts the lost writes from the writers'
own record (what each write overwrote) and looks each one up in the conflict feed of
both regions, as ``replicator conflicts list`` reads it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

from replicator.aws.factory import Clients
from replicator.aws.tables import ensure_table
from replicator.config.schema import Config, parse_config
from replicator.demo.embedded import EMBEDDED_CREDENTIALS, embedded_backend
from replicator.demo.lostwrites import TrackedLoad, WriteId, lost_forks
from replicator.demo.run import TABLE, drain
from replicator.service.run import metrics_for, run_service
from replicator.telemetry.metrics import Metrics
from replicator.tools.conflicts import list_entries
from replicator.tools.verify import verify

REGIONS = ("us-east-1", "eu-west-1")
WRITERS_PER_REGION = 4


@dataclass(frozen=True)
class ActiveDemoResult:
    writes: int
    forks: list[set[WriteId]]
    in_feed: set[WriteId]  # feed entries, by the write each names as lost
    unrecorded: int  # losses met whose entry could not be written (logged)
    differences: int

    def closing_line(self) -> str:
        """How many writes were lost, and whether every one is in the feed."""
        lost = set().union(*self.forks)
        missing = [fork for fork in self.forks if not fork & self.in_feed]
        extra = len(self.in_feed - lost)
        line = (
            f"lost writes: {len(lost)} of {self.writes} (by the writers' own record), in "
            f"{len(self.forks)} forks (writes built on each other and lost together); "
            f"{len(self.forks) - len(missing)} of the forks in the conflict feed "
            "(replicator conflicts list, each by its newest write)"
        )
        if missing:
            shown = ", ".join(f"{k} v{v} from {r}" for k, v, r in (max(f) for f in missing[:5]))
            line += f": {len(missing)} missing ({shown})"
        else:
            line += ": every lost write is in the feed"
        if extra:
            line += f"; {extra} entries name a write that was not lost"
        if self.unrecorded:
            line += f"; {self.unrecorded} entries could not be written (see the log above)"
        return line


def region_config(region: str, endpoints: dict[str, str], web_port: int | None) -> Config:
    web = {"enabled": False} if web_port is None else {"enabled": True, "port": web_port}
    return parse_config(
        {
            "source_region": region,
            "mode": "active-active",
            "endpoints": endpoints,
            "web": web,
            "pairs": [
                {
                    "source_table": TABLE,
                    "targets": [{"region": r, "table": TABLE} for r in REGIONS if r != region],
                }
            ],
        },
        source="demo",
    )


def live_view(metrics: dict[str, Metrics], loads: list[TrackedLoad], left: float) -> Table:
    table = Table(title=f"replicator demo, active-active: {' <-> '.join(REGIONS)}", min_width=60)
    table.add_column("figure")
    for region in REGIONS:
        table.add_column(region, justify="right")
    statuses = [metrics[r].status()["totals"] for r in REGIONS]
    table.add_row("writes", *(str(load.stats.operations) for load in loads))
    refused = (str(load.stats.counts["conflict"]) for load in loads)
    table.add_row("refused by optimistic locking", *refused)
    table.add_row("records its replicator applied", *(str(s["applied"]) for s in statuses))
    table.add_row("lost writes its replicator found", *(str(s["conflicts"]) for s in statuses))
    table.add_row("time left (s)", f"{max(0.0, left):.0f}", "")
    return table


async def run_active_demo_async(
    endpoints: dict[str, str],
    *,
    duration: float,
    keys: int,
    console: Console,
    web_port: int | None,
    rate: float,
) -> ActiveDemoResult:
    # The first region's dashboard on the port asked for, the second's on any free one.
    ports = [web_port, None if web_port is None else 0]
    configs = {r: region_config(r, endpoints, p) for r, p in zip(REGIONS, ports, strict=True)}
    metrics = {r: metrics_for(configs[r]) for r in REGIONS}
    stop_service, stop_load = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop_load.set)
    clients = Clients.for_config(configs[REGIONS[0]])
    services: list[asyncio.Task[None]] = []
    try:
        for region in REGIONS:
            db = await clients.json("dynamodb", region)
            await ensure_table(db, TABLE, [("pk", "HASH", "S")], stream=True)
        for region in REGIONS:

            def announce(url: str, region: str = region) -> None:
                console.print(f"dashboard: {url}/ ({region})", highlight=False)

            services.append(
                asyncio.create_task(
                    run_service(
                        configs[region],
                        stop=stop_service,
                        metrics=metrics[region],
                        on_web_started=announce,
                    )
                )
            )
        loads = [
            TrackedLoad(await clients.json("dynamodb", r), TABLE, keys=keys, region=r, seed=i)
            for i, r in enumerate(REGIONS)
        ]
        ends = time.monotonic() + duration
        writers = [
            asyncio.create_task(
                load.run(
                    operations=10**9,
                    deadline=ends,
                    concurrency=WRITERS_PER_REGION,
                    stop=stop_load,
                    rate=rate / len(REGIONS),
                )
            )
            for load in loads
        ]
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while not all(w.done() for w in writers):
                if any(s.done() for s in services):
                    stop_load.set()  # a service failed: stop loading, surface its error
                live.update(live_view(metrics, loads, ends - time.monotonic()))
                await asyncio.wait(
                    [*writers, *services], timeout=0.5, return_when=asyncio.FIRST_COMPLETED
                )
            await asyncio.gather(*writers)
            load_ended = time.time()
            for region in REGIONS:
                await drain(metrics[region], load_ended)
            live.update(live_view(metrics, loads, 0))
        stop_service.set()
        await asyncio.gather(*services)
        console.print("\nverifying: scanning both regions, reading both conflict feeds ...")
        differences = 0
        for region in REGIONS:
            differences += len((await verify(configs[region])).differences)
        entries = await list_entries(configs[REGIONS[0]])
        in_feed = {
            (e.key["pk"]["S"], int(e.loser.version), e.loser.origin)
            for e in entries
            if not e.loser.tombstone
        }
        writes = sum(len(load.log) for load in loads)
        unrecorded = sum(sum(m.counts["conflicts_unrecorded"].values()) for m in metrics.values())
        return ActiveDemoResult(writes, lost_forks(loads), in_feed, unrecorded, differences)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        stop_service.set()
        await asyncio.gather(*services, return_exceptions=True)
        await clients.aclose()
        for m in metrics.values():
            m.shutdown()


def run_active_demo(
    *, duration: float, keys: int, console: Console, web_port: int | None, rate: float
) -> ActiveDemoResult:
    """Run the whole demo; moto servers are stopped whatever happens."""
    console.print(f"starting embedded DynamoDB for {' and '.join(REGIONS)} ...")
    handler = RichHandler(console=console, show_path=False)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    os.environ.update(EMBEDDED_CREDENTIALS)
    with embedded_backend(list(REGIONS)) as servers:
        endpoints = {region: server.endpoint for region, server in servers.items()}
        return asyncio.run(
            run_active_demo_async(
                endpoints,
                duration=duration,
                keys=keys,
                console=console,
                web_port=web_port,
                rate=rate,
            )
        )

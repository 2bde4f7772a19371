"""The lab's Kinesis source: a stream the bridge fills, running beside the replicator.

``replicator demo --source kinesis``, the chaos suite's Kinesis scenarios and the
end-to-end test all run the bridge the same way: for as long as a block lasts, and its
failure is the block's failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

from replicator.aws.factory import Clients
from replicator.demo.kinesis_bridge import KinesisBridge
from replicator.demo.kinesis_delivery import Delivery

STOP_TIMEOUT_SECONDS = 10.0
READ_POLL_SECONDS = 0.2


@contextlib.asynccontextmanager
async def bridging(
    clients: Clients, region: str, tables: Sequence[str], stream: str, delivery: Delivery
) -> AsyncIterator[KinesisBridge]:
    """``tables``' changes put into ``stream`` while the block runs.

    The bridge is stopped when the block exits; if it failed meanwhile, its error is raised.
    """
    stop = asyncio.Event()
    bridge = KinesisBridge(clients, region, tables, stream, stop=stop, delivery=delivery)
    task = asyncio.create_task(bridge.run(), name=f"bridge {region} -> {stream}")
    try:
        yield bridge
    finally:
        stop.set()
        async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
            await task


def records_put(bridge: KinesisBridge) -> int:
    """Records the bridge has put into the stream: originals, copies and replayed ones."""
    counts = bridge.counts
    return counts["put"] + counts["duplicate"] + counts["replayed"]


async def all_read(bridge: KinesisBridge, read: Callable[[], int], *, deadline: float) -> None:
    """Wait (until ``deadline``, a monotonic time) until one reader that counts the records
    it read (``read``) has read every record the bridge put so far.

    A Kinesis stream has no order across its shards, so a record read last says nothing
    of the others; a count does, for a reader that was never restarted.
    """
    with contextlib.suppress(TimeoutError):  # as at the deadline: verify says what is missing
        await bridge.drained()
    put = records_put(bridge)
    while read() < put:
        if time.monotonic() >= deadline:
            return  # verify's re-reads say what is still missing
        await asyncio.sleep(READ_POLL_SECONDS)


def delivery_row(bridge: KinesisBridge) -> tuple[str, str]:
    """The live view's line of what the bridge did to the stream's consumer."""
    counts = bridge.counts
    copies = counts["duplicate"] + counts["replayed"]
    return (
        "Kinesis: held / copies / ties / other table",
        f"{counts['held']} / {copies} / {counts['ties']} / {counts['foreign']}",
    )


def injected(bridge: KinesisBridge) -> dict[str, int]:
    """What the bridge did that Kinesis does to a consumer, by kind (chaos's fault counts)."""
    counts = bridge.counts
    kinds = {
        "ties": "timestamp ties",
        "held": "records held back",
        "duplicate": "records duplicated",
        "replayed": "records replayed",
        "foreign": "other-table records",
    }
    return {label: counts[kind] for kind, label in kinds.items() if counts[kind]}

"""The heartbeat canary: a timestamped item written into each source table.

It is replicated like any other item; when the applier writes it to a target,
``now - its timestamp`` is the lag in milliseconds, and the age of the newest one
applied keeps growing while replication stalls (DESIGN §7).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from replicator.aws.backoff import pause
from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryPolicy
from replicator.errors import ShutdownInterrupted
from replicator.models import Change, WireItem

SENT_AT_ATTRIBUTE = "heartbeat_ms"


def _base64(text: str) -> str:
    # Binaries travel as the wire has them: base64 text (``aws.binaries``).
    return base64.b64encode(text.encode()).decode()


def heartbeat_key(
    key_schema: list[tuple[str, str, str]], prefix: str, region: str
) -> WireItem | None:
    """The heartbeat item's key for a table, one per source region.

    None when the partition key is not a string (the canary cannot be named there).
    """
    name = f"{prefix}#{region}"
    key: WireItem = {}
    for attribute, kind, type_ in key_schema:
        if kind == "HASH" and type_ != "S":
            return None
        key[attribute] = (
            {"S": name} if type_ == "S" else {"N": "0"} if type_ == "N" else {"B": _base64(name)}
        )
    return key


def sent_at(change: Change, prefix: str) -> float | None:
    """When the heartbeat carried by ``change`` was written (None: not a heartbeat)."""
    # The timestamp first: it is absent from every ordinary item, so this runs cheaply.
    stamp = (change.item or {}).get(SENT_AT_ATTRIBUTE, {}).get("N")
    if stamp is None or not any(
        str(value.get("S", "")).startswith(prefix) for value in change.keys.values()
    ):
        return None
    return int(stamp) / 1000


class HeartbeatWriter:
    """Writes the canary every ``interval`` seconds until ``stop`` is set."""

    def __init__(
        self,
        client: DynamoDB,
        table: str,
        key: WireItem,
        *,
        version_attribute: str,
        interval: float,
        clock: Callable[[], float] = time.time,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._client = client
        self._retry = retry or RetryPolicy()
        self.table = table
        self._key = key
        self._version = version_attribute
        self._interval = interval
        self._clock = clock

    async def beat(self, *, retry: RetryPolicy | None = None) -> None:
        """Write one heartbeat, stamped when the attempt that lands it is made."""

        def attempt() -> Any:
            millis = str(int(self._clock() * 1000))
            item = {**self._key, self._version: {"N": millis}, SENT_AT_ATTRIBUTE: {"N": millis}}
            return self._client.put_item(TableName=self.table, Item=item)

        await (retry or self._retry).call("heartbeat write", self._client.region, attempt)

    async def run(self, stop: asyncio.Event) -> None:
        # A failing write is waited out only until ``stop`` (a tenure's end), not the
        # service's: a process that lost its lease stands by instead of writing on.
        retry = dataclasses.replace(self._retry, stop=stop)
        while not stop.is_set():
            try:
                await self.beat(retry=retry)
            except ShutdownInterrupted:
                return
            if await pause(self._interval, stop):
                return

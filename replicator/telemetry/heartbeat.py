"""The heartbeat canary: a timestamped item written into each source table.

It is replicated like any other item; when the applier writes it to a target,
``now - its timestamp`` is the lag in milliseconds, and the age of the newest one
applied keeps growing while replication stalls (DESIGN §7).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import time
import zlib
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from replicator.aws.backoff import pause
from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryPolicy
from replicator.errors import ShutdownInterrupted
from replicator.models import Change, WireItem

SENT_AT_ATTRIBUTE = "heartbeat_ms"
# A number-keyed table's canary: -1.<the region's CRC-32, 10 digits>E+125, one per region.
# DynamoDB's numbers stop at -9.99...E+125: no counter, id or timestamp comes near, so
# every number at or below -1E+125 is reserved and skipped by verify, whichever region
# wrote it.
RESERVED_NUMBERS_CEILING = Decimal("-1E+125")


def heartbeat_key(key_schema: list[tuple[str, str, str]], prefix: str, region: str) -> WireItem:
    """The heartbeat item's key for a table, one per source region, whatever its key types.

    A string or binary partition key is ``<prefix>#<region>`` (a binary's bytes are its
    UTF-8, carried as base64 text like every binary on the wire); a number one is the
    reserved number of the region. A sort key is the same name, or 0 for a number.
    """
    name = f"{prefix}#{region}"
    key: WireItem = {}
    for attribute, kind, type_ in key_schema:
        if type_ == "S":
            key[attribute] = {"S": name}
        elif type_ == "B":
            key[attribute] = {"B": base64.b64encode(name.encode()).decode()}
        else:
            key[attribute] = {"N": heartbeat_number(region) if kind == "HASH" else "0"}
    return key


def heartbeat_number(region: str) -> str:
    return f"-1.{zlib.crc32(region.encode()):010d}E+125"


def is_heartbeat_value(type_: str, value: object, prefix: str) -> bool:
    """Whether a key attribute's value (S, N or B: base64 text, as the wire has it)
    names a canary."""
    if type_ == "S":
        return isinstance(value, str) and value.startswith(prefix)
    if type_ == "N":
        try:
            return Decimal(str(value)) <= RESERVED_NUMBERS_CEILING
        except ArithmeticError:
            return False
    if type_ == "B":
        return _bytes_of(value).startswith(prefix.encode())
    return False


def _bytes_of(value: object) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except binascii.Error:
        return b""


def sent_at(change: Change, prefix: str) -> float | None:
    """When the heartbeat carried by ``change`` was written (None: not a heartbeat)."""
    # The timestamp first: it is absent from every ordinary item, so this runs cheaply.
    item = change.item or {}
    stamp = item.get(SENT_AT_ATTRIBUTE, {}).get("N")
    # The key as the image holds it: moto's stream ``Keys`` carry a binary base64-encoded
    # twice (its ``NewImage`` is right), and the image is what the target receives.
    if stamp is None or not any(
        is_heartbeat_value(type_, inner, prefix)
        for name in change.keys
        for type_, inner in item.get(name, {}).items()
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

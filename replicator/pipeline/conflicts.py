"""The conflict feed (DESIGN §4b): a DynamoDB table of the writes last-writer-wins discarded.

One item per lost write, keyed by (table, item key, loser origin, loser version, loser
tombstone) and written with ``attribute_not_exists``, so a redelivered record, a replay
or a Lambda retry collapses into the entry already kept (the first winner stays). The
body holds both sides: image, kv, origin, version and tombstone flag, with the region
that detected the loss, the source sequence number and the time.

An entry fits in 400 KB whatever the images, as a DLQ entry does: the images as maps
when they fit, else zlib-compressed JSON in ``images``, else only their sizes and
SHA-256 digests (``images_omitted``). A failure to write an entry is logged and counted
(``replicator_conflicts_unrecorded_total``) and never stops replication: its retries are
bounded so that the target write it follows is not held up.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from botocore.exceptions import ClientError

from replicator.apply.conflict import Loss, Side
from replicator.aws.classify import is_conditional_check_failed
from replicator.aws.factory import guarded_send
from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryPolicy
from replicator.errors import AwsError, ShutdownInterrupted
from replicator.models import Change, TargetRef, WireItem, item_key
from replicator.pipeline.itemsize import MAX_ITEM_BYTES, item_size
from replicator.stream.kv import to_wire
from replicator.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

# The entry is written within the target write's attempt (10 s), so its retries end
# inside it: one that cannot be written by then is given up, logged and counted. A few
# seconds per attempt: a loaded region answers slowly, and an entry given up is lost.
FEED_GIVE_UP_AFTER_SECONDS = 6.0
FEED_ATTEMPT_TIMEOUT_SECONDS = 3.0
ENTRY_HEADROOM_BYTES = 16 * 1024

Reporter = Callable[[Loss, Change], Awaitable[None]]


def entry_key(table: str, keys: WireItem, loser: Side) -> tuple[str, str]:
    """(pk, sk) of the entry of ``loser``: the same lost write always gets the same key."""
    # ``item_key`` spells S, N and B keys alike as text (a binary key is base64 here).
    pk = f"{table}#{json.dumps(item_key(keys), separators=(',', ':'))}"
    sk = f"{loser.origin}#{loser.version}#{'tombstone' if loser.tombstone else 'live'}"
    return pk, sk


def entry_id(pk: str, sk: str) -> str:
    """The short id ``replicator conflicts show/resolve`` take."""
    return hashlib.sha256(f"{pk}\n{sk}".encode()).hexdigest()[:16]


def conflict_entry(
    loss: Loss, change: Change, *, table: str, detected_in: str, detected_at: float
) -> WireItem:
    """The feed item of ``loss``, at most ``MAX_ITEM_BYTES`` large."""
    pk, sk = entry_key(table, change.keys, loss.loser)
    entry: WireItem = {
        "pk": {"S": pk},
        "sk": {"S": sk},
        "id": {"S": entry_id(pk, sk)},
        "table": {"S": table},
        "key": {"M": change.keys},
        "detected_in": {"S": detected_in},
        "sequence_number": {"S": change.sequence_number},
        "detected_at": {"N": f"{detected_at:.3f}"},
    }
    for name, side in _sides(loss):
        entry[f"{name}_origin"] = {"S": side.origin}
        entry[f"{name}_version"] = {"N": str(side.version)}
        entry[f"{name}_tombstone"] = {"BOOL": side.tombstone}
        entry[f"{name}_kv"] = to_wire(side.kv)
    images = {f"{name}_image": {"M": side.image} for name, side in _sides(loss)}
    if item_size({**entry, **images}) + ENTRY_HEADROOM_BYTES <= MAX_ITEM_BYTES:
        return {**entry, **images}
    text = json.dumps({name: value["M"] for name, value in images.items()})
    compressed = zlib.compress(text.encode(), 6)
    if item_size(entry) + len(compressed) + ENTRY_HEADROOM_BYTES <= MAX_ITEM_BYTES:
        entry["images"] = {"B": base64.b64encode(compressed).decode()}
        return entry
    entry["images_omitted"] = {"BOOL": True}
    for name, side in _sides(loss):
        serialized = json.dumps(side.image, sort_keys=True, default=str).encode()
        entry[f"{name}_image_bytes"] = {"N": str(len(serialized))}
        entry[f"{name}_image_sha256"] = {"S": hashlib.sha256(serialized).hexdigest()}
    return entry


def _sides(loss: Loss) -> list[tuple[str, Side]]:
    return [("loser", loss.loser), ("winner", loss.winner)]


def entry_summary(entry: WireItem) -> dict[str, Any]:
    """What the dashboard lists of an entry: enough to find it with ``conflicts show ID``."""
    sides = {
        name: {
            "origin": entry[f"{name}_origin"]["S"],
            "version": entry[f"{name}_version"]["N"],
            "tombstone": entry[f"{name}_tombstone"]["BOOL"],
        }
        for name in ("loser", "winner")
    }
    return {
        "id": entry["id"]["S"],
        "table": entry["table"]["S"],
        "key": entry["key"]["M"],
        "detected_in": entry["detected_in"]["S"],
        "detected_at": float(entry["detected_at"]["N"]),
        **sides,
    }


class ConflictFeed:
    """Writes entries into this deployment's conflicts table (in its own region)."""

    def __init__(
        self,
        client: DynamoDB,
        table: str,
        *,
        metrics: Metrics,
        stop: asyncio.Event | None = None,
        guard: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self.table = table
        self._metrics = metrics
        self._retry = RetryPolicy(
            stop=stop,
            observer=metrics,
            give_up_after=FEED_GIVE_UP_AFTER_SECONDS,
            attempt_timeout=FEED_ATTEMPT_TIMEOUT_SECONDS,
        )
        self._region = client.region
        self._guard = guard
        self._clock = clock

    def reporter(self, source_table: str, target: TargetRef) -> Reporter:
        """What the writer of ``source_table`` into ``target`` calls for a loss it detects."""

        async def report(loss: Loss, change: Change) -> None:
            await self.record(loss, change, table=source_table, target=target)

        return report

    async def record(self, loss: Loss, change: Change, *, table: str, target: TargetRef) -> None:
        """Count ``loss`` and keep its entry; a failure is logged and counted, never raised."""
        self._metrics.conflict(
            table, target, loser_region=loss.loser.origin, winner_region=loss.winner.origin
        )
        entry = conflict_entry(
            loss, change, table=table, detected_in=target.region, detected_at=self._clock()
        )

        async def attempt() -> None:
            with guarded_send(self._guard):
                try:
                    await self._client.put_item(
                        TableName=self.table,
                        Item=entry,
                        ConditionExpression="attribute_not_exists(pk)",
                    )
                except ClientError as exc:
                    if not is_conditional_check_failed(exc):
                        raise  # a redelivery's entry is already kept otherwise

        try:
            await self._retry.call("conflict feed put", self._region, attempt)
        except (AwsError, ShutdownInterrupted, asyncio.CancelledError) as exc:
            # Shutdown, or the write's own deadline (HA's lease.write_timeout_seconds) cut
            # it: the write it follows is applied and its redelivery meets itself, so the
            # entry has no second chance. Counted, then a cancellation goes on.
            self._metrics.conflict_unrecorded(table)
            log.error(
                "conflict on %s key %s not recorded in %s: %s (loser %s v%s, winner %s v%s)",
                table,
                entry["key"]["M"],
                self.table,
                exc,
                loss.loser.origin,
                loss.loser.version,
                loss.winner.origin,
                loss.winner.version,
            )
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            self._metrics.conflict_recorded(entry_summary(entry))

"""Checkpoints per (shard, target) in the control table.

A checkpoint only moves forward: the write is conditional on the stored sequence
being older, so a late writer (a worker that lost its shard, a retry) can never
move it back. Writes are shielded from cancellation so that a shutdown never
leaves a half-written position.

A checkpoint belongs to one stream: its key holds the stream's ARN. A table whose
stream was disabled and enabled again has a new ARN and new sequence numbers, so
the old stream's checkpoints must never position a reader of the new one; the
pipeline finds them by their ARN and raises the data-loss alarm instead
(``replicator.stream.loss``). Reads and writes go through the retry policy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from replicator.aws.classify import is_conditional_check_failed
from replicator.aws.factory import guarded_send
from replicator.aws.json_client import DynamoDB
from replicator.aws.retry import RetryPolicy
from replicator.aws.tables import partition_items
from replicator.models import Checkpoint, TargetRef
from replicator.stream.positions import order_key


def _partition(source_table: str) -> str:
    return f"checkpoint#{source_table}"


def _sort_key(checkpoint: Checkpoint) -> str:
    target = checkpoint.target
    return f"{checkpoint.stream_arn}#{checkpoint.shard_id}#{target.region}#{target.table}"


class CheckpointStore:
    """Reads and advances checkpoints kept in the control table (pk, sk)."""

    def __init__(
        self,
        client: DynamoDB,
        table: str,
        *,
        retry: RetryPolicy | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._table = table
        self._retry = retry or RetryPolicy()
        # Asked before every attempt of a save (HA: may this process still write?).
        self._guard = guard

    async def load(self, source_table: str) -> dict[tuple[str, TargetRef], Checkpoint]:
        """Every checkpoint of ``source_table``, keyed by (shard id, target).

        Of a shard id saved under several stream ARNs (a table whose stream was
        re-enabled), the newest save is kept.
        """
        found: dict[tuple[str, TargetRef], Checkpoint] = {}
        items = partition_items(
            self._client,
            self._table,
            _partition(source_table),
            retry=self._retry,
            call="checkpoint load",
        )
        async for item in items:
            checkpoint = _checkpoint(item)
            key = (checkpoint.shard_id, checkpoint.target)
            known = found.get(key)
            if known is None or (known.updated_at or 0) <= (checkpoint.updated_at or 0):
                found[key] = checkpoint
        return found

    async def save(self, source_table: str, checkpoint: Checkpoint) -> bool:
        """Advance a checkpoint; False when a newer one is already stored."""
        return await asyncio.shield(self._save(source_table, checkpoint))

    async def _save(self, source_table: str, checkpoint: Checkpoint) -> bool:
        item = _item(source_table, checkpoint)
        request = {
            "TableName": self._table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(#p) OR #p <= :p",
            "ExpressionAttributeNames": {"#p": "position"},
            "ExpressionAttributeValues": {":p": item["position"]},
        }

        async def attempt() -> bool:
            try:
                with guarded_send(self._guard):
                    await self._client.put_item(**request)
            except ClientError as exc:
                if is_conditional_check_failed(exc):
                    return False
                raise
            return True

        return await self._retry.call("checkpoint save", self._client.region, attempt)

    async def rewind(self, source_table: str, checkpoint: Checkpoint) -> None:
        """Move a checkpoint wherever ``checkpoint`` says, back too (``replicator replay``,
        while no replicator runs the table: a running one would move it forward again)."""
        request = {"TableName": self._table, "Item": _item(source_table, checkpoint)}

        async def attempt() -> None:
            with guarded_send(self._guard):
                await self._client.put_item(**request)

        await self._retry.call("checkpoint rewind", self._client.region, attempt)

    async def forget(self, source_table: str, checkpoint: Checkpoint) -> None:
        """Delete a checkpoint no reader will use again: of a shard the stream no longer
        lists, or of another stream. Its loss, if any, was alarmed once; kept, it would
        raise the alarm again at every start."""
        key = {"pk": {"S": _partition(source_table)}, "sk": {"S": _sort_key(checkpoint)}}

        async def attempt() -> None:
            with guarded_send(self._guard):
                await self._client.delete_item(TableName=self._table, Key=key)

        await self._retry.call("checkpoint delete", self._client.region, attempt)


def _item(source_table: str, checkpoint: Checkpoint) -> dict[str, Any]:
    seq = checkpoint.sequence_number or ""
    # Ordered as the stream is: a replay's time sorts first, like the trim horizon.
    position = f"{order_key(seq)}#{int(checkpoint.shard_ended)}"
    return {
        "pk": {"S": _partition(source_table)},
        "sk": {"S": _sort_key(checkpoint)},
        "stream_arn": {"S": checkpoint.stream_arn},
        "shard_id": {"S": checkpoint.shard_id},
        "target_region": {"S": checkpoint.target.region},
        "target_table": {"S": checkpoint.target.table},
        "sequence_number": {"S": seq},
        "position": {"S": position},
        "shard_ended": {"BOOL": checkpoint.shard_ended},
        "updated_at": {"N": f"{time.time():.3f}"},
    }


def _checkpoint(item: dict[str, Any]) -> Checkpoint:
    updated_at = item.get("updated_at", {}).get("N")
    return Checkpoint(
        shard_id=item["shard_id"]["S"],
        target=TargetRef(item["target_region"]["S"], item["target_table"]["S"]),
        sequence_number=item["sequence_number"]["S"] or None,
        shard_ended=item["shard_ended"]["BOOL"],
        stream_arn=item.get("stream_arn", {}).get("S", ""),
        updated_at=float(updated_at) if updated_at is not None else None,
    )

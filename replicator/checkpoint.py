"""Checkpoints per (shard, target) in the control table.

A checkpoint only moves forward: the write is conditional on the stored sequence
being older, so a late writer (a worker that lost its shard, a retry) can never
move it back. Writes are shielded from cancellation so that a shutdown never
leaves a half-written position.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from replicator.aws import classify, is_conditional_check_failed
from replicator.models import pad_seq
from replicator.tables import query_partition


@dataclass(frozen=True, slots=True)
class TargetRef:
    region: str
    table: str

    def __str__(self) -> str:
        return f"{self.region}/{self.table}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    shard_id: str
    target: TargetRef
    sequence_number: str | None  # last record applied or dead-lettered; None: nothing yet
    shard_ended: bool


def _partition(source_table: str) -> str:
    return f"checkpoint#{source_table}"


def _sort_key(shard_id: str, target: TargetRef) -> str:
    return f"{shard_id}#{target.region}#{target.table}"


class CheckpointStore:
    """Reads and advances checkpoints kept in the control table (pk, sk)."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    async def load(self, source_table: str) -> dict[tuple[str, TargetRef], Checkpoint]:
        """Every checkpoint of ``source_table``, keyed by (shard id, target)."""
        found: dict[tuple[str, TargetRef], Checkpoint] = {}
        async for item in query_partition(self._client, self._table, _partition(source_table)):
            target = TargetRef(item["target_region"]["S"], item["target_table"]["S"])
            shard_id = item["shard_id"]["S"]
            found[(shard_id, target)] = Checkpoint(
                shard_id=shard_id,
                target=target,
                sequence_number=item["sequence_number"]["S"] or None,
                shard_ended=item["shard_ended"]["BOOL"],
            )
        return found

    async def save(self, source_table: str, checkpoint: Checkpoint) -> bool:
        """Advance a checkpoint; False when a newer one is already stored."""
        return await asyncio.shield(self._save(source_table, checkpoint))

    async def _save(self, source_table: str, checkpoint: Checkpoint) -> bool:
        seq = checkpoint.sequence_number or ""
        position = f"{pad_seq(seq) if seq else ''}#{int(checkpoint.shard_ended)}"
        try:
            await self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": _partition(source_table)},
                    "sk": {"S": _sort_key(checkpoint.shard_id, checkpoint.target)},
                    "shard_id": {"S": checkpoint.shard_id},
                    "target_region": {"S": checkpoint.target.region},
                    "target_table": {"S": checkpoint.target.table},
                    "sequence_number": {"S": seq},
                    "position": {"S": position},
                    "shard_ended": {"BOOL": checkpoint.shard_ended},
                    "updated_at": {"N": f"{time.time():.3f}"},
                },
                ConditionExpression="attribute_not_exists(#p) OR #p <= :p",
                ExpressionAttributeNames={"#p": "position"},
                ExpressionAttributeValues={":p": {"S": position}},
            )
        except ClientError as exc:
            if is_conditional_check_failed(exc):
                return False
            raise classify(exc) from exc
        except Exception as exc:
            raise classify(exc) from exc
        return True

"""The dead-letter queue: a DynamoDB table of records that could not be applied.

Each entry keeps the full stream record, the target it was meant for and the
reason, so ``replicator dlq replay`` can retry it once the cause is fixed.
"""

from __future__ import annotations

import json
import time
from typing import Any

from replicator.aws import classify
from replicator.checkpoint import TargetRef
from replicator.models import pad_seq


def record_json(record: dict[str, Any]) -> str:
    """The stream record as JSON (datetimes and Decimals as strings)."""
    return json.dumps(record, default=str, sort_keys=True)


class DeadLetterQueue:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    async def put(
        self, *, source_table: str, target: TargetRef, record: dict[str, Any], reason: str
    ) -> None:
        body = record.get("dynamodb", {})
        seq = str(body.get("SequenceNumber", "")) if isinstance(body, dict) else ""
        try:
            await self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": f"{source_table}#{target.region}#{target.table}"},
                    "sk": {"S": pad_seq(seq) if seq else f"unsequenced#{time.time_ns()}"},
                    "source_table": {"S": source_table},
                    "target_region": {"S": target.region},
                    "target_table": {"S": target.table},
                    "reason": {"S": reason},
                    "record": {"S": record_json(record)},
                    "failed_at": {"N": f"{time.time():.3f}"},
                },
            )
        except Exception as exc:
            raise classify(exc) from exc

    async def count(self) -> int:
        """Number of entries (a full count; the DLQ is small by design)."""
        total, kwargs = 0, {"TableName": self._table, "Select": "COUNT"}
        while True:
            try:
                page = await self._client.scan(**kwargs)
            except Exception as exc:
                raise classify(exc) from exc
            total += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

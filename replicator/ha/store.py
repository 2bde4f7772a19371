"""Lease items in the control table: every AWS call the lease makes, in one place.

One item per source table (pk ``lease#<table>``, sk ``lease``). Reads are strongly
consistent; every write is conditional on the owner and counter the writer last read,
so two processes can never both move the same counter.
"""

from __future__ import annotations

import time
from typing import Any

from replicator.aws.classify import classify, is_conditional_check_failed
from replicator.aws.json_client import DynamoDB
from replicator.ha.lease import LeaseRecord

SORT_KEY = "lease"


def _key(source_table: str) -> dict[str, Any]:
    return {"pk": {"S": f"lease#{source_table}"}, "sk": {"S": SORT_KEY}}


class LeaseStore:
    def __init__(self, client: DynamoDB, table: str, *, duration: float) -> None:
        self._client = client
        self._table = table
        self._duration = duration

    async def read(self, source_table: str) -> LeaseRecord | None:
        """The stored lease, None when no process ever took it."""
        try:
            response = await self._client.get_item(
                TableName=self._table, Key=_key(source_table), ConsistentRead=True
            )
        except Exception as exc:
            raise classify(exc) from exc
        item = response.get("Item")
        if item is None:
            return None
        return LeaseRecord(owner=item["owner"]["S"], counter=int(item["counter"]["N"]))

    async def swap(
        self, source_table: str, expected: LeaseRecord | None, owner: str
    ) -> LeaseRecord | None:
        """Store ``owner`` with the next counter if ``expected`` is still stored.

        Taking, renewing and releasing (owner "") are all this one write. Returns the
        stored record, or None when another process moved the lease first.
        """
        counter = expected.counter + 1 if expected else 1
        now = time.time()
        # expires_at and renewed_at are for operators reading the table: no process
        # trusts another's wall clock, each times the counter on its own monotonic clock.
        item = {
            **_key(source_table),
            "owner": {"S": owner},
            "counter": {"N": str(counter)},
            "lease_seconds": {"N": f"{self._duration:g}"},
            "renewed_at": {"N": f"{now:.3f}"},
            "expires_at": {"N": f"{now + self._duration:.3f}"},
        }
        if expected is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "#o = :o AND #c = :c",
                "ExpressionAttributeNames": {"#o": "owner", "#c": "counter"},
                "ExpressionAttributeValues": {
                    ":o": {"S": expected.owner},
                    ":c": {"N": str(expected.counter)},
                },
            }
        try:
            await self._client.put_item(TableName=self._table, Item=item, **condition)
        except Exception as exc:
            if is_conditional_check_failed(exc):
                return None
            raise classify(exc) from exc
        return LeaseRecord(owner=owner, counter=counter)

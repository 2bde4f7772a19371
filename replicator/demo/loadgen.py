"""A load generator that writes like a versioned application would.

Every write raises the item's version and is conditional on the version it read
(optimistic locking), so concurrent workers on a hot key set produce real
conflicts. Deleted keys are re-created with the version reset to 1, as versioned
record mappers do (supported in one-way mode). A few writes carry no version:
the replicator must dead-letter them, not drop them silently.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from replicator.aws.classify import classify, is_conditional_check_failed
from replicator.aws.json_client import DynamoDB

UNVERSIONED_SHARE = 0.01


@dataclass
class LoadStats:
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def operations(self) -> int:
        return sum(n for op, n in self.counts.items() if op != "conflict")


@dataclass
class LoadGenerator:
    client: DynamoDB
    table: str
    key_name: str = "pk"
    version_attribute: str = "version"
    keys: int = 200
    seed: int = 0
    stats: LoadStats = field(default_factory=LoadStats)
    _versions: dict[str, int | None] = field(default_factory=dict)
    _ever_deleted: set[str] = field(default_factory=set)
    _unversioned: set[str] = field(default_factory=set)

    async def run(
        self,
        *,
        operations: int,
        deadline: float | None = None,
        concurrency: int = 4,
        stop: asyncio.Event | None = None,
        rate: float | None = None,
        unversioned_first: bool = False,
    ) -> LoadStats:
        """Perform ``operations`` writes (fewer if ``deadline`` or ``stop`` comes first).

        ``rate``: at most that many writes a second (as fast as the table takes them if None).
        ``unversioned_first``: begin with a write without a version, so even a short run
        shows one dead-lettered.
        """
        budget = iter(range(operations))
        started = time.monotonic()
        if unversioned_first and next(budget, None) is not None:
            await self._write_unversioned(random.Random(self.seed))

        async def worker(number: int) -> None:
            rng = random.Random(f"{self.seed}-{number}")
            for issued in budget:
                if rate is not None:
                    await asyncio.sleep(max(0.0, started + issued / rate - time.monotonic()))
                if (stop and stop.is_set()) or (deadline and time.monotonic() >= deadline):
                    return
                await self._one(rng)

        async with asyncio.TaskGroup() as group:
            for number in range(concurrency):
                group.create_task(worker(number))
        await self.clean_up_unversioned()
        return self.stats

    async def _one(self, rng: random.Random) -> None:
        if rng.random() < UNVERSIONED_SHARE:
            await self._write_unversioned(rng)
            return
        key = f"k{rng.randrange(self.keys):05d}"
        version = self._versions.get(key)
        if version is None:
            op = "recreate" if key in self._ever_deleted else "insert"
            await self._write(op, key, 1, expected=None, rng=rng)
        elif rng.random() < 0.2:
            await self._delete(key, version)
        else:
            await self._write("update", key, version + 1, expected=version, rng=rng)

    async def _write_unversioned(self, rng: random.Random) -> None:
        key = f"unversioned-{rng.randrange(self.keys)}"
        self._unversioned.add(key)
        await self._call(
            "unversioned",
            self.client.put_item,
            TableName=self.table,
            Item={self.key_name: {"S": key}, "note": {"S": "no version"}},
        )

    async def _write(
        self, op: str, key: str, version: int, *, expected: int | None, rng: random.Random
    ) -> None:
        item: dict[str, dict[str, Any]] = {
            self.key_name: {"S": key},
            self.version_attribute: {"N": str(version)},
            "amount": {"N": str(rng.randrange(1_000_000))},
            "status": {"S": rng.choice(["new", "paid", "shipped", "returned"])},
        }
        if rng.random() < 0.3:
            item["tags"] = {"SS": sorted(rng.sample(["red", "blue", "gift", "bulk"], 2))}
        if await self._call(
            op, self.client.put_item, TableName=self.table, Item=item, **self._expect(expected)
        ):
            self._versions[key] = version
        else:
            await self._refresh(key)

    async def _delete(self, key: str, version: int) -> None:
        if await self._call(
            "delete",
            self.client.delete_item,
            TableName=self.table,
            Key={self.key_name: {"S": key}},
            **self._expect(version),
        ):
            self._versions[key] = None
            self._ever_deleted.add(key)
        else:
            await self._refresh(key)

    def _expect(self, version: int | None) -> dict[str, Any]:
        if version is None:
            return {
                "ConditionExpression": "attribute_not_exists(#k)",
                "ExpressionAttributeNames": {"#k": self.key_name},
            }
        return {
            "ConditionExpression": "#v = :v",
            "ExpressionAttributeNames": {"#v": self.version_attribute},
            "ExpressionAttributeValues": {":v": {"N": str(version)}},
        }

    async def _call(self, op: str, method: Any, **kwargs: Any) -> bool:
        """One request; False when its optimistic-locking condition lost a race."""
        try:
            await method(**kwargs)
        except ClientError as exc:
            if is_conditional_check_failed(exc):
                self.stats.counts["conflict"] += 1
                return False
            raise classify(exc) from exc
        self.stats.counts[op] += 1
        return True

    async def _refresh(self, key: str) -> None:
        response = await self.client.get_item(
            TableName=self.table, Key={self.key_name: {"S": key}}, ConsistentRead=True
        )
        item = response.get("Item")
        self._versions[key] = int(item[self.version_attribute]["N"]) if item else None

    async def clean_up_unversioned(self) -> None:
        """Delete the unversioned items, so source and targets can agree again."""
        for key in sorted(self._unversioned):
            await self._call(
                "unversioned",
                self.client.delete_item,
                TableName=self.table,
                Key={self.key_name: {"S": key}},
            )
        self._unversioned.clear()

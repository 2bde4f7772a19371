"""Load for active-active tables: writers in several regions on the same keys.

Each writer keeps the active-active contract: a key's version never goes back, so a
re-create continues from the version of the tombstone it finds. Every successful
write is logged, so a test can compute the last-writer-wins winner of the whole
history and compare every region against it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from replicator.aws.binaries import wire_deserializer
from replicator.demo.loadgen import LoadGenerator


@dataclass(frozen=True, slots=True)
class Write:
    """One application write or delete, as last-writer-wins orders it."""

    key: str
    version: int
    tombstone: bool
    region: str
    data: dict[str, Any] | None  # user data after the write; None for a delete

    @property
    def order(self) -> tuple[int, bool, str]:
        return (self.version, self.tombstone, self.region)


def winners(writes: list[Write]) -> dict[str, Write]:
    """The write each key must converge to: the greatest (version, tombstone, origin)."""
    best: dict[str, Write] = {}
    for write in writes:
        if write.key not in best or write.order > best[write.key].order:
            best[write.key] = write
    return best


@dataclass
class ActiveActiveLoad(LoadGenerator):
    region: str = ""
    prefix: str = "_rep_"
    log: list[Write] = field(default_factory=list)
    # The newest version this writer wrote or deleted per key: its own delete's local
    # tombstone appears only once the replicator wrote it, and a re-create must not
    # go below it meanwhile (versions never go back).
    _newest: dict[str, int] = field(default_factory=dict)
    # Keys one of this writer's workers is writing: a second worker reading the key
    # between the first one's delete and its bookkeeping would re-create it below the
    # deleted version, the very contract breach the replicator reports.
    _busy: set[str] = field(default_factory=set)

    async def _one(self, rng: random.Random) -> None:
        key = f"k{rng.randrange(self.keys):05d}"
        if key in self._busy:
            return
        self._busy.add(key)
        try:
            await self._write_key(key, rng)
        finally:
            self._busy.discard(key)

    async def _write_key(self, key: str, rng: random.Random) -> None:
        response = await self.client.get_item(
            TableName=self.table, Key={self.key_name: {"S": key}}, ConsistentRead=True
        )
        item = response.get("Item")
        version = int(item[self.version_attribute]["N"]) if item else 0
        if item is None or f"{self.prefix}deleted" in item:
            next_version = max(version, self._newest.get(key, 0)) + 1
            expected = version if item else None
            await self._put("recreate" if item else "insert", key, next_version, expected, rng)
        elif rng.random() < 0.2:
            if await self._call(
                "delete",
                self.client.delete_item,
                TableName=self.table,
                Key={self.key_name: {"S": key}},
                **self._expect(version),
            ):
                self._record(Write(key, version, True, self.region, None))
        elif rng.random() < 0.5:
            await self._put("update", key, version + 1, version, rng)
        else:
            await self._update(key, version, rng)

    async def _put(
        self, op: str, key: str, version: int, expected: int | None, rng: random.Random
    ) -> None:
        item = {
            self.key_name: {"S": key},
            self.version_attribute: {"N": str(version)},
            "amount": {"N": str(rng.randrange(1_000_000))},
            "writer": {"S": self.region},
        }
        condition = self._expect(expected)
        if await self._call(op, self.client.put_item, TableName=self.table, Item=item, **condition):
            self._record(Write(key, version, False, self.region, self._user_data(item)))

    async def _update(self, key: str, version: int, rng: random.Random) -> None:
        # UpdateItem keeps the replicator's metadata on the item: its raised version is
        # what makes it a write of this region.
        condition = self._expect(version)
        condition["ExpressionAttributeNames"]["#w"] = "writer"
        condition["ExpressionAttributeValues"].update(
            {":next": {"N": str(version + 1)}, ":writer": {"S": self.region}}
        )
        response: dict[str, Any] = {}

        async def update(**kwargs: Any) -> None:
            response.update(await self.client.update_item(**kwargs))

        if await self._call(
            "update",
            update,
            TableName=self.table,
            Key={self.key_name: {"S": key}},
            UpdateExpression="SET #v = :next, #w = :writer",
            ReturnValues="ALL_NEW",
            **condition,
        ):
            data = self._user_data(response["Attributes"])
            self._record(Write(key, version + 1, False, self.region, data))

    def _record(self, write: Write) -> None:
        self.log.append(write)
        self._newest[write.key] = max(write.version, self._newest.get(write.key, 0))

    def _user_data(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: wire_deserializer()(v) for k, v in item.items() if not k.startswith(self.prefix)}

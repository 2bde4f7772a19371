"""Writers that keep their own record of what each write overwrote, and the lost writes in it.

Ground truth for the conflict feed (DESIGN §4b): a write's parent is the state it
overwrote; a write is lost when the item every region converged to does not descend
from it, and a fork is a maximal chain of lost writes (built on each other, lost
together). The feed reports a fork by the write the winner met, its newest. Each
write is conditional on the version *and* the writer of the item it read, so its
parent is exactly the write it read, not merely one of that version.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from replicator.demo.activeload import ActiveActiveLoad, Write, winners

# (key, version, region): one write; a region's versions of a key only grow, so it is unique.
WriteId = tuple[str, int, str]


@dataclass
class TrackedLoad(ActiveActiveLoad):
    """Optimistic writers (whole-item PutItem and UpdateItem, no deletes) with parents."""

    parents: dict[WriteId, WriteId | None] = field(default_factory=dict)

    async def _write_key(self, key: str, rng: random.Random) -> None:
        response = await self.client.get_item(
            TableName=self.table, Key={self.key_name: {"S": key}}, ConsistentRead=True
        )
        item = response.get("Item")
        parent: WriteId | None = None
        if item:
            parent = (key, int(item[self.version_attribute]["N"]), item["writer"]["S"])
        version = parent[1] + 1 if parent else 1
        written: dict[str, Any] = {
            self.key_name: {"S": key},
            self.version_attribute: {"N": str(version)},
            "amount": {"N": str(rng.randrange(1_000_000))},
            "writer": {"S": self.region},
        }
        condition = self._read_condition(parent)
        if parent is not None and rng.random() < 0.5:
            # UpdateItem keeps the replicator's `_rep_` attributes on the item.
            names = {**condition["ExpressionAttributeNames"], "#a": "amount", "#n": "version"}
            values = {
                **condition["ExpressionAttributeValues"],
                ":a": written["amount"],
                ":n": written[self.version_attribute],
                ":me": written["writer"],
            }
            done = await self._call(
                "update",
                self.client.update_item,
                TableName=self.table,
                Key={self.key_name: {"S": key}},
                UpdateExpression="SET #n = :n, #a = :a, #w = :me",
                ConditionExpression=condition["ConditionExpression"],
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        else:
            op = "update" if parent else "insert"
            done = await self._call(
                op, self.client.put_item, TableName=self.table, Item=written, **condition
            )
        if done:
            self._record(Write(key, version, False, self.region, self._user_data(written)))
            self.parents[(key, version, self.region)] = parent

    def _read_condition(self, parent: WriteId | None) -> dict[str, Any]:
        if parent is None:
            return self._expect(None)
        _, version, writer = parent
        return {
            "ConditionExpression": "#v = :v AND #w = :w",
            "ExpressionAttributeNames": {"#v": self.version_attribute, "#w": "writer"},
            "ExpressionAttributeValues": {":v": {"N": str(version)}, ":w": {"S": writer}},
        }


def lost_forks(loads: list[TrackedLoad]) -> list[set[WriteId]]:
    """The lost writes, grouped into forks."""
    parents = {w: p for load in loads for w, p in load.parents.items()}
    lost = lost_writes(loads, parents)
    fork_of = {write: {write} for write in lost}
    for write in lost:
        parent = parents[write]
        if parent in lost and fork_of[parent] is not fork_of[write]:
            merged = fork_of[parent] | fork_of[write]
            for member in merged:
                fork_of[member] = merged
    return list({id(fork): fork for fork in fork_of.values()}.values())


def lost_writes(loads: list[TrackedLoad], parents: dict[WriteId, WriteId | None]) -> set[WriteId]:
    """Every write the converged items do not descend from."""
    writes = [write for load in loads for write in load.log]
    ancestors: set[WriteId] = set()
    for write in winners(writes).values():
        line: WriteId | None = (write.key, write.version, write.region)
        while line is not None and line not in ancestors:
            ancestors.add(line)
            line = parents.get(line)
    return {(w.key, w.version, w.region) for w in writes} - ancestors

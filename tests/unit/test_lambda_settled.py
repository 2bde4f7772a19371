"""Which records of a Kinesis batch a Lambda invocation may call done (DESIGN §4c, §6).

The mapping checkpoints everything before the record the handler reports. Kinesis order
is not write order: a key's batch coalesces to its changes of the greatest ts, so a
record's place in the batch says nothing of whether a settled write covers it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from replicator.lambda_mode.batch import Invocation, InvocationDeadLetters, TargetWork
from replicator.models import Change, Meta, TargetRef
from replicator.pipeline.batches import decode
from replicator.stream.records import coalesce
from tests.kinesis_feed import NOW_US, document, numbered

pytestmark = pytest.mark.timeout(10)

TARGET = TargetRef("eu-west-1", "orders")
KEY = {"pk": "a"}


def write(version: int, ts: int, event_id: str) -> dict[str, Any]:
    return document(
        "MODIFY",
        KEY,
        table="orders",
        ts=NOW_US + ts,
        new={"version": version},
        old={"version": version - 1},
        event_id=event_id,
    )


def expecting(records: list[dict[str, Any]]) -> tuple[Invocation, list[Change]]:
    """An invocation expecting ``records`` on TARGET; the key's kept (coalesced) changes."""
    changes, dead = decode(
        records, here="us-east-1", meta=Meta(version="version"), table="orders", skipped=[].append
    )
    assert dead == []
    invocation = Invocation(asyncio.Event())
    coalesced = coalesce(changes)
    invocation.expect({TARGET: TargetWork(changes, coalesced, [])})
    [kept] = coalesced.values()
    return invocation, kept


def test_the_greatest_ts_settled_settles_the_keys_earlier_changes_wherever_they_sit() -> None:
    records = numbered([write(3, ts=30, event_id="c"), write(1, ts=10, event_id="a")])
    invocation, [latest] = expecting(records)
    assert invocation.first_unsettled(records) == "1"

    invocation.settled(TARGET, latest)

    assert invocation.first_unsettled(records) is None


def test_each_change_of_a_tie_settles_only_itself_and_its_redeliveries() -> None:
    # The older change, the tie (b, c), and c delivered again.
    records = numbered(
        [
            write(1, ts=10, event_id="a"),
            write(2, ts=20, event_id="b"),
            write(3, ts=20, event_id="c"),
            write(3, ts=20, event_id="c"),
        ]
    )
    invocation, kept = expecting(records)
    assert [c.incoming.event_id for c in kept] == ["b", "c"]

    invocation.settled(TARGET, kept[1])

    # a is superseded by c, c's copies are c; b must still meet rule K.
    assert invocation.first_unsettled(records) == "2"
    invocation.settled(TARGET, kept[0])
    assert invocation.first_unsettled(records) is None


async def test_a_dead_lettered_change_settles_the_changes_it_superseded() -> None:
    records = numbered([write(1, ts=10, event_id="a"), write(2, ts=20, event_id="b")])
    invocation, [latest] = expecting(records)

    class Accepting:
        async def put(self, **entry: Any) -> None:
            pass

    await InvocationDeadLetters(Accepting(), invocation).put(
        source_table="orders", target=TARGET, record=latest.record, reason="too large"
    )

    assert invocation.first_unsettled(records) is None

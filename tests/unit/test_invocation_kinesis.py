"""What a Lambda invocation reports of a Kinesis batch (DESIGN §4c, §6).

Kinesis changes are coalesced by ts, not by place: the write that stands for a key's
older records may sit before them in the batch. Those records are settled with it, so
the mapping is not sent back to records nothing will ever write.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from replicator.lambda_mode.batch import Invocation
from replicator.models import Change, Meta, Mode, TargetRef
from replicator.pipeline.batches import decode
from replicator.stream.records import coalesce
from tests.kinesis_feed import NOW_US, document, kinesis_record

pytestmark = pytest.mark.timeout(10)
TARGET = TargetRef("eu-west-1", "orders")
META = Meta(version="version")


def change(version: int, tick: int, event_id: str) -> dict[str, Any]:
    return document(
        "MODIFY",
        {"pk": "a"},
        table="orders",
        ts=NOW_US + tick,
        new={"version": version},
        old={"version": version - 1},
        event_id=event_id,
    )


def batch() -> list[Change]:
    newest, tie, older = change(3, 20, "new"), change(4, 20, "tie"), change(2, 10, "old")
    records = [kinesis_record(d, n) for n, d in enumerate([newest, tie, newest, older], start=1)]
    changes, _ = decode(records, here="us-east-1", meta=META, table="orders", skipped=print)
    return changes


async def test_a_key_is_settled_once_every_change_of_its_newest_ts_is() -> None:
    invocation = Invocation(asyncio.Event())
    changes = batch()
    (run,) = coalesce(changes, mode=Mode.ONE_WAY).values()
    assert [c.incoming.event_id for c in run] == ["new", "tie"]
    work = {TARGET: (changes, [])}

    invocation.wrote(TARGET, run[0])
    # The tie (record 2) is not written yet: the mapping must deliver it again.
    assert invocation.first_unsettled(work) == "2"

    invocation.wrote(TARGET, run[1])
    # The redelivery (3) and the older record after them (4) are written by the newest.
    assert invocation.first_unsettled(work) is None

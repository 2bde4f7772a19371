"""A Kinesis record's way to a change (DESIGN §4c): decode, §4's filters, coalescing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from replicator.apply.selection import Selection
from replicator.models import Change, Meta, Mode
from replicator.pipeline.batches import created_at, decode
from replicator.stream.kinesis_records import OTHER_TABLE
from replicator.stream.records import (
    ECHO,
    REMOVE_OF_NOTHING,
    TOMBSTONE_EXPIRY,
    TTL_DELETE,
    coalesce,
    coalesces_into,
    sequence_of,
)
from tests.kinesis_feed import NOW_US, document, kinesis_record, raw_record

pytestmark = pytest.mark.timeout(10)

HERE, OTHER = "us-east-1", "eu-west-1"
TABLE = "orders"
META = Meta(version="version")
KEY = {"pk": "a"}


def decoded(
    *records: dict[str, Any], selection: Selection | None = None, kv: bool = False
) -> tuple[list[Change], list[tuple[dict[str, Any], str]], list[str]]:
    skipped: list[str] = []
    changes, dead = decode(
        list(records),
        here=HERE,
        meta=META,
        table=TABLE,
        skipped=skipped.append,
        selection=selection or Selection(),
        kv=kv,
    )
    return changes, dead, skipped


def write(version: int, ts: int, *, event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return document(
        "MODIFY",
        KEY,
        table=TABLE,
        ts=ts,
        new={"version": version, **extra},
        old={"version": version - 1},
        event_id=event_id,
    )


def test_a_write_becomes_a_change_ordered_by_its_ts_and_event_id() -> None:
    record = kinesis_record(write(3, NOW_US + 7, event_id="e-1", note="hi"), 42)

    (change,), dead, _ = decoded(record)

    assert not dead
    incoming = change.incoming
    assert (incoming.ts, incoming.event_id, incoming.seq) == (NOW_US + 7, "e-1", "")
    assert (incoming.version, incoming.tombstone, incoming.origin) == (Decimal(3), False, HERE)
    assert change.item is not None and change.item["note"] == {"S": "hi"}
    assert change.sequence_number == "42"
    assert change.created_at == pytest.approx((NOW_US + 7) / 1e6, abs=1e-6)
    assert change.record is record  # the DLQ keeps what Kinesis delivered
    assert sequence_of(record) == "42"
    assert created_at(record) == NOW_US / 1e6  # its arrival in the stream


@pytest.mark.parametrize("precision", ["MILLISECOND", None])
def test_a_millisecond_ts_is_counted_in_microseconds(precision: str | None) -> None:
    ms = NOW_US // 1000
    change_doc = write(2, ms)
    change_doc["dynamodb"]["ApproximateCreationDateTime"] = ms
    if precision is None:
        del change_doc["dynamodb"]["ApproximateCreationDateTimePrecision"]
    else:
        change_doc["dynamodb"]["ApproximateCreationDateTimePrecision"] = precision

    (change,), _, _ = decoded(kinesis_record(change_doc, 1))

    assert change.incoming.ts == ms * 1000


def test_a_remove_is_a_tombstone_at_the_deleted_version() -> None:
    removed = document("REMOVE", KEY, table=TABLE, ts=NOW_US, old={"version": 4})

    (change,), _, _ = decoded(kinesis_record(removed, 1))

    assert change.item is None
    assert (change.incoming.tombstone, change.incoming.version) == (True, Decimal(4))


def test_another_tables_record_is_skipped_and_counted() -> None:
    other = document("INSERT", KEY, table="invoices", ts=NOW_US, new={"version": 1})

    changes, dead, skipped = decoded(kinesis_record(other, 1))

    assert (changes, dead, skipped) == ([], [], [OTHER_TABLE.reason])


def test_the_filters_of_section_4_apply_as_to_a_dynamodb_stream() -> None:
    echo = document(
        "MODIFY",
        KEY,
        table=TABLE,
        ts=NOW_US,
        new={"version": 2, "_rep_origin": OTHER, "_rep_version": 2},
    )
    of_nothing = document("REMOVE", KEY, table=TABLE, ts=NOW_US)
    expiry = document(
        "REMOVE",
        KEY,
        table=TABLE,
        ts=NOW_US,
        old={"version": 2, "_rep_origin": OTHER, "_rep_version": 2, "_rep_deleted": True},
    )
    by_ttl = document("REMOVE", KEY, table=TABLE, ts=NOW_US, old={"version": 2}, ttl=True)
    records = [kinesis_record(d, n) for n, d in enumerate([echo, of_nothing, expiry, by_ttl])]

    changes, dead, skipped = decoded(*records, selection=Selection(skip_ttl_deletes=True))

    assert (changes, dead) == ([], [])
    assert skipped == [r.reason for r in (ECHO, REMOVE_OF_NOTHING, TOMBSTONE_EXPIRY, TTL_DELETE)]


def test_an_active_active_kinesis_change_carries_no_kv() -> None:
    (change,), _, _ = decoded(kinesis_record(write(2, NOW_US), 1), kv=True)

    assert change.kv is None


def _without(path: str) -> dict[str, Any]:
    change_doc = write(2, NOW_US)
    del change_doc["dynamodb"][path]
    return change_doc


def _with_time(value: Any) -> dict[str, Any]:
    change_doc = write(2, NOW_US)
    change_doc["dynamodb"]["ApproximateCreationDateTime"] = value
    return change_doc


def _named(name: str) -> dict[str, Any]:
    return {**write(2, NOW_US), "eventName": name}


BAD = {
    "not base64": (raw_record("not*base64!", 1), "not base64"),
    "not JSON": (kinesis_record(b"\xff{", 1), "not JSON"),
    "a JSON list": (kinesis_record(b"[1, 2]", 1), "not a JSON object: list"),
    "no data": ({**raw_record("", 1), "kinesis": {"sequenceNumber": "1"}}, "no kinesis.data"),
    "no Keys": (kinesis_record(_without("Keys"), 1), "no dynamodb.Keys"),
    "no time": (
        kinesis_record(_without("ApproximateCreationDateTime"), 1),
        "ApproximateCreationDateTime is not an integer: None",
    ),
    "a float time": (
        kinesis_record(_with_time(1.5), 1),
        "ApproximateCreationDateTime is not an integer: 1.5",
    ),
    "a text time": (
        kinesis_record(_with_time("1765000000"), 1),
        "ApproximateCreationDateTime is not an integer: '1765000000'",
    ),
    "an unknown event": (kinesis_record(_named("UPSERT"), 1), "unknown eventName 'UPSERT'"),
}


@pytest.mark.parametrize("name", BAD)
def test_a_record_that_cannot_be_read_goes_to_the_dlq_with_its_reason(name: str) -> None:
    record, reason = BAD[name]
    good = kinesis_record(write(2, NOW_US), 2)

    changes, dead, _ = decoded(record, good)

    assert [r for r, _ in dead] == [record]
    assert reason in dead[0][1]
    assert [c.record for c in changes] == [good]  # the batch moves on
    assert sequence_of(record) == "1"  # so the DLQ entry and checkpoints name it


# -- coalescing (§4c): the greatest ts, all of them, never by position --------------


def changes_of(*docs: dict[str, Any]) -> list[Change]:
    changes, dead, _ = decoded(*(kinesis_record(d, n) for n, d in enumerate(docs, start=1)))
    assert not dead
    return changes


def test_one_way_coalescing_keeps_every_change_of_the_greatest_ts_wherever_it_is() -> None:
    newest_a = write(3, NOW_US + 20, event_id="e-a")
    newest_b = write(4, NOW_US + 20, event_id="e-b")
    changes = changes_of(
        newest_a, write(9, NOW_US + 10), newest_a, newest_b, write(1, NOW_US), write(8, NOW_US + 5)
    )

    (run,) = coalesce(changes, mode=Mode.ONE_WAY).values()

    # The version plays no part in rule K; a redelivered record is kept once.
    assert [c.incoming.event_id for c in run] == ["e-a", "e-b"]


def test_active_active_coalescing_keeps_the_greatest_order_key() -> None:
    changes = changes_of(
        write(5, NOW_US + 1),
        write(7, NOW_US, event_id="newest-version"),
        write(6, NOW_US + 2),
    )

    (run,) = coalesce(changes, mode=Mode.ACTIVE_ACTIVE).values()

    assert [c.incoming.event_id for c in run] == ["newest-version"]


def test_a_kinesis_change_is_never_left_to_a_later_batch() -> None:
    earlier, later = changes_of(write(2, NOW_US + 10), write(3, NOW_US))

    # The later batch's write is the older one here: only rule K can tell.
    assert not coalesces_into([earlier], [later])

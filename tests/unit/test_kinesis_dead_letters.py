"""A Kinesis record's DLQ entry names its key, table and ts from its decoded data, even
when the record is too large to keep; an entry of undecodable data says so."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from replicator.apply.applier import record_key
from replicator.models import Meta, TargetRef
from replicator.pipeline.dlq import dlq_entry
from replicator.stream.kinesis import lambda_record
from replicator.tools.dlq_entry import read_entry
from replicator.tools.redrive import kinesis_redrive
from tests.kinesis_changes import change

TS = 1_700_000_000_000_000
TARGET = TargetRef("eu-west-1", "orders")


def kinesis(document: dict[str, Any] | bytes, *, shard: str, seq: str) -> dict[str, Any]:
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    return lambda_record(shard, {"SequenceNumber": seq, "Data": base64.b64encode(data).decode()})


def entry_of(record: dict[str, Any]) -> dict[str, Any]:
    return dlq_entry(
        source_table="orders",
        target=TARGET,
        record=record,
        reason="ValidationException: too large",
        recreate=False,
        failed_at=100.0,
    )


def test_an_entry_too_large_to_keep_its_record_still_replays_at_its_ts_into_the_same_entry() -> (
    None
):
    # Incompressible images past 400 KB: the entry keeps what identifies the change.
    big = {"pk": {"S": "a"}, "version": {"N": "3"}, "blob": {"S": os.urandom(300_000).hex()}}
    document = change("orders", "INSERT", {"pk": {"S": "a"}}, new=big, ts=TS)
    row = entry_of(kinesis(document, shard="shardId-000000000001", seq="7"))
    assert row["images_omitted"] == {"BOOL": True} and "record" not in row

    entry = read_entry(row)
    assert (entry.key_text(), entry.record_table, entry.ts) == ("pk=a", "orders", TS)
    redriven = kinesis_redrive(entry, meta=Meta(version="version"), here="us-east-1")
    assert (redriven.incoming.ts, redriven.keys) == (TS, {"pk": {"S": "a"}})
    # Dead-lettered again, it lands on the same entry, still knowing its ts.
    again = entry_of(redriven.record)
    assert again["sk"] == row["sk"] and again["ts"] == row["ts"]


def test_records_of_two_shards_with_one_sequence_number_are_two_entries() -> None:
    document = change("orders", "INSERT", {"pk": {"S": "a"}}, new={"pk": {"S": "a"}}, ts=TS)
    first = entry_of(kinesis(document, shard="shardId-000000000000", seq="1"))
    second = entry_of(kinesis(document, shard="shardId-000000000001", seq="1"))
    assert first["sk"] != second["sk"]


def test_undecodable_data_is_named_so_and_an_older_entry_is_read_from_its_record() -> None:
    garbage = kinesis(b"{not json", shard="shardId-000000000000", seq="5")
    assert record_key(garbage) == "undecodable"
    unreadable = read_entry(entry_of(garbage))
    assert unreadable.undecodable and unreadable.keys is None
    assert unreadable.key_text() == "undecodable (Kinesis data)"

    document = change("orders", "REMOVE", {"pk": {"S": "b"}}, old={"pk": {"S": "b"}}, ts=TS)
    record = kinesis(document, shard="shardId-000000000000", seq="6")
    assert record_key(record) == "pk=b"
    # Written before entries carried the decoded facts: read from the stored record.
    row = {k: v for k, v in entry_of(record).items() if k not in ("kinesis", "ts", "keys")}
    older = read_entry(row)
    assert (older.kinesis, older.key_text(), older.ts) == (True, "pk=b", TS)

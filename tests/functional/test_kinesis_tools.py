"""Backfill, repair and the DLQ of a one-way Kinesis pair keep rule K's order (DESIGN §4c).

The pair runs as ``replicator run`` runs it (``kinesis_rig``); records are DynamoDB's
change documents put into the moto Kinesis stream (``tests.kinesis_changes``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import pytest

from replicator.apply.applier import DEAD_LETTER
from replicator.aws.json_client import DynamoDB
from replicator.models import Outcome, WireItem
from replicator.tools.backfill import backfill
from replicator.tools.dlq import list_entries
from replicator.tools.repair import repair
from replicator.tools.verify import verify
from tests.e2e.helpers import SOURCE, TARGET, cli, wait_until
from tests.functional.kinesis_rig import KinesisPair, alive
from tests.functional.test_backfill import Recorder
from tests.kinesis_changes import change

pytestmark = pytest.mark.timeout(90)

T = 1_700_000_000_000_000  # a record's ts, µs


def plain(key: str, version: int, **data: str) -> WireItem:
    """An item as the application writes it to the source."""
    return {
        "pk": {"S": key},
        "version": {"N": str(version)},
        **{k: {"S": v} for k, v in data.items()},
    }


def by_rule_k(key: str, version: int, *, ts: int, event: str, **data: str) -> WireItem:
    """An item as rule K wrote it to the target: from the record ``event`` at ``ts``."""
    return {
        **plain(key, version, **data),
        "_rep_origin": {"S": SOURCE},
        "_rep_version": {"N": str(version)},
        "_rep_ts": {"N": str(ts)},
        "_rep_event": {"S": event},
    }


def modify(table: str, key: str, version: int, *, ts: int, **data: str) -> dict[str, Any]:
    return change(
        table,
        "MODIFY",
        {"pk": {"S": key}},
        new=plain(key, version, **data),
        old=plain(key, version - 1),
        ts=ts,
    )


async def stored(client: DynamoDB, table: str, key: str) -> WireItem:
    answer = await client.get_item(TableName=table, Key={"pk": {"S": key}}, ConsistentRead=True)
    item: WireItem = answer["Item"]
    return item


async def settled(
    pair: KinesisPair, service: asyncio.Task[None], placed: list[dict[str, str]]
) -> None:
    """Wait until every record ``placed`` is checkpointed (applied or dead-lettered)."""

    async def done() -> bool:
        alive(service)
        checkpoints = await pair.checkpoints()
        return all(
            p["ShardId"] in checkpoints
            and int(checkpoints[p["ShardId"]].sequence_number or 0) >= int(p["SequenceNumber"])
            for p in placed
        )

    await wait_until(done, within=30, what="the records put to be checkpointed")


async def test_backfill_fills_only_keys_no_record_wrote_and_every_record_supersedes_it(
    kinesis_pair: KinesisPair,
) -> None:
    table = kinesis_pair.table
    source = await kinesis_pair.clients.json("dynamodb", SOURCE)
    target = await kinesis_pair.clients.json("dynamodb", TARGET)
    # The scan reads v7; the stream already delivered a delete and a re-create with the
    # version reset to 1: the newer state has the lower version.
    await source.put_item(TableName=table, Item=plain("recreated", 7, note="scanned"))
    newer = by_rule_k("recreated", 1, ts=T, event="re-create", note="re-created")
    await target.put_item(TableName=table, Item=newer)
    await source.put_item(TableName=table, Item=plain("quiet", 4, note="scanned"))

    summary = await backfill(kinesis_pair.config, Recorder(), segments=2)

    assert (summary.outcomes[Outcome.APPLIED], summary.outcomes[Outcome.SUPERSEDED]) == (1, 1)
    assert await stored(target, table, "recreated") == newer
    quiet = await stored(target, table, "quiet")
    assert (quiet["note"], quiet["_rep_ts"]) == ({"S": "scanned"}, {"N": "0"})
    again = await backfill(kinesis_pair.config, Recorder(), segments=2, restart=True)
    assert again.outcomes[Outcome.APPLIED] == 0

    # Any record of the key supersedes the scanned state.
    placed = await kinesis_pair.put([modify(table, "quiet", 5, ts=T + 1, note="record")])
    async with kinesis_pair.running() as (service, _):
        await settled(kinesis_pair, service, placed)
    quiet = await stored(target, table, "quiet")
    assert (quiet["note"], quiet["_rep_ts"]) == ({"S": "record"}, {"N": str(T + 1)})


async def test_repair_keeps_the_stored_ts_so_older_records_stay_refused_and_later_ones_win(
    kinesis_pair: KinesisPair,
) -> None:
    table = kinesis_pair.table
    source = await kinesis_pair.clients.json("dynamodb", SOURCE)
    target = await kinesis_pair.clients.json("dynamodb", TARGET)
    # The records after v2 were lost (a trimmed range): the target is stale.
    await source.put_item(TableName=table, Item=plain("stale", 3, note="v3"))
    await target.put_item(TableName=table, Item=by_rule_k("stale", 2, ts=T, event="e2"))
    await source.put_item(TableName=table, Item=plain("lost", 1, note="v1"))

    report = await verify(kinesis_pair.config, recheck_delay=0.01)
    assert sorted((d.kind, d.key[0][2]) for d in report.differences) == [
        ("missing", "lost"),
        ("stale", "stale"),
    ]
    assert (await repair(kinesis_pair.config, report)).repaired == 2
    repaired = await stored(target, table, "stale")
    assert repaired["note"] == {"S": "v3"}
    assert (repaired["_rep_ts"], repaired["_rep_event"]) == ({"N": str(T)}, {"S": "e2"})
    assert (await stored(target, table, "lost"))["_rep_ts"] == {"N": "0"}

    async with kinesis_pair.running() as (service, _):
        # A late copy of a record older than the replaced state: still refused.
        placed = await kinesis_pair.put([modify(table, "stale", 2, ts=T - 10, note="late")])
        await settled(kinesis_pair, service, placed)
        assert (await stored(target, table, "stale"))["note"] == {"S": "v3"}
        placed = await kinesis_pair.put([modify(table, "stale", 4, ts=T + 10, note="v4")])
        await settled(kinesis_pair, service, placed)
    assert (await stored(target, table, "stale"))["note"] == {"S": "v4"}


async def test_repair_skips_a_key_whose_record_moved_after_verify_even_at_the_same_version(
    kinesis_pair: KinesisPair,
) -> None:
    table = kinesis_pair.table
    source = await kinesis_pair.clients.json("dynamodb", SOURCE)
    target = await kinesis_pair.clients.json("dynamodb", TARGET)
    await source.put_item(TableName=table, Item=plain("k", 3, note="v3"))
    await target.put_item(TableName=table, Item=by_rule_k("k", 2, ts=T, event="e2"))
    report = await verify(kinesis_pair.config, recheck_delay=0.01)
    assert [d.kind for d in report.differences] == ["stale"]

    # Before repair runs, a later record (delete and re-create, version 2 again) lands.
    later = by_rule_k("k", 2, ts=T + 5, event="re-create", note="re-created")
    await target.put_item(TableName=table, Item=later)
    fixed = await repair(kinesis_pair.config, report)
    assert (fixed.repaired, len(fixed.moved)) == (0, 1)
    assert await stored(target, table, "k") == later


async def test_kinesis_dead_letters_name_their_keys_and_replay_settles_them_under_rule_k(
    kinesis_pair: KinesisPair, caplog: pytest.LogCaptureFixture
) -> None:
    table, path = kinesis_pair.table, str(kinesis_pair.path)
    source = await kinesis_pair.clients.json("dynamodb", SOURCE)
    target = await kinesis_pair.clients.json("dynamodb", TARGET)
    # Items without a numeric version cannot be replicated: dead letters.
    poison = change(table, "INSERT", {"pk": {"S": "poison"}}, new={"pk": {"S": "poison"}}, ts=T)
    overtaken = change(
        table, "INSERT", {"pk": {"S": "overtaken"}}, new={"pk": {"S": "overtaken"}}, ts=T + 1
    )
    placed = await kinesis_pair.put([poison, overtaken])
    garbage = base64.b64encode(b"{not json").decode()
    answer = await kinesis_pair.kinesis.put_records(
        StreamName=table, Records=[{"Data": garbage, "PartitionKey": "x"}]
    )
    placed += answer["Records"]
    with caplog.at_level(logging.ERROR):
        async with kinesis_pair.running() as (service, _):
            await settled(kinesis_pair, service, placed)
    logged = {r.__dict__["key"] for r in caplog.records if r.__dict__.get(DEAD_LETTER)}
    assert logged == {"pk=poison", "pk=overtaken", "undecodable"}

    listed = cli("dlq", "list", "-c", path, "--json")
    assert listed.returncode == 0, listed.stderr
    entries = {e["keys"]: e for e in json.loads(listed.stdout)}
    assert set(entries) == {"pk=poison", "pk=overtaken", "undecodable (Kinesis data)"}
    assert entries["pk=poison"]["kinesis"] == {
        "table": table,
        "undecodable": False,
        "ts": T,
        "event_id": poison["eventID"],
    }
    assert "not JSON" in entries["undecodable (Kinesis data)"]["reason"]
    lines = "\n".join(e.line() for e in await list_entries(kinesis_pair.config))  # `dlq list`
    assert f"pk=poison (table {table})" in lines and "undecodable (Kinesis data)" in lines
    shown = cli("dlq", "show", "-c", path, entries["pk=poison"]["id"]).stdout
    assert "decoded Kinesis data:" in shown and '"eventName": "INSERT"' in shown, shown

    # The application fixes its items. A newer record's state reached "overtaken" first;
    # "poison" holds another write of its tick (same ts: a tie, the source decides).
    await source.put_item(TableName=table, Item=plain("poison", 1, note="fixed"))
    await source.put_item(TableName=table, Item=plain("overtaken", 1, note="fixed"))
    newer = by_rule_k("overtaken", 2, ts=T + 5, event="e-newer", note="newer")
    await target.put_item(TableName=table, Item=newer)
    tied = by_rule_k("poison", 1, ts=T, event="same-tick", note="tie partner")
    await target.put_item(TableName=table, Item=tied)
    replayed = cli("dlq", "replay", "-c", path, "--all")
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "replay: 2 applied and removed, 1 kept" in replayed.stdout
    assert "cannot be replayed" in replayed.stdout

    fixed = await stored(target, table, "poison")
    assert fixed["note"] == {"S": "fixed"}
    # Stamped with the record's ts as a settled tie: any later record still wins.
    assert (fixed["_rep_ts"], fixed["_rep_event"]) == ({"N": str(T)}, {"S": "resolved"})
    assert await stored(target, table, "overtaken") == newer
    [kept] = await list_entries(kinesis_pair.config)
    assert kept.undecodable and kept.keys is None
